//! 向量接口基准：浮点向量编码成 base64（应与分量数成线性）、把上游给的浮点数组回复改写成 base64、
//! 100 条输入的请求校验。只测量，不断言。
//!
//! 运行：cargo bench --bench embeddings

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde_json::json;

use chatnexus::dialects::embeddings::{encode_base64, floats_to_base64, EmbeddingCaps};
use chatnexus::dialects::EmbeddingsRequest;

/// 常见模型的向量维度（text-embedding-3-small 的缩短版、完整版，text-embedding-3-large）。
const DIMENSIONS: [usize; 3] = [256, 1536, 3072];
/// 一批的条数。
const BATCH: usize = 100;
/// 改写基准里每个向量的维度。
const REWRITE_DIMENSIONS: usize = 1536;
/// 校验基准的上限（与缺省配置相同）。
const CAPS: EmbeddingCaps = EmbeddingCaps {
    max_inputs: 2048,
    max_input_bytes: 2 * 1024 * 1024,
};

/// 生成分量用的乘数（一个素数，让相邻分量互不相同）。
const SPREAD: usize = 7919;
/// 分量取值的档数（-1 到 1 之间均分）。
const STEPS: usize = 2000;

/// 一个确定的向量（分量在 -1 到 1 之间）。
fn vector(dimensions: usize) -> Vec<f32> {
    let half = (STEPS / 2) as f32;
    (0..dimensions)
        .map(|i| ((i * SPREAD) % STEPS) as f32 / half - 1.0)
        .collect()
}

fn bench_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("base64 编码");
    for dimensions in DIMENSIONS {
        let values = vector(dimensions);
        group.throughput(Throughput::Elements(dimensions as u64));
        group.bench_with_input(BenchmarkId::from_parameter(dimensions), &values, |b, v| {
            b.iter(|| encode_base64(black_box(v)))
        });
    }
    group.finish();
}

fn bench_rewrite(c: &mut Criterion) {
    let data: Vec<_> = (0..BATCH)
        .map(
            |i| json!({"object": "embedding", "index": i, "embedding": vector(REWRITE_DIMENSIONS)}),
        )
        .collect();
    let body = json!({"object": "list", "data": data, "model": "m", "usage": {"prompt_tokens": 1, "total_tokens": 1}});
    let bytes = Bytes::from(body.to_string());
    let mut group = c.benchmark_group("浮点回复改写成 base64");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function(format!("{BATCH} 条 × {REWRITE_DIMENSIONS} 维"), |b| {
        b.iter(|| floats_to_base64(black_box(&bytes)))
    });
    group.finish();
}

fn bench_parse(c: &mut Criterion) {
    let texts: Vec<String> = (0..BATCH)
        .map(|i| format!("检索增强生成先把文档切成片段，第{i}段"))
        .collect();
    let raw = Bytes::from(json!({"model": "向量", "input": texts}).to_string());
    let mut group = c.benchmark_group("向量请求校验");
    group.throughput(Throughput::Bytes(raw.len() as u64));
    group.bench_function(format!("{BATCH} 条"), |b| {
        b.iter(|| EmbeddingsRequest::parse(black_box(raw.clone()), CAPS))
    });
    group.finish();
}

criterion_group!(benches, bench_encode, bench_rewrite, bench_parse);
criterion_main!(benches);
