//! 翻译基准：每种上游的请求翻译（典型请求与一万条消息的请求），以及流式翻译的每块开销。只测量，不断言。
//!
//! 运行：cargo bench --bench translate；只跑一万条消息的部分：cargo bench --bench translate -- 10000

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde_json::{json, Value};

use chatnexus::config::{self, Config, Target};
use chatnexus::dialects::chat::{ChatRequest, MAX_MESSAGES};
use chatnexus::providers::{filter_for, TranslateCtx};
use chatnexus::streaming::SseEvent;

/// 流中的内容块数。
const STREAM_CHUNKS: usize = 100;
/// 一万条消息的基准每组的样本数（criterion 允许的最小值；每次迭代要翻译上万条消息）。
const LARGE_SAMPLES: usize = 10;
/// 混合对话每轮的消息数：用户提问、带两个工具调用的助手消息、两条工具结果、助手回答。
const ROUND_MESSAGES: usize = 5;
/// 连续工具结果对话中工具结果以外的消息数：开头的用户提问与带全部工具调用的助手消息。
const LEADING_MESSAGES: usize = 2;
/// 参与基准的模型名（与配置中的上游协议一一对应）。
const MODELS: &[&str] = &["openai", "anthropic", "gemini", "azure"];
/// 四种上游的最小配置。
const CONFIG: &str = "auth: { disabled: true }
providers:
  - { name: openai, kind: openai, base_url: 'https://api.openai.com', api_key: k }
  - { name: anthropic, kind: anthropic, base_url: 'https://api.anthropic.com', api_key: k }
  - { name: gemini, kind: gemini, base_url: 'https://generativelanguage.googleapis.com', api_key: k }
  - { name: azure, kind: azure, base_url: 'https://contoso.openai.azure.com', api_key: k, api_version: '2024-10-21' }
models:
  - { name: openai, targets: [ { provider: openai, model: gpt-4o-mini } ] }
  - { name: anthropic, targets: [ { provider: anthropic, model: claude-sonnet-4-5 } ] }
  - { name: gemini, targets: [ { provider: gemini, model: gemini-2.5-flash } ] }
  - { name: azure, targets: [ { provider: azure, deployment: gpt-4o } ] }
";

fn load_config() -> Config {
    let file = config::parse(CONFIG).unwrap_or_else(|e| panic!("基准配置无效：{e}"));
    config::build(file, |_| None).unwrap_or_else(|e| panic!("基准配置无效：{e}"))
}

fn target<'a>(cfg: &'a Config, model: &str) -> &'a Target {
    match cfg.model(model) {
        Some(m) => &m.targets[0],
        None => panic!("基准配置缺少模型 {model}"),
    }
}

/// 一个典型的多轮工具对话请求（系统提示、历史、工具结果、两个工具定义）。
fn chat_request(model: &str) -> ChatRequest {
    let schema = json!({ "type": "object", "properties": { "城市": { "type": "string" } }, "required": ["城市"] });
    let body = json!({
        "model": model, "stream": true, "temperature": 0.3, "max_tokens": 512,
        "messages": [
            { "role": "system", "content": "你是一个简洁的助手。" },
            { "role": "user", "content": "巴黎和罗马今天天气如何？" },
            { "role": "assistant", "content": null, "tool_calls": [
                { "id": "call_1", "type": "function", "function": { "name": "查天气", "arguments": "{\"城市\":\"巴黎\"}" } },
                { "id": "call_2", "type": "function", "function": { "name": "查天气", "arguments": "{\"城市\":\"罗马\"}" } } ] },
            { "role": "tool", "tool_call_id": "call_1", "content": "晴，18 度" },
            { "role": "tool", "tool_call_id": "call_2", "content": "多云，21 度" },
            { "role": "user", "content": "那我该带伞吗？" },
        ],
        "tools": [ { "type": "function", "function": { "name": "查天气", "parameters": schema } } ],
    });
    ChatRequest::parse(Bytes::from(body.to_string()))
        .unwrap_or_else(|e| panic!("基准请求无效：{e}"))
}

/// 一个查天气的工具调用。
fn weather_call(id: &str, city: &str) -> Value {
    json!({ "id": id, "type": "function", "function": { "name": "查天气", "arguments": json!({ "城市": city }).to_string() } })
}

/// 混合对话：系统提示后按轮重复「用户提问 → 两个工具调用 → 两条工具结果 → 助手回答」，共 `count` 条。
fn mixed_messages(count: usize) -> Vec<Value> {
    let mut messages = vec![json!({ "role": "system", "content": "你是一个简洁的助手。" })];
    for round in 0..count.div_ceil(ROUND_MESSAGES) {
        let (paris, rome) = (format!("call_{round}_a"), format!("call_{round}_b"));
        messages.extend([
            json!({ "role": "user", "content": format!("第{round}轮：巴黎和罗马今天天气如何？") }),
            json!({ "role": "assistant", "content": null, "tool_calls": [ weather_call(&paris, "巴黎"), weather_call(&rome, "罗马") ] }),
            json!({ "role": "tool", "tool_call_id": paris, "content": "晴，18 度" }),
            json!({ "role": "tool", "tool_call_id": rome, "content": "多云，21 度" }),
            json!({ "role": "assistant", "content": "巴黎晴，罗马多云，都不用带伞。" }),
        ]);
    }
    messages.truncate(count);
    messages
}

