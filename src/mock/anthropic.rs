//! 模拟器的 Anthropic Messages 线上格式。

use bytes::Bytes;
use pingora::protocols::http::ServerSession;

use super::MockApp;

/// Messages 接口路径的结尾。
pub(super) const MESSAGES_PATH: &str = "/v1/messages";

/// 处理 `POST /v1/messages`；返回连接是否仍可复用。
pub(super) async fn messages(_app: &MockApp, session: &mut ServerSession, _body: Bytes) -> bool {
    // TODO: 实现 Anthropic 格式（多平台适配）
    super::openai::error(session, 501, "模拟器尚未实现 Anthropic 格式").await
}
