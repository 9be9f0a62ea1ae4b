//! 请求能否用缓存，以及缓存键：范围主体、模型、接口与规范化后的请求内容的 SHA-256。

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::config::{CacheMode, CacheScope, CacheSettings};

/// 不影响回答内容、不进缓存键的请求字段：流式与否、流选项、最终用户标识、元数据。
const NON_SEMANTIC_FIELDS: &[&str] = &["stream", "stream_options", "user", "metadata"];
/// 团队作范围主体时的前缀：控制字符不可能出现在密钥名里。
const TEAM_PRINCIPAL_PREFIX: &str = "\u{1}team:";
/// 采样温度字段。
const TEMPERATURE: &str = "temperature";
/// 随机种子字段。
const SEED: &str = "seed";
/// 候选回答个数字段。
const CHOICES: &str = "n";

/// 请求能否用缓存：模型在 `models` 里（或没配 `models`）；`mode: deterministic` 时还要求回复只由请求决定
/// （`deterministic` 为真，如向量），或 `temperature` 为 0 或给了 `seed`，且 `n` 不存在或为 1。
pub(super) fn eligible(
    settings: &CacheSettings,
    model: &str,
    (body, deterministic): (&Map<String, Value>, bool),
) -> bool {
    let model_ok = settings
        .models
        .as_ref()
        .is_none_or(|models| models.iter().any(|m| m == model));
    model_ok && (settings.mode == CacheMode::Always || deterministic || is_pinned(body))
}

/// 采样是否固定：温度为 0 或给了种子，且只要一个候选回答。
fn is_pinned(body: &Map<String, Value>) -> bool {
    let cold = body
        .get(TEMPERATURE)
        .and_then(Value::as_f64)
        .is_some_and(|t| t == 0.0);
    let seeded = body.get(SEED).is_some_and(|s| !s.is_null());
    let single = match body.get(CHOICES) {
        None | Some(Value::Null) => true,
        Some(n) => n.as_u64() == Some(1),
    };
    (cold || seeded) && single
}

/// 缓存键（64 位十六进制）。
///
/// 各部分以长度前缀拼接后再摘要，任何两部分之间的边界都不会混淆；`scope: global` 时范围主体为空串，
/// `scope: team` 时是团队（带一个密钥名里不可能出现的前缀，团队与同名的密钥不会共用条目；没有团队的密钥仍按密钥）。
pub(super) fn key(
    settings: &CacheSettings,
    (owner, team): (&str, Option<&str>),
    model: &str,
    endpoint: &str,
    body: &Map<String, Value>,
) -> String {
    let team_principal;
    let principal = match (settings.scope, team) {
        (CacheScope::Global, _) => "",
        (CacheScope::Team, Some(team)) => {
            team_principal = format!("{TEAM_PRINCIPAL_PREFIX}{team}");
            team_principal.as_str()
        }
        (CacheScope::Key | CacheScope::Team, _) => owner,
    };
    let mut canonical = Vec::new();
    write_object(body, NON_SEMANTIC_FIELDS, &mut canonical);
    let mut hasher = Sha256::new();
    for part in [
        principal.as_bytes(),
        model.as_bytes(),
        endpoint.as_bytes(),
        &canonical,
    ] {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hex::encode(hasher.finalize())
}

/// 规范化写出一个值：对象键按字节序递归排序，紧凑序列化（没有空白）。
fn write_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => write_object(map, &[], out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out);
            }
            out.push(b']');
        }
        scalar => write_json(scalar, out),
    }
}

/// 规范化写出一个对象，跳过 `skip` 里的键。
fn write_object(map: &Map<String, Value>, skip: &[&str], out: &mut Vec<u8>) {
    let mut keys: Vec<&String> = map.keys().filter(|k| !skip.contains(&k.as_str())).collect();
    keys.sort_unstable();
    out.push(b'{');
    for (i, k) in keys.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json(k.as_str(), out);
        out.push(b':');
        write_value(&map[k], out);
    }
    out.push(b'}');
}

