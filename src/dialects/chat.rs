//! 客户端请求：解析并校验 OpenAI Chat Completions 请求体。
//!
//! 只校验网关依赖的字段和常见字段的类型；未知字段原样保留并透传给上游，
//! 这样客户端用到的新参数不会被网关吞掉。

use bytes::Bytes;
use serde_json::{Map, Value};

use super::body::{
    check_types, messages_of, missing_field, model_of, parse_object, wrong_type, Expect,
};
use crate::error::{ApiError, ErrorCode};

pub use super::body::MAX_MESSAGES;

/// 允许的消息角色。
const ROLES: &[&str] = &[
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
];

/// 常见可选字段及其类型：出现且不为 null 时必须符合。
const FIELD_TYPES: &[(&str, Expect)] = &[
    ("stream", Expect::Bool),
    ("stream_options", Expect::Object),
    ("temperature", Expect::Number),
    ("top_p", Expect::Number),
    ("n", Expect::PositiveInt),
    ("max_tokens", Expect::PositiveInt),
    ("max_completion_tokens", Expect::PositiveInt),
    ("presence_penalty", Expect::Number),
    ("frequency_penalty", Expect::Number),
    ("tools", Expect::Array),
    ("response_format", Expect::Object),
    ("user", Expect::String),
];

/// 一个已校验的聊天请求。
///
/// 用途：`proxy` 解析后交给 `providers` 翻译；`body` 保留客户端的全部字段与顺序，
/// `raw` 保留原始字节（无需改写时原样转发，零拷贝）。
///
/// ```
/// let raw = r#"{"model":"演示","messages":[{"role":"user","content":"你好"}],"stream":true}"#;
/// let req = chatnexus::dialects::ChatRequest::parse(raw.into()).unwrap(); // 校验通过
/// assert_eq!((req.model.as_str(), req.stream), ("演示", true)); // 取出路由需要的字段
/// ```
#[derive(Debug, Clone)]
pub struct ChatRequest {
    /// 客户端请求的模型名。
    pub model: String,
    /// 是否流式。
    pub stream: bool,
    /// 完整请求对象。
    pub body: Map<String, Value>,
    /// 原始请求体。
    pub raw: Bytes,
}

impl ChatRequest {
    /// 解析并校验请求体。
    ///
    /// 错误：非 JSON、不是对象、缺少 `model`/`messages` 或字段类型不对时返回 400，
    /// `param` 指向出错字段。
    pub fn parse(raw: Bytes) -> Result<Self, ApiError> {
        let body = parse_object(&raw)?;
        let model = model_of(&body)?;
        validate_roles(messages_of(&body)?)?;
        check_types(&body, FIELD_TYPES)?;
        let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
        Ok(ChatRequest {
            model,
            stream,
            body,
            raw,
        })
    }

    /// 由各方言翻译好的枢纽请求对象构造请求：`model` 与 `stream` 取自对象，`raw` 为对象的序列化。
    ///
    /// 参数：`hub` 为枢纽格式的完整请求对象。
    ///
    /// 错误：序列化失败（不会发生）时返回 500。
    pub(crate) fn from_hub(hub: Map<String, Value>) -> Result<Self, ApiError> {
        let stream = hub.get("stream").and_then(Value::as_bool).unwrap_or(false);
        let raw = serde_json::to_vec(&hub)
            .map_err(|e| ApiError::internal(format!("序列化枢纽请求失败：{e}")))?;
        let model = hub
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        Ok(ChatRequest {
            model,
            stream,
            body: hub,
            raw: Bytes::from(raw),
        })
    }
}

