//! 美元预算：按密钥、按 UTC 自然日与自然月，跨实例精确。
//!
//! 与 token 限流一样先预留、后结算：准入时按最坏情况（输入估算 × 输入单价 + 最大输出 × 输出单价，取模型各目标里最贵的）
//! 在 Redis 里一个脚本中检查全部预算、全部够用才一起扣下；请求结束（包括中途取消的流）按实际费用补扣或退还差额。
//! 所以任何时刻已扣的金额都不超过上限，结算后等于实际花费。金额以整数纳美元记，没有浮点累计误差。
//! 预算存储不可用时按故障时关闭处理（503）：预算是硬上限，不能因为 Redis 暂时不可用而放开。

use std::sync::Arc;

use chrono::{DateTime, Datelike, Duration as Days, NaiveDate, Utc};
use redis::Script;

use crate::config::Model;
use crate::error::{ApiError, ErrorCode, TYPE_INSUFFICIENT_QUOTA, TYPE_PERMISSION, TYPE_SERVER};
use crate::metrics::PriceTable;
use crate::redis_link::RedisLink;
use crate::security::{Budgets, Client};
use crate::streaming::Usage;

/// 准入脚本。
const ADMIT_LUA: &str = include_str!("admit.lua");
/// 结算脚本。
const SETTLE_LUA: &str = include_str!("settle.lua");
/// 一美元的纳美元数。
const NANOS_PER_USD: f64 = 1e9;
/// 单价以每百万 token 计。
const TOKENS_PER_MILLION: u64 = 1_000_000;
/// 计数键在周期结束后再保留的秒数（结算晚到时还能写回）。
const KEY_GRACE_SECS: i64 = 86_400;

/// 一次准入扣下的预留：结束时按实际费用结算。
///
/// 用途：`proxy` 记进请求上下文，`logging` 里交给 [`BudgetStore::settle`]。
///
/// ```
/// let t = chatnexus::budgets::BudgetTicket::default(); // 没有扣任何预算
/// assert_eq!(t.reserved_usd(), 0.0); // 预留为零
/// ```
#[derive(Debug, Clone, Default)]
pub struct BudgetTicket {
    keys: Vec<String>,
    reserved: i64,
    headroom: Option<i64>,
}

impl BudgetTicket {
    /// 预留的金额（美元）。
    pub fn reserved_usd(&self) -> f64 {
        self.reserved as f64 / NANOS_PER_USD
    }

    /// 扣下预留之后，要切断越线的流（`cut_streams`）的预算里最少还剩多少美元；没有这样的预算时为 `None`。
    pub fn headroom_usd(&self) -> Option<f64> {
        self.headroom.map(|nanos| nanos as f64 / NANOS_PER_USD)
    }
}

/// 一个预算周期：计数键、上限、计数键的过期秒数，以及给错误消息用的归属、名字与重置时刻。
struct Period {
    key: String,
    limit: i64,
    ttl_secs: i64,
    owner: String,
    label: &'static str,
    resets: DateTime<Utc>,
    /// 越线时切断进行中的流。
    cut: bool,
}

/// 预算的归属：密钥自己或它的团队（计数键里的短名与错误消息里的称呼）。
struct Owner<'a> {
    segment: &'static str,
    title: &'static str,
    name: &'a str,
}

/// 预算在 Redis 里的计数。
///
/// 用途：网关准入时 [`BudgetStore::reserve`]，请求结束时 [`BudgetStore::settle`]。
///
/// ```
/// let store = chatnexus::budgets::BudgetStore::new(None, "chatnexus:"); // 没有 Redis
/// let client = chatnexus::security::Client::new("甲", chatnexus::security::KeyHash::of("sk-甲")); // 没有预算
/// let reserved = futures_util::FutureExt::now_or_never(store.reserve(&client, 1.0)); // 不访问 Redis，立即完成
/// assert!(reserved.unwrap().unwrap().is_none()); // 没有预算就没有预留
/// ```
pub struct BudgetStore {
    link: Option<Arc<RedisLink>>,
    prefix: String,
    admit: Script,
    settle: Script,
}

