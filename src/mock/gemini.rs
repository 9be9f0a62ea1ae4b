//! 模拟器的 Gemini generateContent 线上格式。

use bytes::Bytes;
use pingora::protocols::http::ServerSession;

use super::MockApp;

/// Gemini 模型路径中的片段（`/v1beta/models/{model}:method`）。
pub(super) const MODELS_SEGMENT: &str = "/models/";

/// 处理 `generateContent` 与 `streamGenerateContent`；返回连接是否仍可复用。
pub(super) async fn generate(_app: &MockApp, session: &mut ServerSession, _body: Bytes) -> bool {
    // TODO: 实现 Gemini 格式（多平台适配）
    super::openai::error(session, 501, "模拟器尚未实现 Gemini 格式").await
}
