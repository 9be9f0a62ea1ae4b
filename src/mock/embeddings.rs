//! 模拟器的向量接口：OpenAI 与 Azure 的 `/embeddings`，以及 Gemini 的 `batchEmbedContents`（由 gemini 模块调用）。
//!
//! 向量由输入确定地算出（同样的输入总得到同样的向量，不同的输入几乎总不同），测试据此检查顺序与对应关系；
//! 维度缺省为 8，请求给了 `dimensions`（Gemini 为 `outputDimensionality`）时按它。

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use pingora::protocols::http::ServerSession;
use serde::Serialize;
use serde_json::{Map, Value};

use super::io::write_json_bytes;
use super::openai::{error, open, status_fault, Opened};
use super::plan::{self, Turn};
use super::MockApp;

/// 向量接口路径的结尾（前缀可以是 `/v1` 或 Azure 的部署路径）。
pub(super) const EMBEDDINGS_PATH: &str = "/embeddings";
/// 缺省的向量维度。
const DEFAULT_DIMENSIONS: usize = 8;
/// 列表对象的类型。
const LIST_OBJECT: &str = "list";
/// 列表项的类型。
const EMBEDDING_OBJECT: &str = "embedding";
/// 模拟器接受的最大维度。
const MAX_DIMENSIONS: usize = 4096;
/// FNV-1a 的初始值。
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 的乘数。
const FNV_PRIME: u64 = 0x0100_0000_01b3;
/// xorshift64 的三个位移（Marsaglia 给出的一组，周期为 2^64 - 1）。
const XORSHIFT: [u32; 3] = [13, 7, 17];
/// 取随机数高位的位移（留下 24 位，恰好是 f32 的有效位数）。
const MANTISSA_SHIFT: u32 = 40;
/// 24 位整数的范围。
const MANTISSA_RANGE: f32 = (1u32 << 24) as f32;

/// 由输入文本确定地算出一个分量在 (-1, 1) 之间的向量（FNV-1a 作种子，xorshift 逐个生成）。
pub(super) fn vector(text: &str, dimensions: usize) -> Vec<f32> {
    let mut state = text.bytes().fold(FNV_OFFSET, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME)
    });
    (0..dimensions)
        .map(|_| {
            state ^= state << XORSHIFT[0];
            state ^= state >> XORSHIFT[1];
            state ^= state << XORSHIFT[2];
            let unit = (state >> MANTISSA_SHIFT) as f32 / MANTISSA_RANGE;
            unit * 2.0 - 1.0
        })
        .collect()
}

/// 请求的维度：没给时为缺省值。
///
/// 错误：不是 1 到 [`MAX_DIMENSIONS`] 之间的整数。
fn dimensions_of(value: &Value) -> Result<usize, String> {
    match value {
        Value::Null => Ok(DEFAULT_DIMENSIONS),
        other => other
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| (1..=MAX_DIMENSIONS).contains(n))
            .ok_or_else(|| format!("dimensions 必须是 1 到 {MAX_DIMENSIONS} 之间的整数")),
    }
}

/// OpenAI 请求的每条输入（按顺序）写成种子文本：字符串原样，token id 数组写成 JSON 文本。
///
/// 错误：`input` 缺少、为空或类型不对。
fn inputs_of(request: &Map<String, Value>) -> Result<Vec<String>, String> {
    let seed = |item: &Value| match item {
        Value::String(text) if !text.is_empty() => Ok(text.clone()),
        Value::Array(ids) if !ids.is_empty() => Ok(item.to_string()),
        _ => Err("input 的每一项必须是非空字符串或非空 token id 数组".to_string()),
    };
    match request.get("input") {
        Some(Value::String(text)) if !text.is_empty() => Ok(vec![text.clone()]),
        Some(Value::Array(items)) if items.first().is_some_and(Value::is_number) => {
            Ok(vec![Value::Array(items.clone()).to_string()])
        }
        Some(Value::Array(items)) if !items.is_empty() => items.iter().map(seed).collect(),
        _ => Err("input 必须是非空字符串或非空数组".to_string()),
    }
}

/// 处理 OpenAI 与 Azure 的向量请求；返回连接是否仍可复用。
pub(super) async fn openai(app: &MockApp, session: &mut ServerSession, body: Bytes) -> bool {
    let Opened { request, model, .. } = match open(session, &body).await {
        Ok(opened) => opened,
        Err(reusable) => return reusable,
    };
    let parsed = inputs_of(&request).and_then(|inputs| {
        let dims = dimensions_of(request.get("dimensions").unwrap_or(&Value::Null))?;
        Ok((inputs, dims))
    });
    let (inputs, dims) = match parsed {
        Ok(parsed) => parsed,
        Err(message) => return error(session, 400, &message).await,
    };
    if let Some(reusable) = status_fault(app, session).await {
        return reusable;
    }
    let base64 = request.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let turn = Turn {
        body_len: body.len(),
        ..Turn::default()
    };
    let prompt = plan::usage(&app.settings, &turn).prompt;
    let bytes = list_bytes(&inputs, (dims, base64), model, prompt);
    write_json_bytes(session, (200, bytes), None).await
}