impl BudgetStore {
    /// 用共享的 Redis 连接（没有配置时为 `None`）与键前缀创建。
    pub fn new(link: Option<Arc<RedisLink>>, prefix: &str) -> Self {
        BudgetStore {
            link,
            prefix: prefix.to_string(),
            admit: Script::new(ADMIT_LUA),
            settle: Script::new(SETTLE_LUA),
        }
    }

    /// 按最坏情况的费用预留；密钥没有预算时返回 `None`。
    ///
    /// 错误：某个预算不够时 429 `insufficient_quota`（消息点名预算与重置时刻）；Redis 不可用时 503。
    pub async fn reserve(
        &self,
        client: &Client,
        worst_usd: f64,
    ) -> Result<Option<BudgetTicket>, ApiError> {
        self.reserve_at(client, worst_usd, Utc::now()).await
    }

    /// 与 [`BudgetStore::reserve`] 相同，但按给定的时刻决定记在哪一天、哪个月（跨日、跨月的演练与测试用）。
    ///
    /// 错误：同 [`BudgetStore::reserve`]。
    pub async fn reserve_at(
        &self,
        client: &Client,
        worst_usd: f64,
        now: DateTime<Utc>,
    ) -> Result<Option<BudgetTicket>, ApiError> {
        let periods = client_periods(&self.prefix, client, now);
        if periods.is_empty() {
            return Ok(None);
        }
        let link = self
            .link
            .as_ref()
            .ok_or_else(|| unavailable("没有配置 redis 段"))?;
        let reserved = nanos(worst_usd);
        let mut call = self.admit.prepare_invoke();
        call.arg(reserved);
        for period in &periods {
            call.key(&period.key)
                .arg(period.limit)
                .arg(period.ttl_secs)
                .arg(u8::from(period.cut));
        }
        let mut conn = link
            .connection()
            .await
            .map_err(|e| unavailable(&e.to_string()))?;
        let reply: Vec<i64> = link
            .within(call.invoke_async(&mut conn), "预算脚本")
            .await
            .map_err(|e| unavailable(&e.to_string()))?;
        match reply.as_slice() {
            [1, headroom, ..] => Ok(Some(BudgetTicket {
                keys: periods.into_iter().map(|p| p.key).collect(),
                reserved,
                headroom: (*headroom >= 0).then_some(*headroom),
            })),
            [0, index, spent] => {
                let period = usize::try_from(*index - 1)
                    .ok()
                    .and_then(|i| periods.get(i));
                Err(exhausted(period, (*spent, reserved)))
            }
            _ => Err(unavailable(&format!("预算脚本的回复无法理解：{reply:?}"))),
        }
    }

