//! OpenAI 向量请求 → Gemini 的 `batchEmbedContents`（一次调用一个上游请求，顺序不变），
//! 回复 → OpenAI 的向量列表。Gemini 不报告用量：输入 token 按字节估算，并标明是估算。

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::error::parse_gemini_error;
use super::request::embed_path;
use super::request_headers;
use crate::config::Target;
use crate::dialects::embeddings::{write_list, EmbeddingList};
use crate::dialects::EmbeddingsRequest;
use crate::error::{ApiError, ErrorCode};
use crate::providers::{EmbeddingsFilter, EmbeddingsReply, UpstreamErrorInfo, UpstreamRequest};
use crate::streaming::{estimate_tokens, Usage};

/// Gemini 请求里模型名的前缀。
const MODEL_PREFIX: &str = "models/";

/// Gemini 向量规则。
pub(in crate::providers) struct GeminiEmbeddings;

/// `batchEmbedContents` 的请求体。
#[derive(Serialize)]
struct BatchRequest<'a> {
    requests: Vec<EmbedRequest<'a>>,
}

/// 一条输入的请求。
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EmbedRequest<'a> {
    model: &'a str,
    content: Content<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_dimensionality: Option<u64>,
}

/// 一条输入的内容（一个文本部分）。
#[derive(Serialize)]
struct Content<'a> {
    parts: [Part<'a>; 1],
}

/// 文本部分。
#[derive(Serialize)]
struct Part<'a> {
    text: &'a str,
}

/// `batchEmbedContents` 的回复。
#[derive(Deserialize)]
struct BatchReply {
    #[serde(default)]
    embeddings: Vec<Embedding>,
}

/// 一条输入的向量。
#[derive(Deserialize)]
struct Embedding {
    #[serde(default)]
    values: Vec<f32>,
}

impl EmbeddingsFilter for GeminiEmbeddings {
    fn build_request(
        &self,
        req: &EmbeddingsRequest,
        target: &Target,
    ) -> Result<UpstreamRequest, ApiError> {
        let texts = req.texts().ok_or_else(|| {
            ApiError::bad_request(
                ErrorCode::UnsupportedContent,
                "gemini 类型的上游不接受 token id 形式的向量输入，请改传文本",
            )
            .with_param("input")
        })?;
        let model = format!("{MODEL_PREFIX}{}", target.model);
        let requests = texts
            .into_iter()
            .map(|text| EmbedRequest {
                model: &model,
                content: Content {
                    parts: [Part { text }],
                },
                output_dimensionality: req.dimensions,
            })
            .collect();
        let body = serde_json::to_vec(&BatchRequest { requests })
            .map_err(|e| ApiError::internal(format!("序列化 Gemini 向量请求失败：{e}")))?;
        let provider = &target.provider;
        Ok(UpstreamRequest {
            path: embed_path(&provider.base_url.path, &target.model),
            headers: request_headers(provider)?,
            body: Bytes::from(body),
        })
    }

    fn parse_error(&self, status: u16, body: &[u8]) -> UpstreamErrorInfo {
        parse_gemini_error(status, body)
    }

    fn render(&self, req: &EmbeddingsRequest, body: Bytes) -> Result<EmbeddingsReply, ApiError> {
        let invalid = |why: String| {
            ApiError::bad_gateway(
                ErrorCode::InvalidUpstreamResponse,
                format!("gemini 类型的上游返回了无法使用的向量回复：{why}"),
            )
        };
        let reply: BatchReply =
            serde_json::from_slice(&body).map_err(|e| invalid(e.to_string()))?;
        if reply.embeddings.len() != req.inputs {
            return Err(invalid(format!(
                "输入 {} 条，回复 {} 条",
                req.inputs,
                reply.embeddings.len()
            )));
        }
        let prompt = estimate_tokens(req.input_bytes);
        let list = EmbeddingList {
            model: &req.model,
            vectors: reply.embeddings.into_iter().map(|e| e.values).collect(),
            prompt_tokens: prompt,
        };
        Ok(EmbeddingsReply {
            body: write_list(&list, req.encoding),
            usage: Usage {
                prompt,
                ..Usage::default()
            },
            estimated: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::dialects::embeddings::{encode_base64, EmbeddingCaps};
    use crate::providers::test_target::目标;

    /// 测试用的上限。
    const CAPS: EmbeddingCaps = EmbeddingCaps {
        max_inputs: 16,
        max_input_bytes: 1024,
    };

    fn 请求(body: Value) -> EmbeddingsRequest {
        EmbeddingsRequest::parse(Bytes::from(body.to_string()), CAPS).expect("合法请求")
    }

    #[test]
    fn 批量请求_顺序不变_维度写成_output_dimensionality() {
        let req = 请求(json!({"model":"向量","input":["甲","乙"],"dimensions":4}));
        let up = GeminiEmbeddings
            .build_request(&req, &目标("text-embedding-004", None))
            .expect("可翻译");
        assert!(
            up.path
                .ends_with("/models/text-embedding-004:batchEmbedContents"),
            "{}",
            up.path
        );
        let body: Value = serde_json::from_slice(&up.body).expect("JSON");
        assert_eq!(body["requests"][1]["content"]["parts"][0]["text"], "乙");
        assert_eq!(body["requests"][0]["model"], "models/text-embedding-004");
        assert_eq!(body["requests"][0]["outputDimensionality"], 4);
    }

    #[test]
    fn token_id_输入_清楚地拒绝() {
        let req = 请求(json!({"model":"向量","input":[1,2,3]}));
        let error = GeminiEmbeddings
            .build_request(&req, &目标("text-embedding-004", None))
            .expect_err("应当拒绝");
        assert_eq!((error.status, error.param.as_deref()), (400, Some("input")));
        assert!(error.message.contains("token id"), "{}", error.message);
    }

    #[test]
    fn 回复_写成_openai_列表_用量估算_base64_编码() {
        let req =
            请求(json!({"model":"向量","input":["甲甲甲甲","乙"],"encoding_format":"base64"}));
        let upstream = json!({"embeddings":[{"values":[1.0,2.0]},{"values":[3.0]}]});
        let reply = GeminiEmbeddings
            .render(&req, Bytes::from(upstream.to_string()))
            .expect("可翻译");
        assert!(reply.estimated, "Gemini 不报告用量");
        assert_eq!(reply.usage.prompt, estimate_tokens(15));
        let list: Value = serde_json::from_slice(&reply.body).expect("JSON");
        assert_eq!(list["model"], "向量");
        assert_eq!(list["data"][1]["embedding"], encode_base64(&[3.0]));
        assert_eq!(list["usage"]["total_tokens"], reply.usage.prompt);
    }

    #[test]
    fn 回复条数不符_是上游的错() {
        let req = 请求(json!({"model":"向量","input":["甲","乙"]}));
        let upstream = Bytes::from_static(br#"{"embeddings":[{"values":[1.0]}]}"#);
        let error = GeminiEmbeddings
            .render(&req, upstream)
            .expect_err("应当拒绝");
        assert_eq!(error.status, 502);
    }
}
