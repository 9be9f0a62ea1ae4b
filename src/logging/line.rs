//! 一行日志的格式：`[2026-12-06T09:02:27Z INFO  chatnexus::access] 消息`，与 env_logger 缺省格式（无颜色、秒级时间戳）逐字节相同。
//!
//! 为什么自己写：env_logger 的缺省格式每行都经 jiff 把当前时刻重新格式化一遍，再经 `write!` 逐段填充对齐，
//! 剖析中约占一行访问日志开销的三分之一；这里时间戳每个线程每秒只格式化一次，其余部分直接写字节。

use std::cell::Cell;
use std::io::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use log::Record;

/// RFC 3339 秒级时间戳的长度（`1970-01-01T00:00:00Z`）。
const STAMP_LEN: usize = 20;
/// 一天的秒数。
const SECS_PER_DAY: u64 = 86_400;
/// 一小时的秒数。
const SECS_PER_HOUR: u64 = 3_600;
/// 一分钟的秒数。
const SECS_PER_MINUTE: u64 = 60;
/// 级别名对齐的宽度（env_logger 的 `{level:<5}`）。
const LEVEL_WIDTH: usize = 5;
/// 补齐级别名用的空格（长度等于对齐宽度）。
const LEVEL_PADDING: &[u8; LEVEL_WIDTH] = b"     ";
/// 十进制的基数。
const DECIMAL_BASE: u64 = 10;
/// 十进制数字的字符。
const DIGITS: &[u8; 10] = b"0123456789";
/// 0000-03-01 到 1970-01-01 的天数（把闰日挪到“年末”的起点）。
const DAYS_TO_UNIX_EPOCH: u64 = 719_468;
/// 公历 400 年一个周期的天数。
const DAYS_PER_ERA: u64 = 146_097;
/// 一个周期的年数。
const YEARS_PER_ERA: u64 = 400;

thread_local! {
    /// 本线程上次格式化的时间戳：（Unix 秒数，文本）。
    static STAMP: Cell<(u64, [u8; STAMP_LEN])> = const { Cell::new((u64::MAX, [0; STAMP_LEN])) };
}

/// 写出一条日志：时间戳、对齐的级别、目标（为空时省略）与消息，末尾换行。
///
/// 错误：写缓冲失败（env_logger 的缓冲是内存，不会失败）。
pub(super) fn write_line<W: Write>(out: &mut W, record: &Record<'_>) -> io::Result<()> {
    out.write_all(b"[")?;
    out.write_all(&stamp_now())?;
    out.write_all(b" ")?;
    let level = record.level().as_str();
    out.write_all(level.as_bytes())?;
    let padding = LEVEL_WIDTH.saturating_sub(level.len());
    out.write_all(&LEVEL_PADDING[..padding])?;
    let target = record.target();
    if !target.is_empty() {
        out.write_all(b" ")?;
        out.write_all(target.as_bytes())?;
    }
    out.write_all(b"] ")?;
    out.write_fmt(*record.args())?;
    out.write_all(b"\n")
}

/// 当前时刻的时间戳文本（同一秒内重复使用本线程上次的结果）。
fn stamp_now() -> [u8; STAMP_LEN] {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    STAMP.with(|cache| {
        let (cached, text) = cache.get();
        if cached == secs {
            return text;
        }
        let text = format_stamp(secs);
        cache.set((secs, text));
        text
    })
}

/// 把 Unix 秒数写成 RFC 3339 的 UTC 时间戳（秒级，以 `Z` 结尾）。
fn format_stamp(secs: u64) -> [u8; STAMP_LEN] {
    let (year, month, day) = civil_from_days(secs / SECS_PER_DAY);
    let of_day = secs % SECS_PER_DAY;
    let fields = [
        (year, 4),
        (month, 2),
        (day, 2),
        (of_day / SECS_PER_HOUR, 2),
        (of_day % SECS_PER_HOUR / SECS_PER_MINUTE, 2),
        (of_day % SECS_PER_MINUTE, 2),
    ];
    let separators = [b'-', b'-', b'T', b':', b':', b'Z'];
    let mut text = [0; STAMP_LEN];
    let mut at = 0;
    for ((value, width), separator) in fields.into_iter().zip(separators) {
        put_digits(&mut text[at..at + width], value);
        text[at + width] = separator;
        at += width + 1;
    }
    text
}

/// 把 `value` 写成填满 `out` 的十进制数字（不足时前面补 0，多出的高位舍去）。
fn put_digits(out: &mut [u8], mut value: u64) {
    for digit in out.iter_mut().rev() {
        *digit = DIGITS[(value % DECIMAL_BASE) as usize];
        value /= DECIMAL_BASE;
    }
}

/// 自 1970-01-01 起的天数换算成（年、月、日）。
///
/// 按 400 年一个周期（146,097 天）计算公历日期，闰年规则在周期内自然成立（Howard Hinnant 的 `civil_from_days`）。
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // 把起点挪到 0000-03-01：闰日落在“年末”，月份从三月数起；下面的系数是这个算法的常数
    let shifted = days + DAYS_TO_UNIX_EPOCH;
    let era = shifted / DAYS_PER_ERA;
    let day_of_era = shifted % DAYS_PER_ERA;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * YEARS_PER_ERA + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn 文本(secs: u64) -> String {
        String::from_utf8(format_stamp(secs).to_vec()).expect("时间戳是 ASCII")
    }

    #[test]
    fn 时间戳_与_rfc3339_一致_含闰日与世纪年() {
        assert_eq!(文本(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            文本(951_782_400),
            "2000-02-29T00:00:00Z",
            "400 的倍数是闰年"
        );
        assert_eq!(
            文本(4_107_542_400),
            "2100-03-01T00:00:00Z",
            "2100 年不是闰年"
        );
        assert_eq!(文本(1_796_549_547), "2026-12-06T09:32:27Z");
        assert_eq!(文本(1_709_251_199), "2024-02-29T23:59:59Z");
    }

    /// 按给定的级别与目标写一行，返回写出的文本。
    fn 写一行(level: log::Level, target: &str, message: &str) -> String {
        let mut out = Vec::new();
        // 格式参数是临时值，记录要在同一条语句里建好并写出
        let written = write_line(
            &mut out,
            &Record::builder()
                .args(format_args!("{message}"))
                .level(level)
                .target(target)
                .build(),
        );
        written.expect("写进内存");
        String::from_utf8(out).expect("UTF-8")
    }

    #[test]
    fn 一行日志_与_env_logger_缺省格式相同() {
        let line = 写一行(log::Level::Info, "chatnexus::access", "访问 请求ID=甲");
        let (stamp, rest) = line.split_at(1 + STAMP_LEN);
        assert!(stamp.starts_with('[') && stamp.ends_with('Z'), "{line}");
        assert_eq!(rest, " INFO  chatnexus::access] 访问 请求ID=甲\n");
    }

    #[test]
    fn 目标为空时省略_长级别名不补空格() {
        let line = 写一行(log::Level::Error, "", "消息");
        assert!(line.ends_with(" ERROR] 消息\n"), "{line}");
    }
}