    /// 结算：把实际费用与预留之差加到扣过的每个计数键上；`actual_usd` 为 `None`（不知道实际费用）时保留预留。
    /// Redis 出错只记日志：请求已经结束。
    pub async fn settle(&self, ticket: BudgetTicket, actual_usd: Option<f64>) {
        let (Some(link), Some(actual)) = (&self.link, actual_usd) else {
            return;
        };
        let delta = nanos(actual) - ticket.reserved;
        if delta == 0 || ticket.keys.is_empty() {
            return;
        }
        let mut call = self.settle.prepare_invoke();
        call.arg(delta);
        for key in &ticket.keys {
            call.key(key);
        }
        let result = match link.connection().await {
            Ok(mut conn) => {
                link.within(call.invoke_async::<i64>(&mut conn), "预算结算脚本")
                    .await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            log::warn!(
                "预算结算失败（{e}），本请求的预留 {:.9} 美元没有按实际费用调整",
                ticket.reserved_usd()
            );
        }
    }
}

/// 要切断越线的流时，本请求最多能输出多少 token：预留的输出加上余量按模型各目标里最贵的输出单价折算的 token。
///
/// 参数：价目表、模型、预留的用量、扣下预留后的余量（美元）。返回：输出上限；输出不要钱时为 `None`（不会越线）。
pub fn output_cap(
    pricing: &PriceTable,
    model: &Model,
    reserve: &Usage,
    headroom_usd: f64,
) -> Option<u64> {
    let million = Usage {
        completion: TOKENS_PER_MILLION,
        ..Usage::default()
    };
    let per_million = model
        .targets
        .iter()
        .filter_map(|t| pricing.cost(&t.model, &million))
        .fold(0.0_f64, f64::max);
    if per_million <= 0.0 {
        return None;
    }
    let extra = (headroom_usd.max(0.0) * TOKENS_PER_MILLION as f64 / per_million).floor();
    Some(reserve.completion.saturating_add(extra as u64))
}

/// 一个请求在这个模型上的最坏费用：按各目标的上游价格取最贵的。
///
/// 参数：价目表、模型、预留的用量（输入估算与最大输出）、没有价格的目标是否按 0 美元计（`budgets.allow_unpriced_models`）。
/// 错误：有目标的上游模型没有价格、又不允许按 0 计时 403 `model_not_priced`（带预算的密钥不能用没有价格的模型）。
pub fn worst_case(
    pricing: &PriceTable,
    model: &Model,
    (usage, allow_unpriced): (&Usage, bool),
) -> Result<f64, ApiError> {
    let mut worst: f64 = 0.0;
    for target in &model.targets {
        let cost = match pricing.cost(&target.model, usage) {
            Some(cost) => cost,
            None if allow_unpriced => 0.0,
            None => return Err(unpriced(&model.name)),
        };
        worst = worst.max(cost);
    }
    Ok(worst)
}

/// 403 `model_not_priced`：带预算的密钥请求了没有价格的模型。
fn unpriced(model: &str) -> ApiError {
    ApiError::new(
        403,
        TYPE_PERMISSION,
        ErrorCode::ModelNotPriced,
        format!("模型 `{model}` 没有价格，带预算的密钥不能使用它（请在 pricing 里给出上游模型的单价，或设置 budgets.allow_unpriced_models）"),
    )
    .with_param("model")
}

/// 客户端要检查的全部预算周期：密钥自己的与团队的，各自的日与月。
fn client_periods(prefix: &str, client: &Client, now: DateTime<Utc>) -> Vec<Period> {
    let mut all = Vec::new();
    if let Some(budgets) = &client.budgets {
        let owner = Owner {
            segment: "k",
            title: "密钥",
            name: &client.name,
        };
        all.extend(periods(prefix, &owner, budgets, now));
    }
    if let Some((team, Some(budgets))) = &client.team {
        let owner = Owner {
            segment: "t",
            title: "团队",
            name: team,
        };
        all.extend(periods(prefix, &owner, budgets, now));
    }
    all
}

/// 一个归属配置了上限的预算周期（日、月）。全部预算计数键带同一个哈希标签 `{<前缀>budget}`：
/// 密钥与它的团队的计数要在同一个脚本里检查，Redis Cluster 下必须在同一槽位。
fn periods(prefix: &str, owner: &Owner, budgets: &Budgets, now: DateTime<Utc>) -> Vec<Period> {
    let today = now.date_naive();
    let base = format!("{{{prefix}budget}}:{}:{}", owner.segment, owner.name);
    let who = format!("{} `{}` ", owner.title, owner.name);
    let mut periods = Vec::new();
    if let Some(usd) = budgets.daily_usd {
        let key = format!("{base}:d:{}", today.format("%Y%m%d"));
        let ends = today + Days::days(1);
        let limit = (usd, budgets.cut_streams);
        periods.push(period(key, limit, (who.clone(), "每日预算"), ends, now));
    }
    if let Some(usd) = budgets.monthly_usd {
        let key = format!("{base}:m:{}", today.format("%Y%m"));
        periods.push(period(
            key,
            (usd, budgets.cut_streams),
            (who, "每月预算"),
            first_of_next_month(today),
            now,
        ));
    }
    periods
}

/// 一个周期：上限换成纳美元（连同越线时是否切流），计数键在周期结束后再留 [`KEY_GRACE_SECS`]。
fn period(
    key: String,
    (usd, cut): (f64, bool),
    (owner, label): (String, &'static str),
    ends: NaiveDate,
    now: DateTime<Utc>,
) -> Period {
    let resets = ends.and_hms_opt(0, 0, 0).map_or(now, |t| t.and_utc());
    Period {
        key,
        limit: nanos(usd),
        ttl_secs: (resets - now).num_seconds().max(1) + KEY_GRACE_SECS,
        owner,
        label,
        resets,
        cut,
    }
}

/// 下个月的一号。
fn first_of_next_month(day: NaiveDate) -> NaiveDate {
    let (year, month) = match day.month() {
        12 => (day.year() + 1, 1),
        m => (day.year(), m + 1),
    };
    NaiveDate::from_ymd_opt(year, month, 1).unwrap_or(day)
}

/// 美元换成整数纳美元（四舍五入；负数与非有限值按 0）。
fn nanos(usd: f64) -> i64 {
    if usd.is_finite() && usd > 0.0 {
        (usd * NANOS_PER_USD).round() as i64
    } else {
        0
    }
}

/// 429：预算不够本请求的最坏费用；消息点名是哪个预算、已用多少、何时重置，`Retry-After` 为到重置的秒数。
fn exhausted(period: Option<&Period>, (spent, reserve): (i64, i64)) -> ApiError {
    let usd = |n: i64| n as f64 / NANOS_PER_USD;
    let now = Utc::now();
    let (owner, label, limit, resets) = period.map_or(("", "预算", 0, now), |p| {
        (p.owner.as_str(), p.label, p.limit, p.resets)
    });
    let message = format!(
        "{owner}的{label}（{:.2} 美元）不够本请求：已用 {:.6} 美元，本请求最多需要 {:.6} 美元；将于 {} 重置",
        usd(limit),
        usd(spent),
        usd(reserve),
        resets.format("%Y-%m-%d %H:%M UTC"),
    );
    let wait = (resets - now).num_seconds().max(1) as u64;
    ApiError::new(
        429,
        TYPE_INSUFFICIENT_QUOTA,
        ErrorCode::InsufficientQuota,
        message,
    )
    .with_retry_after(Some(wait))
}

/// 503：记预算的 Redis 不可用（原因只进日志）。
fn unavailable(reason: &str) -> ApiError {
    ApiError::new(
        503,
        TYPE_SERVER,
        ErrorCode::BudgetStoreUnavailable,
        "记预算的存储暂时不可用，带预算的密钥暂停使用，请稍后重试",
    )
    .with_detail(reason.to_string())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::security::KeyHash;

    /// 一个模型两个价格不同的目标，另一个模型输出不要钱。
    const 价目配置: &str = r#"
auth: { disabled: true }
providers: [ { name: p, kind: openai_compatible, base_url: "http://127.0.0.1:1" } ]
models:
  - { name: m, targets: [ { provider: p, model: 便宜 }, { provider: p, model: 贵 } ] }
  - { name: 白送, targets: [ { provider: p } ] }
  - { name: 无价, targets: [ { provider: p, model: 没有价格 }, { provider: p, model: 贵 } ] }
pricing:
  - { model: 便宜, input: 1, output: 500 }
  - { model: 贵, input: 1, output: 1000 }
  - { model: 白送, input: 0, output: 0 }
"#;

    /// 由 [`价目配置`] 构建的配置。
    fn 价目() -> crate::config::Config {
        crate::config::build(crate::config::parse(价目配置).expect("可解析"), |_| None)
            .expect("可构建")
    }

    #[test]
    fn 输出上限_预留的输出加上余量按最贵的输出单价折算() {
        let config = 价目();
        let reserve = Usage {
            prompt: 10,
            completion: 2,
            ..Usage::default()
        };
        let model = config.model("m").expect("有模型");
        assert_eq!(
            output_cap(&config.pricing, model, &reserve, 0.008),
            Some(10)
        );
        assert_eq!(
            output_cap(&config.pricing, model, &reserve, 0.0),
            Some(2),
            "没有余量时只能输出预留的"
        );
        let free = config.model("白送").expect("有模型");
        assert_eq!(
            output_cap(&config.pricing, free, &reserve, 0.0),
            None,
            "输出不要钱就不会越线"
        );
    }

    #[test]
    fn 最坏费用_没有价格的目标缺省拒绝_允许时按零计() {
        let config = 价目();
        let reserve = Usage {
            prompt: 0,
            completion: 1000,
            ..Usage::default()
        };
        let model = config.model("无价").expect("有模型");
        let refused = worst_case(&config.pricing, model, (&reserve, false)).expect_err("没有价格");
        assert_eq!(
            (refused.status, refused.code),
            (403, ErrorCode::ModelNotPriced)
        );
        let allowed = worst_case(&config.pricing, model, (&reserve, true)).expect("按零计");
        assert!((allowed - 1.0).abs() < 1e-12, "有价格的目标照算：{allowed}");
    }

    /// 每天 1 美元、每月 20 美元。
    fn 预算() -> Budgets {
        Budgets {
            daily_usd: Some(1.0),
            monthly_usd: Some(20.0),
            cut_streams: false,
        }
    }

    #[test]
    fn 周期_密钥与团队各有日与月_跨年重置() {
        let now = Utc
            .with_ymd_and_hms(2026, 12, 31, 23, 0, 0)
            .single()
            .expect("合法时刻");
        let mut client = Client::new("甲", KeyHash::of("sk-甲"));
        client.budgets = Some(预算());
        client.team = Some(("数据组".to_string(), Some(预算())));
        let periods = client_periods("cnx:", &client, now);
        let keys: Vec<&str> = periods.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "{cnx:budget}:k:甲:d:20261231",
                "{cnx:budget}:k:甲:m:202612",
                "{cnx:budget}:t:数据组:d:20261231",
                "{cnx:budget}:t:数据组:m:202612",
            ]
        );
        assert_eq!(periods[0].resets.to_rfc3339(), "2027-01-01T00:00:00+00:00");
        assert_eq!(
            periods[1].resets.to_rfc3339(),
            "2027-01-01T00:00:00+00:00",
            "十二月之后是下一年一月"
        );
        assert_eq!(periods[0].limit, 1_000_000_000);
        assert_eq!(periods[0].ttl_secs, 3600 + KEY_GRACE_SECS);
    }

    #[test]
    fn 纳美元_四舍五入_负数与非有限值按零() {
        assert_eq!(nanos(0.000_000_001_4), 1);
        assert_eq!(nanos(1.5), 1_500_000_000);
        assert_eq!(nanos(-1.0), 0);
        assert_eq!(nanos(f64::NAN), 0);
    }

    #[test]
    fn 预算不够_消息点名归属预算与重置时刻() {
        let owner = Owner {
            segment: "t",
            title: "团队",
            name: "数据组",
        };
        let periods = periods("", &owner, &预算(), Utc::now());
        let error = exhausted(periods.first(), (900_000_000, 200_000_000));
        assert_eq!(
            (error.status, error.code),
            (429, ErrorCode::InsufficientQuota)
        );
        let message = &error.message;
        assert!(message.starts_with("团队 `数据组` 的每日预算"), "{message}");
        assert!(message.contains("重置"), "{message}");
        assert!(error.retry_after.is_some_and(|s| s <= 86_400));
    }
}
