//! 向量接口 `/v1/embeddings`：OpenAI、Azure 与兼容服务只换 `model` 透传，Gemini 翻译成 `batchEmbedContents`；
//! 顺序、编码、错误、故障转移、指标与缓存。

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};

use crate::common::{
    authed, expect_error, send_raw, EMBEDDING_DEPLOYMENT, EMBEDDING_MODEL, EMBEDDING_PRICE_INPUT,
    EMBEDDING_PROMPT_TOKENS, ENV, GEMINI_EMBEDDING_MODEL, UPSTREAM_KEY,
};
use crate::metrics::{sample, scrape, tokens, wait_for};
use crate::support::header;

/// 模拟上游的缺省向量维度。
const MOCK_DIMENSIONS: usize = 8;
/// 超过缺省总大小上限（2 MiB）的输入字符数（每个汉字 3 字节）。
const INPUT_TOO_LARGE_CHARS: usize = 700_000;
/// 每百万 token。
const PER_MILLION: f64 = 1_000_000.0;

/// 发一个向量请求。
async fn embed(body: Value) -> reqwest::Response {
    let client = reqwest::Client::new();
    authed(&client, ENV.url("/v1/embeddings"))
        .json(&body)
        .send()
        .await
        .expect("请求失败")
}

/// 发一个向量请求并取回 200 的 JSON。
async fn embed_ok(body: Value) -> Value {
    let resp = embed(body).await;
    assert_eq!(resp.status(), 200, "向量请求应当成功");
    resp.json().await.expect("JSON")
}

/// 回复里每条向量的浮点数（base64 的先解码成小端 f32）。
fn vectors(reply: &Value) -> Vec<Vec<f32>> {
    let data = reply["data"].as_array().expect("data 是数组");
    data.iter()
        .enumerate()
        .map(|(i, item)| {
            assert_eq!(item["index"], i, "index 与位置一致");
            assert_eq!(item["object"], "embedding");
            match &item["embedding"] {
                Value::String(text) => STANDARD
                    .decode(text)
                    .expect("合法 base64")
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                Value::Array(numbers) => numbers
                    .iter()
                    .map(|n| n.as_f64().expect("数字") as f32)
                    .collect(),
                other => panic!("向量形状不对：{other}"),
            }
        })
        .collect()
}

#[tokio::test]
async fn openai_透传_只换模型名_批量顺序与单条一致() {
    let body = json!({"model": "向量-openai", "input": ["北京", "上海", "广州"], "user": "测试"});
    let batch = vectors(&embed_ok(body.clone()).await);
    let recorded = ENV.mock("emb-oa").recent().pop().expect("上游必须收到请求");
    assert_eq!(recorded.path, "/v1/embeddings");
    assert_eq!(
        recorded.header("authorization"),
        Some(format!("Bearer {UPSTREAM_KEY}").as_str())
    );
    let mut expected = body.clone();
    expected["model"] = json!(EMBEDDING_MODEL);
    assert_eq!(
        recorded.body,
        serde_json::to_vec(&expected).expect("可序列化"),
        "除 model 外逐字节不变"
    );
    assert_eq!(batch.len(), 3);
    assert!(batch.iter().all(|v| v.len() == MOCK_DIMENSIONS));
    let single = vectors(&embed_ok(json!({"model": "向量-openai", "input": "上海"})).await);
    assert_eq!(single[0], batch[1], "批量里的第二条就是“上海”的向量");
    assert_ne!(batch[0], batch[1]);
}

#[tokio::test]
async fn azure_部署路径与_api_key_base64_与浮点是同一向量() {
    let floats = embed_ok(json!({"model": "向量-azure", "input": ["你好"], "dimensions": 4})).await;
    let recorded = ENV.mock("emb-az").recent().pop().expect("上游必须收到请求");
    assert_eq!(
        recorded.path,
        format!("/openai/deployments/{EMBEDDING_DEPLOYMENT}/embeddings?api-version=2024-10-21")
    );
    assert_eq!(recorded.header("api-key"), Some(UPSTREAM_KEY));
    let b64 = embed_ok(json!({"model": "向量-azure", "input": ["你好"], "dimensions": 4, "encoding_format": "base64"})).await;
    assert!(b64["data"][0]["embedding"].is_string(), "base64 是字符串");
    assert_eq!(vectors(&floats), vectors(&b64));
    assert_eq!(vectors(&floats)[0].len(), 4, "dimensions 到达上游");
}

