//! `GET /admin/usage?from=YYYY-MM-DD&to=YYYY-MM-DD`：一段日子（UTC，含两端，缺省今天）里每个密钥与每个团队的
//! 请求数、token 与花费（另按模型分项）以及最后使用的时刻，读自按密钥按天累计的用量（见 docs/observability.md）。

use chrono::{Duration as Days, NaiveDate, Utc};
use serde_json::{json, Value};

use super::keys::unavailable;
use crate::config::Config;
use crate::error::{ApiError, ErrorCode};
use crate::metrics::{read_usage, UsageTotals};
use crate::virtual_keys::KeyStore;

/// 查询参数里日期的格式。
const DATE_FORMAT: &str = "%Y-%m-%d";
/// 一次最多查的天数（与用量的保留期相当）。
const MAX_DAYS: i64 = 93;
/// 成功的状态码。
const STATUS_OK: u16 = 200;

/// 列出用量：虚拟密钥与配置文件里的密钥各一行，团队一行（成员之和）。
///
/// 错误：日期格式不对或范围不合法时 400，Redis 不可用时 503。
pub(super) async fn report(
    store: &KeyStore,
    config: &Config,
    query: Option<&str>,
) -> Result<(u16, Value), ApiError> {
    let (from, to) = range(query)?;
    let days: Vec<String> = (0..=(to - from).num_days())
        .map(|i| (from + Days::days(i)).format(DATE_FORMAT).to_string())
        .collect();
    let records = store.list().await.map_err(|e| unavailable(Some(e)))?;
    let members = records.iter().map(|r| (r.name.as_str(), r.team.as_deref()));
    let configured = config.clients.names().map(|name| (name, None));
    let (link, prefix) = store.link();
    let mut keys = Vec::new();
    let mut teams: Vec<(String, UsageTotals)> = Vec::new();
    for (name, team) in configured.chain(members) {
        let totals = read_usage(link, prefix, name, &days)
            .await
            .map_err(|e| unavailable(Some(e)))?;
        keys.push(row(name, team, &totals));
        if let Some(team) = team {
            match teams.iter_mut().find(|(t, _)| t == team) {
                Some((_, sum)) => sum.add(&totals),
                None => teams.push((team.to_string(), totals)),
            }
        }
    }
    let teams: Vec<Value> = teams.iter().map(|(t, sum)| row(t, None, sum)).collect();
    let body = json!({ "from": days.first(), "to": days.last(), "keys": keys, "teams": teams });
    Ok((STATUS_OK, body))
}

/// 一行：名字、（密钥的）团队与合计。
fn row(name: &str, team: Option<&str>, totals: &UsageTotals) -> Value {
    let mut row = serde_json::to_value(totals).unwrap_or_default();
    row["name"] = json!(name);
    if let Some(team) = team {
        row["team"] = json!(team);
    }
    row
}

/// 查询参数里的日期范围（缺省今天到今天）。
///
/// 错误：日期格式不对、`from` 晚于 `to` 或超过 [`MAX_DAYS`] 天时 400。
fn range(query: Option<&str>) -> Result<(NaiveDate, NaiveDate), ApiError> {
    let today = Utc::now().date_naive();
    let (mut from, mut to) = (today, today);
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let date = NaiveDate::parse_from_str(value, DATE_FORMAT).map_err(|_| {
            invalid(format!(
                "查询参数 `{name}` 必须是 YYYY-MM-DD 格式的 UTC 日期"
            ))
        });
        match name {
            "from" => from = date?,
            "to" => to = date?,
            _ => {
                return Err(invalid(format!(
                    "不认识的查询参数 `{name}`（只有 from 与 to）"
                )))
            }
        }
    }
    let span = (to - from).num_days();
    if !(0..MAX_DAYS).contains(&span) {
        return Err(invalid(format!(
            "日期范围必须是 from 不晚于 to、最多 {MAX_DAYS} 天"
        )));
    }
    Ok((from, to))
}

/// 400：查询参数不合法。
fn invalid(message: String) -> ApiError {
    ApiError::bad_request(ErrorCode::InvalidValue, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn 日期范围_缺省今天_格式与范围不对都是_400() {
        let today = Utc::now().date_naive();
        assert_eq!(range(None).ok(), Some((today, today)));
        let (from, to) = range(Some("from=2026-12-01&to=2026-12-05")).expect("合法范围");
        assert_eq!((to - from).num_days(), 4);
        for bad in [
            "from=2026-13-01",
            "from=2026-12-05&to=2026-12-01",
            "from=2026-01-01&to=2026-12-31",
            "颜色=红",
        ] {
            assert_eq!(
                range(Some(bad)).map_err(|e| e.status).err(),
                Some(400),
                "{bad}"
            );
        }
    }
}
