//! 路由表：方法与路径到处理器的映射；未知路径 404，方法不对 405。

use http::Method;

use crate::dialects::Dialect;
use crate::error::ApiError;

/// 网关提供的接口。
///
/// 用途：`request_filter` 先路由，再分派到对应处理器。
///
/// ```
/// use chatnexus::proxy::routes::{route, Route}; // 路由函数
/// assert_eq!(route(&http::Method::POST, "/v1/chat/completions"), Ok(Route::ChatCompletions)); // 聊天接口
/// assert_eq!(route(&http::Method::GET, "/不存在").unwrap_err().status, 404); // 未知路径
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// 聊天补全：`POST /v1/chat/completions`
    ChatCompletions,
    /// Anthropic Messages：`POST /v1/messages`（Claude Code 带 `?beta=true`，只按路径匹配）
    Messages,
    /// Anthropic 输入 token 计数：`POST /v1/messages/count_tokens`
    CountTokens,
    /// OpenAI Responses：`POST /v1/responses`（Codex CLI 与 openai SDK 的 `responses` 接口）
    Responses,
    /// OpenAI 向量：`POST /v1/embeddings`
    Embeddings,
    /// 读回保存的 Responses 回复：`GET /v1/responses/{id}`
    StoredResponse,
    /// 模型列表：`GET /v1/models`
    Models,
    /// 健康检查：`GET /health` 与 `GET /v1/health`
    Health,
}

/// 读回保存的回复的路径前缀（之后是回复 id）。
pub const STORED_RESPONSE_PREFIX: &str = "/v1/responses/";

/// 路径、允许的方法、接口。
const ROUTES: &[(&str, Method, Route)] = &[
    ("/v1/chat/completions", Method::POST, Route::ChatCompletions),
    ("/v1/messages", Method::POST, Route::Messages),
    (
        "/v1/messages/count_tokens",
        Method::POST,
        Route::CountTokens,
    ),
    ("/v1/responses", Method::POST, Route::Responses),
    ("/v1/embeddings", Method::POST, Route::Embeddings),
    ("/v1/models", Method::GET, Route::Models),
    ("/health", Method::GET, Route::Health),
    ("/v1/health", Method::GET, Route::Health),
];

impl Route {
    /// 这个接口的客户端方言（决定错误写成哪种形状）。
    pub fn dialect(self) -> Dialect {
        match self {
            Route::Messages | Route::CountTokens => Dialect::Messages,
            Route::Responses | Route::StoredResponse => Dialect::Responses,
            Route::ChatCompletions | Route::Embeddings | Route::Models | Route::Health => {
                Dialect::Chat
            }
        }
    }

    /// 指标 `llm_requests_total` 的 `endpoint` 标签。
    pub fn label(self) -> &'static str {
        match self {
            Route::ChatCompletions => "chat_completions",
            Route::Messages => "messages",
            Route::CountTokens => "count_tokens",
            Route::Responses => "responses",
            Route::Embeddings => "embeddings",
            Route::StoredResponse => "stored_response",
            Route::Models => "models",
            Route::Health => "health",
        }
    }
}

/// 按方法与路径（不含查询串，容忍结尾的 `/`）找到接口。
///
/// 错误：路径未知返回 404，路径存在但方法不对返回 405，均为 OpenAI 错误信封。
pub fn route(method: &Method, path: &str) -> Result<Route, ApiError> {
    let normalized = match path.trim_end_matches('/') {
        "" => "/",
        trimmed => trimmed,
    };
    if let Some(id) = normalized.strip_prefix(STORED_RESPONSE_PREFIX) {
        if !id.is_empty() && !id.contains('/') {
            return match *method {
                Method::GET => Ok(Route::StoredResponse),
                _ => Err(ApiError::method_not_allowed(
                    method.as_str(),
                    normalized,
                    "GET",
                )),
            };
        }
    }
    let mut allowed: Option<&Method> = None;
    for (route_path, route_method, route) in ROUTES {
        if *route_path != normalized {
            continue;
        }
        if route_method == method {
            return Ok(*route);
        }
        allowed = Some(route_method);
    }
    match allowed {
        Some(allowed) => Err(ApiError::method_not_allowed(
            method.as_str(),
            normalized,
            allowed.as_str(),
        )),
        None => Err(ApiError::unknown_route(method.as_str(), path)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn 路由_已知接口() {
        assert_eq!(route(&Method::GET, "/v1/models/"), Ok(Route::Models));
        assert_eq!(route(&Method::GET, "/health"), Ok(Route::Health));
        assert_eq!(route(&Method::GET, "/v1/health"), Ok(Route::Health));
        assert_eq!(route(&Method::POST, "/v1/messages"), Ok(Route::Messages));
        assert_eq!(
            route(&Method::POST, "/v1/messages/count_tokens"),
            Ok(Route::CountTokens)
        );
        assert_eq!(Route::CountTokens.dialect(), Dialect::Messages);
        assert_eq!(route(&Method::POST, "/v1/responses"), Ok(Route::Responses));
        assert_eq!(
            route(&Method::POST, "/v1/embeddings"),
            Ok(Route::Embeddings)
        );
        assert_eq!(Route::Embeddings.dialect(), Dialect::Chat);
        assert_eq!(Route::Embeddings.label(), "embeddings");
        assert_eq!(
            route(&Method::GET, "/v1/responses/resp_1"),
            Ok(Route::StoredResponse)
        );
        assert_eq!(
            route(&Method::DELETE, "/v1/responses/resp_1").map_err(|e| e.status),
            Err(405)
        );
        assert_eq!(
            route(&Method::GET, "/v1/responses/a/b").map_err(|e| e.status),
            Err(404)
        );
    }

    #[test]
    fn 路由_方法不对返回_405_未知返回_404() {
        assert_eq!(
            route(&Method::GET, "/v1/chat/completions").map_err(|e| e.status),
            Err(405)
        );
        assert_eq!(
            route(&Method::POST, "/v1/models").map_err(|e| e.status),
            Err(405)
        );
        assert_eq!(
            route(&Method::POST, "/v1/audio/speech").map_err(|e| e.status),
            Err(404)
        );
        assert_eq!(route(&Method::GET, "/").map_err(|e| e.status), Err(404));
    }
}
