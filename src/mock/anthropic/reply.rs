//! Anthropic 回复的线上形状：完整消息、具名 SSE 事件流（message_start、内容块、message_delta）与用量。

use bytes::Bytes;
use pingora::protocols::http::ServerSession;
use serde_json::{json, Map, Value};

use super::{error_body, OVERLOADED};
use crate::mock::io::{send_named, send_raw, start_stream};
use crate::mock::plan::{self, MockUsage, PlannedCall, Reply};
use crate::mock::{MockApp, STREAM_ERROR_MESSAGE};

/// 调用工具之前先说的一句话：让工具的内容块序号（1、2）与 OpenAI 的工具序号（0、1）不同。
const TOOL_PREAMBLE: &str = "我来查一下。";
/// `message_start` 里的起始输出 token 数（真实 API 也报告一个很小的起始值）。
const START_OUTPUT_TOKENS: u64 = 1;
/// 工具参数被拆成的片段数（另有一个真实 API 常见的空片段在最前）。
const ARGUMENT_FRAGMENTS: usize = 2;
/// 工具调用 id 前缀。
const TOOL_ID_PREFIX: &str = "toolu_mock_";

/// 一个待输出的内容块。
pub(super) struct Block {
    /// 完整形状（非流式响应中的样子）。
    full: Value,
    /// 流式时依次发送的增量。
    deltas: Vec<Value>,
}

/// 一次回复。
pub(super) struct Message {
    pub(super) id: String,
    pub(super) model: String,
    pub(super) usage: MockUsage,
    pub(super) stop_reason: &'static str,
    pub(super) blocks: Vec<Block>,
}

/// 回复对应的 `stop_reason`。
pub(super) fn stop_reason(reply: &Reply) -> &'static str {
    match reply {
        Reply::Text(_) => "end_turn",
        Reply::Tools(_) => "tool_use",
    }
}

/// 回复的内容块：文本回复一个文本块；工具回复先一句文本，再每个调用一个 tool_use 块。
pub(super) fn blocks_of(reply: &Reply) -> Vec<Block> {
    match reply {
        Reply::Text(pieces) => vec![text_content(pieces)],
        Reply::Tools(calls) => std::iter::once(text_content(&[TOOL_PREAMBLE.to_string()]))
            .chain(calls.iter().map(tool_content))
            .collect(),
    }
}

/// 文本块：每个分块一个 text_delta。
fn text_content(pieces: &[String]) -> Block {
    Block {
        full: json!({ "type": "text", "text": pieces.concat() }),
        deltas: pieces
            .iter()
            .map(|p| json!({ "type": "text_delta", "text": p }))
            .collect(),
    }
}

/// tool_use 块：参数以一个空片段加两段 input_json_delta 发送（真实 API 常以空片段开头）。
fn tool_content(call: &PlannedCall) -> Block {
    let input = Value::Object(call.arguments.clone());
    let fragments = std::iter::once(String::new())
        .chain(plan::split_reply(&input.to_string(), ARGUMENT_FRAGMENTS));
    Block {
        full: json!({ "type": "tool_use", "id": plan::next_id(TOOL_ID_PREFIX), "name": call.name, "input": input }),
        deltas: fragments
            .map(|f| json!({ "type": "input_json_delta", "partial_json": f }))
            .collect(),
    }
}

/// 流中块开始时的形状：文本为空、工具参数为空对象（内容随后由增量给出）。
fn start_shape(full: &Value) -> Value {
    let mut start = full.clone();
    if start["type"] == "text" {
        start["text"] = json!("");
    } else {
        start["input"] = json!({});
    }
    start
}

/// 输入部分的用量（Anthropic 语义：input_tokens 不含缓存读取）。
fn input_usage(u: &MockUsage) -> Map<String, Value> {
    let mut usage = Map::new();
    usage.insert(
        "input_tokens".into(),
        json!(u.prompt.saturating_sub(u.cached)),
    );
    usage.insert("cache_creation_input_tokens".into(), json!(0));
    usage.insert("cache_read_input_tokens".into(), json!(u.cached));
    usage
}

/// 最终用量：输入部分加累计输出；有思考 token 时附上 `output_tokens_details`。
fn final_usage(u: &MockUsage) -> Value {
    let mut usage = input_usage(u);
    usage.insert("output_tokens".into(), json!(u.completion));
    if u.reasoning > 0 {
        usage.insert(
            "output_tokens_details".into(),
            json!({ "thinking_tokens": u.reasoning }),
        );
    }
    Value::Object(usage)
}

/// 非流式响应体。
pub(super) fn full_message(m: &Message) -> Value {
    json!({
        "id": m.id, "type": "message", "role": "assistant", "model": m.model,
        "content": m.blocks.iter().map(|b| b.full.clone()).collect::<Vec<_>>(),
        "stop_reason": m.stop_reason, "stop_sequence": null, "usage": final_usage(&m.usage),
    })
}

/// `message_start` 事件：空内容、`stop_reason` 为 null、输出用量为起始值。
fn message_start(m: &Message) -> Value {
    let mut usage = input_usage(&m.usage);
    usage.insert("output_tokens".into(), json!(START_OUTPUT_TOKENS));
    json!({ "type": "message_start", "message": {
        "id": m.id, "type": "message", "role": "assistant", "model": m.model, "content": [],
        "stop_reason": null, "stop_sequence": null, "usage": usage,
    } })
}