/// 连续工具结果（问题 6 的最坏情况）：一条提问、一条带全部工具调用的助手消息，其后全是工具结果，共 `count` 条。
fn tool_result_messages(count: usize) -> Vec<Value> {
    let results = count.saturating_sub(LEADING_MESSAGES);
    let calls: Vec<Value> = (0..results)
        .map(|i| weather_call(&format!("call_{i}"), "巴黎"))
        .collect();
    let mut messages = vec![
        json!({ "role": "user", "content": "把这些城市的天气都查一遍。" }),
        json!({ "role": "assistant", "content": null, "tool_calls": calls }),
    ];
    messages.extend((0..results).map(|i| {
        json!({ "role": "tool", "tool_call_id": format!("call_{i}"), "content": format!("第{i}个城市：晴，18 度") })
    }));
    messages
}

/// 用给定消息构造一个经过校验的请求（与典型请求相同的工具定义与参数）。
fn large_request(model: &str, messages: &[Value]) -> ChatRequest {
    let schema = json!({ "type": "object", "properties": { "城市": { "type": "string" } }, "required": ["城市"] });
    let body = json!({
        "model": model, "stream": true, "temperature": 0.3, "max_tokens": 512, "messages": messages,
        "tools": [ { "type": "function", "function": { "name": "查天气", "parameters": schema } } ],
    });
    ChatRequest::parse(Bytes::from(body.to_string()))
        .unwrap_or_else(|e| panic!("基准请求无效：{e}"))
}

fn event(name: Option<&str>, data: serde_json::Value) -> SseEvent {
    SseEvent {
        event: name.map(str::to_string),
        data: data.to_string(),
    }
}

/// 各上游格式的一个录制流：`STREAM_CHUNKS` 个文本增量加首尾事件。
fn recorded_stream(model: &str) -> Vec<SseEvent> {
    let text = |i: usize| format!("第{i}段");
    match model {
        "anthropic" => {
            let mut events = vec![event(Some("message_start"), json!({ "type": "message_start", "message": { "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": [], "stop_reason": null, "usage": { "input_tokens": 10, "output_tokens": 1 } } }))];
            events.push(event(Some("content_block_start"), json!({ "type": "content_block_start", "index": 0, "content_block": { "type": "text", "text": "" } })));
            events.extend((0..STREAM_CHUNKS).map(|i| event(Some("content_block_delta"), json!({ "type": "content_block_delta", "index": 0, "delta": { "type": "text_delta", "text": text(i) } }))));
            events.push(event(Some("content_block_stop"), json!({ "type": "content_block_stop", "index": 0 })));
            events.push(event(Some("message_delta"), json!({ "type": "message_delta", "delta": { "stop_reason": "end_turn" }, "usage": { "output_tokens": 100 } })));
            events.push(event(Some("message_stop"), json!({ "type": "message_stop" })));
            events
        }
        "gemini" => (0..STREAM_CHUNKS)
            .map(|i| {
                let mut chunk = json!({ "candidates": [ { "content": { "role": "model", "parts": [ { "text": text(i) } ] }, "index": 0 } ], "usageMetadata": { "promptTokenCount": 10, "candidatesTokenCount": i, "totalTokenCount": 10 + i }, "modelVersion": "gemini-2.5-flash", "responseId": "r1" });
                if i + 1 == STREAM_CHUNKS {
                    chunk["candidates"][0]["finishReason"] = json!("STOP");
                }
                event(None, chunk)
            })
            .collect(),
        _ => {
            let mut events: Vec<SseEvent> = (0..STREAM_CHUNKS)
                .map(|i| event(None, json!({ "id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o", "choices": [ { "index": 0, "delta": { "content": text(i) }, "finish_reason": null } ] })))
                .collect();
            events.push(SseEvent { event: None, data: "[DONE]".into() });
            events
        }
    }
}

fn bench_requests(c: &mut Criterion) {
    let cfg = load_config();
    let mut group = c.benchmark_group("请求翻译");
    for &model in MODELS {
        let req = chat_request(model);
        let target = target(&cfg, model);
        let filter = filter_for(target.provider.kind);
        group.bench_function(BenchmarkId::from_parameter(model), |b| {
            b.iter(|| {
                filter
                    .build_request(black_box(&req), target)
                    .map(|r| r.body.len())
            })
        });
    }
    group.finish();
}

/// 每种上游翻译一万条消息（网关允许的上限）的请求：混合对话与连续工具结果两种形状。
fn bench_large_requests(c: &mut Criterion) {
    let cfg = load_config();
    let mut group = c.benchmark_group(format!("请求翻译_{MAX_MESSAGES}条消息"));
    group.sample_size(LARGE_SAMPLES);
    let shapes = [
        ("混合", mixed_messages(MAX_MESSAGES)),
        ("连续工具结果", tool_result_messages(MAX_MESSAGES)),
    ];
    for (shape, messages) in &shapes {
        for &model in MODELS {
            let req = large_request(model, messages);
            let target = target(&cfg, model);
            let filter = filter_for(target.provider.kind);
            group.bench_function(BenchmarkId::new(*shape, model), |b| {
                b.iter(|| {
                    filter
                        .build_request(black_box(&req), target)
                        .map(|r| r.body.len())
                })
            });
        }
    }
    group.finish();
}

fn bench_streams(c: &mut Criterion) {
    let cfg = load_config();
    let mut group = c.benchmark_group("流式翻译");
    for &model in MODELS {
        let events = recorded_stream(model);
        let filter = filter_for(target(&cfg, model).provider.kind);
        let ctx = TranslateCtx {
            model: model.to_string(),
            include_usage: true,
            created: 1,
        };
        group.throughput(Throughput::Elements(events.len() as u64));
        group.bench_function(BenchmarkId::from_parameter(model), |b| {
            b.iter(|| {
                let mut translator = filter.stream_translator(ctx.clone());
                let mut out = BytesMut::with_capacity(64 * 1024);
                for e in &events {
                    let _ = translator.on_event(black_box(e), &mut out);
                }
                let _ = translator.on_eof(&mut out);
                out.len()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_requests, bench_large_requests, bench_streams);
criterion_main!(benches);
