//! 热路径基准：SSE 增量解析、请求体解析与模型名改写。只测量，不断言。
//!
//! 运行：cargo bench --bench hot_path

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use chatnexus::config::Target;
use chatnexus::dialects::ChatRequest;
use chatnexus::providers::{splice_model, upstream_body};
use chatnexus::streaming::SseParser;

/// 一个流的事件数。
const STREAM_EVENTS: usize = 200;
/// 模拟 TCP 读取的块大小。
const READ_SIZES: &[usize] = &[64, 1024, 16 * 1024];
/// 请求体大小（字节）。
const BODY_SIZES: &[usize] = &[1024, 100 * 1024, 1024 * 1024];

fn openai_stream() -> Vec<u8> {
    let mut text = String::new();
    for i in 0..STREAM_EVENTS {
        text += &format!(
            "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"第{i}块\"}},\"finish_reason\":null}}]}}\n\n"
        );
    }
    text += "data: [DONE]\n\n";
    text.into_bytes()
}

fn bench_sse(c: &mut Criterion) {
    let stream = openai_stream();
    let mut group = c.benchmark_group("SSE解析");
    group.throughput(Throughput::Bytes(stream.len() as u64));
    for &size in READ_SIZES {
        group.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, &size| {
            b.iter(|| {
                let mut parser = SseParser::default();
                let mut events = Vec::with_capacity(STREAM_EVENTS + 1);
                for chunk in stream.chunks(size) {
                    parser.push(black_box(chunk), &mut events);
                }
                parser.finish(&mut events);
                events.len()
            })
        });
    }
    group.finish();
}

fn request_body(size: usize) -> Bytes {
    let content = "长".repeat(size / 3);
    let body = serde_json::json!({ "model": "demo", "stream": true, "messages": [ { "role": "user", "content": content } ] });
    Bytes::from(body.to_string())
}

/// 改写模型名用的目标：上游模型名与客户端的不同。
const TARGET_YAML: &str = "auth: { disabled: true }\nproviders: [ { name: up, kind: openai_compatible, base_url: 'http://127.0.0.1:9/v1' } ]\nmodels: [ { name: demo, targets: [ { provider: up, model: upstream-model } ] } ]";

fn upstream_target() -> Target {
    let parsed =
        chatnexus::config::parse(TARGET_YAML).unwrap_or_else(|e| panic!("基准配置必须合法：{e:?}"));
    let config = chatnexus::config::build(parsed, |_| None)
        .unwrap_or_else(|e| panic!("基准配置必须合法：{e:?}"));
    match config.model("demo") {
        Some(model) => model.targets[0].clone(),
        None => panic!("基准配置缺少模型 demo"),
    }
}

fn bench_request(c: &mut Criterion) {
    let target = upstream_target();
    let mut group = c.benchmark_group("请求解析与改写");
    for &size in BODY_SIZES {
        let raw = request_body(size);
        group.throughput(Throughput::Bytes(raw.len() as u64));
        group.bench_with_input(BenchmarkId::new("解析", size), &raw, |b, raw| {
            b.iter(|| ChatRequest::parse(black_box(raw.clone())).map(|r| r.stream))
        });
        let req = match ChatRequest::parse(raw.clone()) {
            Ok(req) => req,
            Err(e) => panic!("基准请求体必须合法：{e}"),
        };
        group.bench_with_input(BenchmarkId::new("改写模型名", size), &req, |b, req| {
            b.iter(|| upstream_body(black_box(req), &target, false).map(|b| b.len()))
        });
        // 流式请求还要追加 stream_options（客户端大多不带它）
        group.bench_with_input(
            BenchmarkId::new("改写模型名并要用量", size),
            &req,
            |b, req| b.iter(|| upstream_body(black_box(req), &target, true).map(|b| b.len())),
        );
        // 透传（Messages → Anthropic）在原始字节里替换模型名：一遍扫描，不建树
        group.bench_with_input(
            BenchmarkId::new("透传改写模型名", size),
            &raw,
            |b, raw| b.iter(|| splice_model(black_box(raw), "upstream-model").map(|b| b.len())),
        );
    }
    group.finish();
}

criterion_group!(benches, bench_sse, bench_request);
criterion_main!(benches);