#[tokio::test]
async fn gemini_翻译成批量请求_顺序不变_用量标明是估算() {
    let body = json!({"model": "向量-gemini", "input": ["甲", "乙"], "dimensions": 5, "encoding_format": "base64"});
    let resp = embed(body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-chatnexus-usage"), "estimated");
    let reply: Value = resp.json().await.expect("JSON");
    assert_eq!(reply["model"], "向量-gemini");
    assert_eq!(reply["object"], "list");
    assert!(reply["usage"]["prompt_tokens"]
        .as_u64()
        .is_some_and(|n| n > 0));
    let recorded = ENV
        .mock("emb-gem")
        .recent()
        .pop()
        .expect("上游必须收到请求");
    assert_eq!(
        recorded.path,
        format!("/v1beta/models/{GEMINI_EMBEDDING_MODEL}:batchEmbedContents")
    );
    let sent: Value = serde_json::from_slice(&recorded.body).expect("JSON");
    assert_eq!(sent["requests"][1]["content"]["parts"][0]["text"], "乙");
    assert_eq!(sent["requests"][0]["outputDimensionality"], 5);
    let gemini = vectors(&reply);
    let openai = vectors(
        &embed_ok(json!({"model": "向量-兼容", "input": ["甲", "乙"], "dimensions": 5})).await,
    );
    assert_eq!(
        gemini, openai,
        "模拟器对同一文本给同一向量：翻译没有打乱顺序、没有损失精度"
    );
}

#[tokio::test]
async fn 输入与模型种类不对_清楚的_400() {
    let tokens = expect_error(
        embed(json!({"model": "向量-gemini", "input": [1, 2, 3]})).await,
        400,
    )
    .await;
    assert!(
        tokens["message"]
            .as_str()
            .is_some_and(|m| m.contains("token id")),
        "{tokens}"
    );
    let chat_model =
        expect_error(embed(json!({"model": "fast", "input": "你好"})).await, 400).await;
    assert_eq!(chat_model["code"], "wrong_model_kind");
    let client = reqwest::Client::new();
    let chat_body =
        json!({"model": "向量-openai", "messages": [{"role": "user", "content": "你好"}]});
    let reverse = authed(&client, ENV.url("/v1/chat/completions")).json(&chat_body);
    let reverse = expect_error(reverse.send().await.expect("请求失败"), 400).await;
    assert_eq!(reverse["code"], "wrong_model_kind");
    let many: Vec<String> = (0..2049).map(|i| format!("第{i}条")).collect();
    let too_many = expect_error(
        embed(json!({"model": "向量-兼容", "input": many})).await,
        400,
    )
    .await;
    assert_eq!(too_many["code"], "too_many_inputs");
    let long = "字".repeat(INPUT_TOO_LARGE_CHARS);
    let too_large = expect_error(
        embed(json!({"model": "向量-兼容", "input": [long]})).await,
        400,
    )
    .await;
    assert_eq!(too_large["code"], "input_too_large");
    let format = expect_error(
        embed(json!({"model": "向量-兼容", "input": "x", "encoding_format": "int8"})).await,
        400,
    )
    .await;
    assert_eq!(format["param"], "encoding_format");
    let client = reqwest::Client::new();
    let broken = send_raw(
        authed(&client, ENV.url("/v1/embeddings")),
        "{不是 JSON".into(),
    )
    .await;
    expect_error(broken, 400).await;
}

#[tokio::test]
async fn 上游限流_429带重试时间_故障目标换到下一个() {
    let resp = embed(json!({"model": "向量-429", "input": "你好"})).await;
    assert_eq!(header(&resp, "retry-after"), "7");
    expect_error(resp, 429).await;
    let reply = embed_ok(json!({"model": "向量-转移", "input": ["故障转移"]})).await;
    assert_eq!(vectors(&reply).len(), 1);
    assert!(
        ENV.mock("emb-500")
            .recent()
            .iter()
            .any(|r| String::from_utf8_lossy(&r.body).contains("故障转移")),
        "首选目标先被尝试"
    );
}

#[tokio::test]
async fn 指标_用量与费用精确_接口标签为_embeddings() {
    let before = scrape().await;
    embed_ok(json!({"model": "向量-openai", "input": "计费"})).await;
    let requests = |t: &str| {
        sample(
            t,
            "llm_requests_total",
            &[
                ("model", "向量-openai"),
                ("endpoint", "embeddings"),
                ("status", "200"),
            ],
        )
    };
    let cost = |t: &str| sample(t, "llm_cost_usd_total", &[("model", "向量-openai")]);
    let after = wait_for(|t| requests(t) > requests(&before) && cost(t) > cost(&before)).await;
    assert_eq!(requests(&after) - requests(&before), 1.0);
    let input = tokens(&after, "向量-openai", "input") - tokens(&before, "向量-openai", "input");
    assert_eq!(
        input, EMBEDDING_PROMPT_TOKENS as f64,
        "用上游报告的输入 token"
    );
    let expected = EMBEDDING_PROMPT_TOKENS as f64 * EMBEDDING_PRICE_INPUT / PER_MILLION;
    assert!(
        (cost(&after) - cost(&before) - expected).abs() < 1e-12,
        "费用按输入单价：{} ≠ {expected}",
        cost(&after) - cost(&before)
    );
}

#[tokio::test]
async fn 缓存_相同请求第二次命中_编码不同不共用() {
    let body = json!({"model": "向量-缓存", "input": ["缓存的向量"], "encoding_format": "base64"});
    let seen = || {
        ENV.mock("emb-cache")
            .recent()
            .iter()
            .filter(|r| String::from_utf8_lossy(&r.body).contains("缓存的向量"))
            .count()
    };
    let first = embed(body.clone()).await;
    assert_eq!(header(&first, "x-chatnexus-cache"), "miss");
    let first: Value = first.json().await.expect("JSON");
    let second = embed(body.clone()).await;
    assert_eq!(header(&second, "x-chatnexus-cache"), "hit");
    let second: Value = second.json().await.expect("JSON");
    assert_eq!(first, second, "命中回放同样的回复");
    assert_eq!(seen(), 1, "只有第一次到达上游");
    let mut floats = body;
    floats["encoding_format"] = json!("float");
    let third = embed(floats).await;
    assert_eq!(header(&third, "x-chatnexus-cache"), "miss");
    assert_eq!(seen(), 2);
}