/// 写出 OpenAI 的向量列表：每条输入一个向量，按请求的编码。
fn list_bytes(
    inputs: &[String],
    (dims, base64): (usize, bool),
    model: String,
    prompt: u64,
) -> Bytes {
    let vectors: Vec<Vec<f32>> = inputs.iter().map(|text| vector(text, dims)).collect();
    let data = vectors
        .iter()
        .enumerate()
        .map(|(index, values)| Item {
            object: EMBEDDING_OBJECT,
            index,
            embedding: if base64 {
                Embedding::Base64(encode(values))
            } else {
                Embedding::Floats(values)
            },
        })
        .collect();
    let list = List {
        object: LIST_OBJECT,
        data,
        model,
        usage: ListUsage {
            prompt_tokens: prompt,
            total_tokens: prompt,
        },
    };
    Bytes::from(serde_json::to_vec(&list).unwrap_or_default())
}

/// OpenAI 的向量列表（分量按 f32 的最短写法输出，与真实 API 的长度相当）。
#[derive(Serialize)]
struct List<'a> {
    object: &'static str,
    data: Vec<Item<'a>>,
    model: String,
    usage: ListUsage,
}

/// 列表里的一项。
#[derive(Serialize)]
struct Item<'a> {
    object: &'static str,
    index: usize,
    embedding: Embedding<'a>,
}

/// 向量：浮点数组或 base64。
#[derive(Serialize)]
#[serde(untagged)]
enum Embedding<'a> {
    Floats(&'a [f32]),
    Base64(String),
}

/// 列表的用量。
#[derive(Serialize)]
struct ListUsage {
    prompt_tokens: u64,
    total_tokens: u64,
}

/// 小端 f32 字节的 base64（OpenAI 的 `encoding_format: base64`）。
fn encode(values: &[f32]) -> String {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    STANDARD.encode(bytes)
}

/// Gemini `batchEmbedContents` 的回复：每条请求的 `model` 必须是路径里的模型，内容只取文本部分。
///
/// 参数：路径里的模型名与请求体。返回：回复的 JSON 字节。错误：请求不合法时的错误文本（调用方写成 Google 的 400）。
pub(super) fn gemini_batch(model: &str, request: &Value) -> Result<Bytes, String> {
    let requests = request["requests"]
        .as_array()
        .filter(|list| !list.is_empty())
        .ok_or("requests 必须是非空数组")?;
    let expected = format!("models/{model}");
    let mut embeddings = Vec::with_capacity(requests.len());
    for (i, item) in requests.iter().enumerate() {
        if item["model"].as_str() != Some(expected.as_str()) {
            return Err(format!(
                "requests[{i}].model 必须是 {expected}（与路径里的模型相同）"
            ));
        }
        let text: String = item["content"]["parts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|part| part["text"].as_str())
            .collect();
        if text.is_empty() {
            return Err(format!("requests[{i}].content 里没有文本"));
        }
        let dims = dimensions_of(&item["outputDimensionality"])?;
        embeddings.push(GeminiEmbedding {
            values: vector(&text, dims),
        });
    }
    let reply = serde_json::to_vec(&GeminiBatch { embeddings }).unwrap_or_default();
    Ok(Bytes::from(reply))
}

/// Gemini 批量向量的回复。
#[derive(Serialize)]
struct GeminiBatch {
    embeddings: Vec<GeminiEmbedding>,
}

/// Gemini 的一个向量（分量按 f32 的最短写法输出）。
#[derive(Serialize)]
struct GeminiEmbedding {
    values: Vec<f32>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn 向量_由输入确定_不同输入不同_维度可调() {
        assert_eq!(vector("你好", 8), vector("你好", 8));
        assert_ne!(vector("你好", 8), vector("世界", 8));
        assert_eq!(vector("你好", 3).len(), 3);
        assert!(vector("你好", 64).iter().all(|v| (-1.0..1.0).contains(v)));
    }

    #[test]
    fn gemini_批量_模型必须与路径一致() {
        let ok = json!({"requests":[{"model":"models/e","content":{"parts":[{"text":"甲"}]},"outputDimensionality":2}]});
        let bytes = gemini_batch("e", &ok).expect("合法");
        let reply: Value = serde_json::from_slice(&bytes).expect("JSON");
        assert_eq!(
            reply["embeddings"][0]["values"].as_array().map(Vec::len),
            Some(2)
        );
        let wrong = json!({"requests":[{"model":"models/x","content":{"parts":[{"text":"甲"}]}}]});
        assert!(gemini_batch("e", &wrong).is_err());
    }
}