/// 每条消息都必须是带合法 `role` 的对象。
fn validate_roles(list: &[Value]) -> Result<(), ApiError> {
    for (i, message) in list.iter().enumerate() {
        let Value::Object(fields) = message else {
            return Err(wrong_type(&format!("messages[{i}]"), "对象"));
        };
        // 出错时才拼参数名：合法的消息不为错误信息付出分配
        let param = || format!("messages[{i}].role");
        match fields.get("role") {
            Some(Value::String(role)) if ROLES.contains(&role.as_str()) => {}
            Some(Value::String(role)) => {
                let param = param();
                return Err(ApiError::bad_request(
                    ErrorCode::InvalidValue,
                    format!("`{param}` 的值 `{role}` 无效，应为 {}", ROLES.join("、")),
                )
                .with_param(param));
            }
            Some(_) => return Err(wrong_type(&param(), "字符串")),
            None => return Err(missing_field(&param())),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialects::body::MAX_MODEL_LEN;

    fn 解析(text: &str) -> Result<ChatRequest, ApiError> {
        ChatRequest::parse(Bytes::from(text.to_string()))
    }

    fn 错误参数(text: &str) -> (u16, Option<String>) {
        let e = 解析(text).expect_err("应当校验失败");
        (e.status, e.param.map(String::from))
    }

    #[test]
    fn 请求_合法请求保留未知字段() {
        let req = 解析(r#"{"model":"m","messages":[{"role":"user","content":"你好"}],"seed":7}"#)
            .expect("应当通过");
        assert!(!req.stream);
        assert_eq!(req.body["seed"], 7, "未知字段必须保留");
    }

    #[test]
    fn 请求_重复的顶层键_拒绝并点名() {
        for body in [
            r#"{"model":"允许的","messages":[{"role":"user","content":"x"}],"model":"未批准的"}"#,
            r#"{"model":"允许的","messages":[{"role":"user","content":"x"}],"mo\u0064el":"未批准的"}"#,
        ] {
            let e = 解析(body).expect_err("重复的键必须被拒绝");
            assert_eq!(
                (e.status, Some(e.envelope_code())),
                (400, Some("duplicate_key"))
            );
            assert!(
                e.message.contains("`model`"),
                "消息应点名重复的键：{}",
                e.message
            );
        }
        let nested =
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"metadata":{"a":1,"b":2}}"#;
        assert!(解析(nested).is_ok(), "不同的键不算重复");
    }

    #[test]
    fn 请求_顶层不是对象_返回类型错误() {
        for body in ["[1,2]", "\"文本\"", "7", "null", "true"] {
            let e = 解析(body).expect_err("非对象必须被拒绝");
            assert_eq!(
                (e.status, Some(e.envelope_code())),
                (400, Some("invalid_type")),
                "{body}"
            );
        }
    }

    #[test]
    fn 请求_模型名含控制字符或过长_拒绝() {
        let forged = "m\\n访问 请求ID=伪造 POST /v1/chat/completions 状态=200";
        let long = "m".repeat(MAX_MODEL_LEN + 1);
        for model in [forged, "m\\u0000", long.as_str()] {
            let body =
                format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"x"}}]}}"#);
            let e = 解析(&body).expect_err("非法模型名必须被拒绝");
            assert_eq!(
                (e.status, Some(e.envelope_code()), e.param.as_deref()),
                (400, Some("invalid_value"), Some("model"))
            );
        }
        let ok = format!(
            r#"{{"model":"{}","messages":[{{"role":"user","content":"x"}}]}}"#,
            "m".repeat(MAX_MODEL_LEN)
        );
        assert!(解析(&ok).is_ok(), "恰好到上限的模型名可以通过");
    }

    #[test]
    fn 请求_非法_json_返回_400() {
        let e = 解析("{不是 json").expect_err("应当失败");
        assert_eq!(
            (e.status, Some(e.envelope_code())),
            (400, Some("invalid_json"))
        );
    }

    #[test]
    fn 请求_缺少或错误的必填字段_指出参数() {
        assert_eq!(错误参数(r#"{"messages":[]}"#), (400, Some("model".into())));
        assert_eq!(
            错误参数(r#"{"model":1,"messages":[]}"#),
            (400, Some("model".into()))
        );
        assert_eq!(错误参数(r#"{"model":"m"}"#), (400, Some("messages".into())));
        assert_eq!(
            错误参数(r#"{"model":"m","messages":[]}"#),
            (400, Some("messages".into()))
        );
        assert_eq!(
            错误参数(r#"{"model":"m","messages":[{"content":"x"}]}"#),
            (400, Some("messages[0].role".into()))
        );
        assert_eq!(
            错误参数(r#"{"model":"m","messages":[{"role":"机器人"}]}"#),
            (400, Some("messages[0].role".into()))
        );
    }

    #[test]
    fn 请求_可选字段类型错误_返回_400() {
        let base = r#"{"model":"m","messages":[{"role":"user","content":"x"}],"#;
        assert_eq!(
            错误参数(&format!(r#"{base}"stream":"yes"}}"#)),
            (400, Some("stream".into()))
        );
        assert_eq!(
            错误参数(&format!(r#"{base}"max_tokens":-1}}"#)),
            (400, Some("max_tokens".into()))
        );
        assert!(
            解析(&format!(r#"{base}"temperature":null}}"#)).is_ok(),
            "null 视为未设置"
        );
    }

    /// 由 `count` 条相同的用户消息组成的请求体。
    fn 多条消息(count: usize) -> String {
        let message = r#"{"role":"user","content":"你好"}"#;
        format!(
            r#"{{"model":"m","messages":[{}]}}"#,
            vec![message; count].join(",")
        )
    }

    #[test]
    fn 请求_消息数上限_一万条接受_一万零一条返回_400() {
        let req = 解析(&多条消息(MAX_MESSAGES)).expect("恰好达到上限的请求应当通过");
        assert_eq!(
            req.body["messages"].as_array().map(Vec::len),
            Some(MAX_MESSAGES)
        );
        let e = 解析(&多条消息(MAX_MESSAGES + 1)).expect_err("超过上限必须拒绝");
        assert_eq!(
            (e.status, Some(e.envelope_code()), e.param.as_deref()),
            (400, Some("too_many_messages"), Some("messages"))
        );
        assert!(
            e.message.contains("10000"),
            "错误消息应说明上限：{}",
            e.message
        );
    }

    #[test]
    fn 请求_顶层不是对象_返回_400() {
        assert_eq!(错误参数("[1,2]"), (400, None));
    }
}
