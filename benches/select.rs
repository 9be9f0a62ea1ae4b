//! 选择决策的基准：纯二选一算法，以及一个请求完整的选择（登记表查找、加锁读状态、二选一、占用与释放）。
//! 只测量，不断言。
//!
//! 运行：cargo bench --bench select

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use rand::rngs::SmallRng;
use rand::SeedableRng;

use chatnexus::config::{self, Config};
use chatnexus::upstream::{choose, Balancer, Choice, Verdict};

/// 参与基准的目标数。
const SIZES: [usize; 4] = [1, 2, 4, 8];
/// 随机数种子（每次运行结果可比）。
const SEED: u64 = 42;
/// 目标地址（基准不发请求，地址只需合法）。
const BASE_URL: &str = "http://127.0.0.1";
/// 第一个目标的端口。
const FIRST_PORT: usize = 10_000;

/// 一个模型带 `n` 个目标（两个优先级层）的配置。
fn config_with(n: usize) -> Config {
    let mut yaml = String::from("auth: { disabled: true }\nproviders:\n");
    for i in 0..n {
        yaml.push_str(&format!(
            "  - {{ name: p{i}, kind: openai_compatible, base_url: '{BASE_URL}:{}' }}\n",
            FIRST_PORT + i
        ));
    }
    yaml.push_str("models:\n  - { name: m, targets: [");
    let targets: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "{{ provider: p{i}, weight: {}, priority: {} }}",
                i + 1,
                i / 4
            )
        })
        .collect();
    yaml.push_str(&targets.join(", "));
    yaml.push_str("] }\n");
    let file = config::parse(&yaml).unwrap_or_else(|e| panic!("基准配置无效：{e}"));
    config::build(file, |_| None).unwrap_or_else(|e| panic!("基准配置无效：{e}"))
}

/// 纯算法：在 n 个候选中二选一。
fn bench_choose(c: &mut Criterion) {
    let mut group = c.benchmark_group("choose");
    for n in SIZES {
        let choices: Vec<Choice> = (0..n)
            .map(|i| Choice {
                index: i,
                priority: (i / 4) as u32,
                weight: (i + 1) as u32,
                cost: 0.1 * (i + 1) as f64,
            })
            .collect();
        let mut rng = SmallRng::seed_from_u64(SEED);
        group.bench_with_input(BenchmarkId::from_parameter(n), &choices, |b, choices| {
            b.iter(|| choose(black_box(choices), &mut rng))
        });
    }
    group.finish();
}

/// 一个请求的完整选择：制定计划、选出并占用第一个目标、报告成功并释放。
fn bench_plan(c: &mut Criterion) {
    let mut group = c.benchmark_group("plan_next_settle");
    for n in SIZES {
        let cfg = config_with(n);
        let balancer = Balancer::default();
        let model = cfg.model("m").unwrap_or_else(|| panic!("基准模型缺失"));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                let mut plan = balancer.plan(black_box(model), &cfg);
                if let Some(lease) = plan.next() {
                    lease.settle(Verdict::Healthy);
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_choose, bench_plan);
criterion_main!(benches);
