//! 模拟器的 OpenAI Responses 线上格式（参考文档 §R2–§R6、§R8）：`POST …/v1/responses`。
//!
//! 像真实 API 一样检查 Bearer 密钥与请求结构（model、input 项的类型与角色、工具结果与调用的配对），
//! 但接受未知的顶层字段、带 `encrypted_content` 的推理项、内置工具与命名空间工具（它们不会被调用）。
//! 非流式回完整的 response 对象；流式按 §R5 的事件规律发出带 `event:` 行与递增 `sequence_number` 的事件，
//! 流中错误故障以 `response.failed` 结束。错误消息沿用真实 API 的英文原文，括号里附中文说明。

mod events;
mod reply;
mod request;

use bytes::Bytes;
use pingora::protocols::http::ServerSession;
use serde_json::{json, Value};

use super::io::{write_json, write_json_with};
use super::plan;
use super::{Fault, MockApp};
use crate::clock::unix_now;
use events::stream;
use reply::{echo_of, full_response, items_of, Meta};
use request::{check_auth, parse_request, turn_of};

/// Responses 接口路径的结尾（前缀是提供方的 base_url，如 `/v1`）。
pub(super) const RESPONSES_PATH: &str = "/responses";
/// 响应 id 前缀。
const RESPONSE_ID_PREFIX: &str = "resp_mock_";
/// 请求要求返回推理密文时 `include` 里的值。
const INCLUDE_ENCRYPTED: &str = "reasoning.encrypted_content";

/// 一个 OpenAI 格式的错误：状态码、消息、出错的参数与错误码。
///
/// 序列化为 `{"error":{"message","type","param","code"}}`（参考文档 §R6 与 PWF §1.7）。
#[derive(Debug)]
struct ApiError {
    status: u16,
    message: String,
    param: Option<String>,
    code: Option<&'static str>,
}

impl ApiError {
    /// 没有参数与错误码的错误。
    fn new(status: u16, message: &str) -> Self {
        ApiError {
            status,
            message: message.to_string(),
            param: None,
            code: None,
        }
    }

    /// 附上出错的参数路径。
    fn param(mut self, param: &str) -> Self {
        self.param = Some(param.to_string());
        self
    }

    /// 缺少必填参数（真实 API 原文）。
    fn missing(param: &str) -> Self {
        let message = format!("Missing required parameter: '{param}'.（缺少必填参数）");
        ApiError {
            code: Some("missing_required_parameter"),
            ..ApiError::new(400, &message).param(param)
        }
    }

    /// 参数类型不对（真实 API 原文）。
    fn invalid_type(param: &str, expected: &str) -> Self {
        let message = format!("Invalid type for '{param}': expected {expected}.（参数类型不对）");
        ApiError {
            code: Some("invalid_type"),
            ..ApiError::new(400, &message).param(param)
        }
    }

    /// 取值不在允许的范围内（真实 API 原文，列出全部允许值）。
    fn invalid_value(param: &str, value: &str, supported: &[&str]) -> Self {
        let message = format!(
            "Invalid value: '{value}'. Supported values are: {}.（取值不被支持）",
            quoted_list(supported)
        );
        ApiError {
            code: Some("invalid_value"),
            ..ApiError::new(400, &message).param(param)
        }
    }

    /// OpenAI 错误信封。
    fn body(&self) -> Value {
        let kind = if self.status >= 500 {
            "server_error"
        } else {
            "invalid_request_error"
        };
        json!({ "error": { "message": self.message, "type": kind, "param": self.param, "code": self.code } })
    }
}

/// 英文列举：`'a', 'b', and 'c'`；两项时为 `'a' and 'b'`。
fn quoted_list(values: &[&str]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| format!("'{v}'")).collect();
    match quoted.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [first, second] => format!("{first} and {second}"),
        [init @ .., last] => format!("{}, and {last}", init.join(", ")),
    }
}

/// 处理 `POST …/responses`；返回连接是否仍可复用。
pub(super) async fn responses(app: &MockApp, session: &mut ServerSession, body: Bytes) -> bool {
    let checked = check_auth(session).and_then(|()| parse_request(&body));
    let request = match checked {
        Ok(request) => request,
        Err(e) => return write_json(session, e.status, &e.body()).await,
    };
    if let Some(Fault::Status(code)) = app.fault() {
        let error = ApiError::new(code, &format!("模拟的上游故障（{code}）"));
        let retry_after = app.retry_after(code);
        return write_json_with(session, code, &error.body(), retry_after.as_deref()).await;
    }
    let (turn, custom_tools) = turn_of(&request, body.len());
    let reply = plan::plan(&app.settings, &turn);
    let usage = plan::usage(&app.settings, &turn);
    let encrypted = request
        .get("include")
        .and_then(Value::as_array)
        .is_some_and(|list| list.iter().any(|v| v == INCLUDE_ENCRYPTED));
    let meta = Meta {
        id: plan::next_id(RESPONSE_ID_PREFIX),
        created_at: unix_now(),
        model: request
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        echo: echo_of(&request),
        usage,
    };
    let items = items_of(&reply, &custom_tools, usage.reasoning > 0, encrypted);
    if request.get("stream").and_then(Value::as_bool) == Some(true) {
        return stream(app, session, &meta, &items).await;
    }
    write_json(session, 200, &full_response(&meta, &items)).await
}

#[cfg(test)]
mod tests {
    use serde_json::Map;

    use super::*;
    use crate::mock::plan::{MockUsage, PlannedCall, Reply};
    use reply::{echo_of, Meta};

    /// 输入 30（缓存 10）、输出 12（推理 5）的用量。
    const 用量: MockUsage = MockUsage {
        prompt: 30,
        completion: 12,
        cached: 10,
        reasoning: 5,
    };

    /// 回显缺省值、模型为 gpt-5 的回复信息。
    pub(super) fn 信息() -> Meta {
        Meta {
            id: "resp_mock_1".into(),
            created_at: 1,
            model: "gpt-5".into(),
            echo: echo_of(&Map::new()),
            usage: 用量,
        }
    }

    /// 两个并行调用：一个函数工具、一个自由格式工具。
    pub(super) fn 工具回复() -> Reply {
        let call = |name: &str, args: Value| PlannedCall {
            name: name.into(),
            arguments: args.as_object().cloned().unwrap_or_default(),
        };
        Reply::Tools(vec![
            call("查天气", json!({ "城市": "巴黎" })),
            call("apply_patch", json!({})),
        ])
    }

    #[test]
    fn 错误信封_字段齐全_参数与错误码可为空() {
        let body = ApiError::missing("model").body();
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["param"], "model");
        assert_eq!(body["error"]["code"], "missing_required_parameter");
        let server = ApiError::new(503, "忙").body();
        assert_eq!(server["error"]["type"], "server_error");
        assert!(server["error"]["param"].is_null() && server["error"]["code"].is_null());
    }

    #[test]
    fn 列举_两项用_and_多项带牛津逗号() {
        assert_eq!(quoted_list(&["甲"]), "'甲'");
        assert_eq!(quoted_list(&["甲", "乙"]), "'甲' and '乙'");
        assert_eq!(quoted_list(&["甲", "乙", "丙"]), "'甲', '乙', and '丙'");
    }
}