/// 全部内容事件：每块 start、增量、stop，第一个块开始后插一个 ping。
fn content_events(blocks: &[Block]) -> Vec<Value> {
    let mut events = Vec::new();
    for (index, block) in blocks.iter().enumerate() {
        events.push(json!({ "type": "content_block_start", "index": index, "content_block": start_shape(&block.full) }));
        if index == 0 {
            events.push(json!({ "type": "ping" }));
        }
        events.extend(
            block
                .deltas
                .iter()
                .map(|d| json!({ "type": "content_block_delta", "index": index, "delta": d })),
        );
        events.push(json!({ "type": "content_block_stop", "index": index }));
    }
    events
}

/// `message_delta` 事件：停止原因与累计用量。
fn message_delta(m: &Message) -> Value {
    json!({ "type": "message_delta", "delta": { "stop_reason": m.stop_reason, "stop_sequence": null }, "usage": final_usage(&m.usage) })
}

/// 写一个具名事件（事件名即 JSON 中的 `type`）。
async fn send_event(session: &mut ServerSession, event: &Value) -> bool {
    send_named(session, event["type"].as_str().unwrap_or_default(), event).await
}

/// 流式回复：message_start、各内容事件（每个事件之前按设置延迟或按故障断开）、message_delta、message_stop。
pub(super) async fn stream(app: &MockApp, session: &mut ServerSession, m: &Message) -> bool {
    if !start_stream(session).await {
        return false;
    }
    let mut ok = send_event(session, &message_start(m)).await;
    for (i, event) in content_events(&m.blocks).iter().enumerate() {
        if !ok {
            break;
        }
        if !app.before_piece(i).await {
            if app.error_due(i) {
                send_event(session, &error_body(OVERLOADED, STREAM_ERROR_MESSAGE)).await;
            }
            return false;
        }
        ok = send_event(session, event).await;
    }
    ok = ok && send_event(session, &message_delta(m)).await;
    ok = ok && send_event(session, &json!({ "type": "message_stop" })).await;
    ok = ok && send_raw(session, Bytes::new(), true).await;
    app.count_stream(ok);
    ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock::anthropic::tests::对象;

    /// 输入 30（缓存 10）、输出 12 的用量，推理数由参数给出。
    fn 用量(reasoning: u64) -> MockUsage {
        MockUsage {
            prompt: 30,
            completion: 12,
            cached: 10,
            reasoning,
        }
    }

    /// 并行调用两个工具的回复。
    fn 工具回复() -> Message {
        let call = |name: &str| PlannedCall {
            name: name.into(),
            arguments: 对象(json!({ "城市": "巴黎" })),
        };
        let reply = Reply::Tools(vec![call("查天气"), call("查时间")]);
        Message {
            id: "msg_测试".into(),
            model: "claude-sonnet-4-5".into(),
            usage: 用量(0),
            stop_reason: stop_reason(&reply),
            blocks: blocks_of(&reply),
        }
    }

    #[test]
    fn 流事件_顺序完整_含_ping_工具参数拆成空片段加两段() {
        let m = 工具回复();
        let events = content_events(&m.blocks);
        let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
        let tool = [
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
        ];
        let mut expected = vec![
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_stop",
        ];
        expected.extend(tool);
        expected.extend(tool);
        assert_eq!(kinds, expected);
        assert_eq!(events[2]["delta"]["text"], TOOL_PREAMBLE);
        let starts: Vec<&Value> = events
            .iter()
            .filter(|e| e["type"] == "content_block_start")
            .collect();
        assert_eq!(starts[1]["index"], 1, "第一个工具的内容块序号是 1");
        assert_eq!(
            starts[1]["content_block"]["input"],
            json!({}),
            "块开始时参数为空对象"
        );
        assert_ne!(
            starts[1]["content_block"]["id"], starts[2]["content_block"]["id"],
            "工具调用 id 必须不同"
        );
        let fragments: Vec<&str> = events
            .iter()
            .filter(|e| e["index"] == 2 && e["delta"]["type"] == "input_json_delta")
            .filter_map(|e| e["delta"]["partial_json"].as_str())
            .collect();
        assert_eq!(fragments.len(), 1 + ARGUMENT_FRAGMENTS);
        assert_eq!(fragments[0], "", "第一个片段为空");
        assert_eq!(fragments.concat(), "{\"城市\":\"巴黎\"}");
        assert_eq!(message_delta(&m)["delta"]["stop_reason"], "tool_use");
    }

    #[test]
    fn 用量_输入不含缓存_思考_token_仅在大于零时出现() {
        let m = 工具回复();
        let start = message_start(&m);
        assert_eq!(
            start["message"]["usage"],
            json!({ "input_tokens": 20, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 10, "output_tokens": START_OUTPUT_TOKENS })
        );
        assert!(start["message"]["stop_reason"].is_null());
        assert_eq!(final_usage(&用量(0)).get("output_tokens_details"), None);
        assert_eq!(
            final_usage(&用量(5))["output_tokens_details"],
            json!({ "thinking_tokens": 5 })
        );
        assert_eq!(final_usage(&用量(5))["output_tokens"], 12);
    }

    #[test]
    fn 完整消息_文本块在工具块之前_工具参数为对象() {
        let body = full_message(&工具回复());
        assert_eq!(body["type"], "message");
        assert_eq!(body["stop_reason"], "tool_use");
        assert_eq!(
            body["content"][0],
            json!({ "type": "text", "text": TOOL_PREAMBLE })
        );
        assert_eq!(body["content"][1]["input"], json!({ "城市": "巴黎" }));
        assert!(body["content"][2]["id"]
            .as_str()
            .is_some_and(|id| id.starts_with(TOOL_ID_PREFIX)));
        let text = blocks_of(&Reply::Text(vec!["你".into(), "好".into()]));
        assert_eq!(text[0].full, json!({ "type": "text", "text": "你好" }));
        assert_eq!(text[0].deltas.len(), 2, "每个分块一个增量");
    }
}