/// 写出键名、字符串、数字、布尔或 null（serde_json 的紧凑格式）。
fn write_json(value: &(impl serde::Serialize + ?Sized), out: &mut Vec<u8>) {
    // 写进内存中的 Vec 不会失败，标量也没有会序列化失败的内容
    let _ = serde_json::to_writer(out, value);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// 取 JSON 文本里的对象。
    fn body(text: &str) -> Map<String, Value> {
        serde_json::from_str(text).expect("测试请求体是 JSON 对象")
    }

    /// 用缺省设置（scope: key）算键。
    fn key_of(owner: &str, model: &str, dialect: &str, text: &str) -> String {
        key(
            &CacheSettings::default(),
            (owner, None),
            model,
            dialect,
            &body(text),
        )
    }

    #[test]
    fn 缓存键_字段顺序与空白不影响() {
        let a = key_of(
            "甲",
            "演示",
            "chat",
            r#"{"model":"演示","messages":[{"role":"user","content":"你好"}],"temperature":0}"#,
        );
        let b = key_of("甲", "演示", "chat", "{ \"temperature\" : 0,\n \"messages\": [ {\"content\": \"你好\", \"role\": \"user\"} ],\n \"model\": \"演示\" }");
        assert_eq!(a, b);
        assert_eq!(a.len(), 64, "sha256 十六进制");
    }

    #[test]
    fn 缓存键_流式与用户与元数据不影响() {
        let plain = key_of(
            "甲",
            "演示",
            "chat",
            r#"{"messages":[{"role":"user","content":"你好"}]}"#,
        );
        let extra = key_of(
            "甲",
            "演示",
            "chat",
            r#"{"messages":[{"role":"user","content":"你好"}],"stream":true,"stream_options":{"include_usage":true},"user":"张三","metadata":{"跟踪":"1"}}"#,
        );
        assert_eq!(plain, extra);
    }

    #[test]
    fn 缓存键_内容模型方言与密钥都区分() {
        let base = key_of(
            "甲",
            "演示",
            "chat",
            r#"{"messages":[{"role":"user","content":"你好"}]}"#,
        );
        let others = [
            key_of(
                "甲",
                "演示",
                "chat",
                r#"{"messages":[{"role":"user","content":"您好"}]}"#,
            ),
            key_of(
                "甲",
                "另一个",
                "chat",
                r#"{"messages":[{"role":"user","content":"你好"}]}"#,
            ),
            key_of(
                "甲",
                "演示",
                "messages",
                r#"{"messages":[{"role":"user","content":"你好"}]}"#,
            ),
            key_of(
                "乙",
                "演示",
                "chat",
                r#"{"messages":[{"role":"user","content":"你好"}]}"#,
            ),
        ];
        for other in others {
            assert_ne!(base, other);
        }
    }

    #[test]
    fn 缓存键_嵌套对象里的元数据字段仍然算内容() {
        let a = key_of("甲", "演示", "chat", r#"{"tools":[{"metadata":1}]}"#);
        let b = key_of("甲", "演示", "chat", r#"{"tools":[{"metadata":2}]}"#);
        assert_ne!(a, b, "只去掉顶层的非语义字段");
    }

    #[test]
    fn 缓存键_全局范围忽略密钥_团队范围按团队() {
        let text = r#"{"messages":[]}"#;
        let of = |settings: &CacheSettings, who: (&str, Option<&str>)| {
            key(settings, who, "演示", "chat", &body(text))
        };
        let global = CacheSettings {
            scope: CacheScope::Global,
            ..CacheSettings::default()
        };
        assert_eq!(of(&global, ("甲", None)), of(&global, ("乙", Some("队"))));
        let team = CacheSettings {
            scope: CacheScope::Team,
            ..CacheSettings::default()
        };
        assert_eq!(
            of(&team, ("甲", Some("队"))),
            of(&team, ("乙", Some("队"))),
            "同一团队的密钥共用"
        );
        assert_ne!(
            of(&team, ("甲", Some("队"))),
            of(&team, ("甲", Some("别队")))
        );
        assert_ne!(
            of(&team, ("甲", None)),
            of(&team, ("乙", None)),
            "没有团队时按密钥"
        );
        assert_ne!(
            of(&team, ("队", None)),
            of(&team, ("甲", Some("队"))),
            "团队与同名密钥不共用"
        );
        let by_key = CacheSettings::default();
        assert_ne!(
            of(&by_key, ("甲", Some("队"))),
            of(&by_key, ("乙", Some("队")))
        );
        assert_ne!(
            of(&global, ("甲", None)),
            of(&by_key, ("甲", None)),
            "全局与按密钥的条目不混用"
        );
    }

    #[test]
    fn 可用缓存_按模式与模型判断() {
        let det = CacheSettings::default();
        let always = CacheSettings {
            mode: CacheMode::Always,
            ..CacheSettings::default()
        };
        let listed = CacheSettings {
            models: Some(vec!["演示".into()]),
            ..CacheSettings::default()
        };
        let table = [
            (&det, "演示", json!({"temperature": 0}), true),
            (&det, "演示", json!({"temperature": 0.0, "n": 1}), true),
            (&det, "演示", json!({"seed": 42, "temperature": 0.7}), true),
            (&det, "演示", json!({"temperature": 0.7}), false),
            (&det, "演示", json!({}), false),
            (&det, "演示", json!({"seed": null}), false),
            (&det, "演示", json!({"temperature": 0, "n": 2}), false),
            (&always, "演示", json!({"temperature": 1.0}), true),
            (&always, "演示", json!({"n": 3}), true),
            (&listed, "演示", json!({"temperature": 0}), true),
            (&listed, "别的", json!({"temperature": 0}), false),
        ];
        for (settings, model, request, expected) in table {
            let map = request.as_object().expect("对象").clone();
            assert_eq!(
                eligible(settings, model, (&map, false)),
                expected,
                "{model} {request}"
            );
        }
        let nothing = Map::new();
        assert!(eligible(&det, "演示", (&nothing, true)), "向量总是确定的");
        assert!(
            !eligible(&listed, "别的", (&nothing, true)),
            "模型不在列表里"
        );
    }
}
