//! Pingora `ProxyHttp` 实现：`request_filter` 路由、鉴权、读体、选目标并驱动与上游的交换，
//! `logging` 记录访问日志。

mod access_log;
/// 指标端口上的健康详情与 Prometheus 指标。
pub mod admin;
mod admission;
mod auth;
mod body;
mod cached;
mod context;
mod conversation;
mod cors;
mod local;
/// 路由表。
pub mod routes;
/// 请求签名与防重放。
pub mod signature;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::BytesMut;
use log::{debug, info, warn};
use pingora::modules::http::HttpModules;
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType};
use pingora_proxy::{ProxyHttp, Session};

use crate::budgets::{self, BudgetStore, BudgetTicket};
use crate::cache::ResponseCache;
use crate::config::{Config, Model, ModelKind, ProviderKind, SharedConfig};
use crate::dialects::embeddings::EmbeddingCaps;
use crate::dialects::{
    messages, responses, ChatRequest, Dialect, EmbeddingsRequest, Inbound, MessagesRequest,
    ResponsesRequest,
};
use crate::downstream::{self, GatewayHeaders, GatewayHeadersBuilder};
use crate::error::{self, ApiError, ErrorCode};
use crate::exchange::{self, Failure, UpstreamClient, Wants};
use crate::limits::{self, Limiter, Ticket};
use crate::metrics::{UsageStore, METRICS};
use crate::response_store::ResponseStore;
use crate::security::nonce::{NonceStore, RedisNonces};
use crate::security::Client;
use crate::streaming::{estimate_tokens, Usage};
use crate::virtual_keys::VirtualKeys;
use routes::Route;

use admission::Admitted;
pub use context::RequestCtx;

/// 成功应答的状态码。
const STATUS_OK: u16 = 200;
/// 客户端在响应完成前断开时记录的状态码（沿用 nginx 的约定）。
const STATUS_CLIENT_CLOSED: u16 = 499;
/// 客户端错误的起始状态码（之后的都算失败）。
const STATUS_CLIENT_ERROR: u16 = 400;

/// 网关本体：持有当前配置、共享的上游客户端、防重放存储与限流器。
///
/// 用途：交给 `pingora_proxy::http_proxy_service` 成为代理服务的逻辑。
/// 防重放存储与限流器在创建时按配置的 `redis` 段建立（两者共用一条 Redis 连接），之后跨配置热替换保留
/// （已见过的 nonce、本地限流计数都不会丢）。
///
/// ```
/// let cfg = chatnexus::config::build(chatnexus::config::parse("auth: { disabled: true }").unwrap(), |_| None).unwrap(); // 空配置
/// let upstream = chatnexus::exchange::UpstreamClient::new(&Default::default(), Default::default()); // 共享连接池
/// let _gateway = chatnexus::proxy::Gateway::new(std::sync::Arc::new(arc_swap::ArcSwap::from_pointee(cfg)), upstream); // 可热替换的配置
/// ```
pub struct Gateway {
    config: SharedConfig,
    upstream: UpstreamClient,
    nonces: NonceStore,
    limiter: Limiter,
    usage: UsageStore,
    conversations: ResponseStore,
    cache: ResponseCache,
    keys: Arc<VirtualKeys>,
    budgets: BudgetStore,
}

impl Gateway {
    /// 用共享配置和上游客户端创建网关，并按配置建立防重放存储与限流器（Redis 在第一次使用时才连接）。
    pub fn new(config: SharedConfig, upstream: UpstreamClient) -> Self {
        let current = config.load_full();
        let (nonces, limiter, usage, conversations) = stores(&current);
        info!("签名请求的防重放存储：{}", nonces.describe());
        let prefix = current
            .redis
            .as_ref()
            .map_or_else(String::new, |r| r.key_prefix.clone());
        let cache = ResponseCache::new(conversations.link(), &prefix);
        let keys = Arc::new(VirtualKeys::new(conversations.link(), &prefix));
        let budgets = BudgetStore::new(conversations.link(), &prefix);
        Gateway {
            config,
            upstream,
            nonces,
            limiter,
            usage,
            conversations,
            cache,
            keys,
            budgets,
        }
    }

    /// 虚拟密钥表（管理接口与后台刷新服务共用同一个）。
    pub fn virtual_keys(&self) -> Arc<VirtualKeys> {
        Arc::clone(&self.keys)
    }
}

/// 按配置建立防重放存储、限流器、用量累计与 Responses 会话存储：配置了 Redis 时四者共用一条连接，
/// 否则用进程内存储、本地限流，不累计用量，不保存会话。
fn stores(config: &Config) -> (NonceStore, Limiter, UsageStore, ResponseStore) {
    let Some(redis) = &config.redis else {
        if config.clients.any_signing() {
            warn!("签名请求的防重放使用进程内存储：多实例部署时重放请求可能打到另一个实例，平滑升级后也会忘记已见过的 nonce；请配置 redis 段");
        }
        let nonces = NonceStore::memory(
            config.security.memory_nonce_capacity,
            config.clients.signing_count(),
        );
        let conversations = ResponseStore::new(None, "");
        return (
            nonces,
            Limiter::new(None, ""),
            UsageStore::disabled(),
            conversations,
        );
    };
    match redis.link() {
        Ok(link) => {
            let link = Arc::new(link);
            let nonces = RedisNonces::new(Arc::clone(&link), redis.key_prefix.clone());
            let usage = UsageStore::new(Arc::clone(&link), &redis.key_prefix);
            let conversations = ResponseStore::new(Some(Arc::clone(&link)), &redis.key_prefix);
            let limiter = Limiter::new(Some(link), &redis.key_prefix);
            (NonceStore::Redis(nonces), limiter, usage, conversations)
        }
        // 配置校验已检查过连接串，走到这里说明校验有缺陷：宁可让签名请求全部 503 也不退回进程内存储
        Err(e) => {
            warn!(
                "Redis 连接串无法解析（{:?}），签名请求将被拒绝，限流只用本地阶段",
                e.kind()
            );
            (
                NonceStore::unavailable(),
                Limiter::new(None, ""),
                UsageStore::disabled(),
                ResponseStore::new(None, ""),
            )
        }
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    // 上下文放在堆上：Pingora 每个请求把处理请求的 future 整个复制两次，上下文内联时随之多复制近千字节
    type CTX = Box<RequestCtx>;

    fn new_ctx(&self) -> Box<RequestCtx> {
        Box::default()
    }

    /// 只装网关头模块（请求 id、安全头、CORS、额度头）：不装 Pingora 缺省的压缩模块。
    /// 它在缺省配置下是关闭的，网关也从不在请求中打开它，却要每个请求建上下文、过三遍过滤
    /// （callgrind：每个请求约 450 条指令、3 次分配）。
    fn init_downstream_modules(&self, modules: &mut HttpModules) {
        modules.add_module(Box::new(GatewayHeadersBuilder::new(Arc::clone(
            &self.config,
        ))));
    }

    /// 不会被调用：所有请求都在 `request_filter` 中应答完毕。
    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut Box<RequestCtx>,
    ) -> pingora::Result<Box<HttpPeer>> {
        Error::e_explain(
            ErrorType::InternalError,
            "ChatNexus 在 request_filter 中完成全部请求，不应走到 upstream_peer",
        )
    }

    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut Box<RequestCtx>,
    ) -> pingora::Result<bool> {
        // 提前应答时保持连接，应答后由 body::linger 读掉剩余请求体，否则客户端还在上传就被断开，收不到错误响应
        session.set_close_on_response_before_downstream_finish(false);
        let config = self.config.load_full();
        // 客户端不读时写会一直挂着：每次写都有超时，到时放弃请求，释放上游连接、并发名额与 token 预留
        session.set_write_timeout(Some(config.server.client_write_timeout()));
        ctx.request_id = context::assign_request_id(session);
        let result = self.dispatch(session, ctx, &config).await;
        finish(session, ctx, result).await;
        body::linger(session, config.server.max_body_bytes).await;
        ctx.config = Some(config);
        Ok(true)
    }

    /// 请求结束（包括客户端中途断开的流）：先按实际用量结算 token 预留，再记指标与访问日志。
    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Box<RequestCtx>) {
        let config = ctx
            .config
            .clone()
            .unwrap_or_else(|| self.config.load_full());
        let req = session.req_header();
        let cost = access_log::finish_request(req.method.as_str(), req.uri.path(), ctx, &config);
        let limits = ctx
            .limit
            .take()
            .and_then(|ticket| self.settle_limits(ticket, ctx, &config));
        let budget = ctx
            .budget
            .take()
            .map(|ticket| self.settle_budget(ticket, ctx, cost));
        let usage = self.add_usage(ctx, &config, cost);
        // 三种结算互不依赖：同时发出，共用的多路复用 Redis 连接把它们合在一次往返里；
        // 只有本地限流的请求三者都是 `None`，什么也不用等
        tokio::join!(complete(limits), complete(budget), complete(usage));
    }
}

/// 请求结束时还要等的一步结算（Redis 上的限流、预算或用量累计）。
///
/// 装箱：`logging` 的 future 每个请求都要整个复制进堆，三种 Redis 调用直接内联会让它有 5 KB 多，
/// 而多数部署的多数请求一种也用不到。
type Pending<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// 等一步结算完成（没有时立即返回）。
async fn complete(pending: Option<Pending<'_>>) {
    if let Some(pending) = pending {
        pending.await;
    }
}

impl Gateway {
    /// 按实际用量结算 token 预留（命中缓存的请求只算请求数，不消耗 token 额度）：本地计数当场结算，
    /// 返回还要在 Redis 上结算的一步。
    fn settle_limits<'a>(
        &'a self,
        ticket: Ticket,
        ctx: &RequestCtx,
        config: &'a Config,
    ) -> Option<Pending<'a>> {
        let used = match ctx.cache {
            Some(cached::HIT) => Some(0),
            _ => limits::consumed(ctx.report.usage, ctx.status),
        };
        let remote = self.limiter.settle(&config.rate_limits, ticket, used)?;
        Some(Box::pin(remote))
    }

    /// 按实际费用结算美元预算：没有用量的失败请求全部退还，成功却不知道用量的请求保留预留。
    /// 有预留就说明配置了 Redis。
    fn settle_budget(
        &self,
        ticket: BudgetTicket,
        ctx: &RequestCtx,
        cost: Option<f64>,
    ) -> Pending<'_> {
        let refund = ctx.report.usage.is_none() && ctx.status >= STATUS_CLIENT_ERROR;
        Box::pin(self.budgets.settle(ticket, cost.or(refund.then_some(0.0))))
    }

    /// 按密钥按天累计用量与花费（同时按模型分项）；没有 Redis、没有密钥或没有用量时为 `None`。
    fn add_usage<'a>(
        &'a self,
        ctx: &'a RequestCtx,
        config: &Config,
        cost: Option<f64>,
    ) -> Option<Pending<'a>> {
        let (Some(client), Some(usage)) = (&ctx.client, &ctx.report.usage) else {
            return None;
        };
        if !self.usage.is_enabled() {
            return None;
        }
        let model = ctx.model_label.as_deref().unwrap_or_default();
        let warn_interval = config.rate_limits.warn_interval();
        Some(Box::pin(self.usage.add(
            (client, model),
            usage,
            cost,
            warn_interval,
        )))
    }
}

impl Gateway {
    /// 路由并分派到处理器；返回写给客户端的状态码。
    async fn dispatch(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        config: &Config,
    ) -> Result<u16, Failure> {
        if let Some(status) = cors::preflight(session, config).await? {
            return Ok(status);
        }
        // 客户端 IP 只算一次：鉴权失败的限流与每 IP 限流层共用
        ctx.client_ip = limits::request_ip(session, &config.rate_limits.trusted_proxies);
        let header = session.req_header();
        let route = routes::route(&header.method, header.uri.path())?;
        ctx.dialect = route.dialect();
        ctx.endpoint = route.label();
        if ctx.dialect == Dialect::Messages {
            if let Some(headers) = GatewayHeaders::of(session) {
                headers.set_anthropic_request_id();
            }
        }
        match route {
            Route::Health => {
                let body = local::health_body(config, self.upstream.balancer());
                reply(session, body).await
            }
            Route::Models => {
                let client = self.authenticate_get(session, ctx, config).await?;
                reply(session, local::models_body(config, client.as_deref())).await
            }
            Route::StoredResponse => {
                self.authenticate_get(session, ctx, config).await?;
                let path = session.req_header().uri.path().trim_end_matches('/');
                let id = path
                    .strip_prefix(routes::STORED_RESPONSE_PREFIX)
                    .unwrap_or_default()
                    .to_string();
                let owner = conversation::owner(ctx.client.as_deref());
                let body = conversation::lookup(&self.conversations, owner, &id).await?;
                reply(session, body).await
            }
            Route::ChatCompletions
            | Route::Messages
            | Route::CountTokens
            | Route::Responses
            | Route::Embeddings => self.serve(session, ctx, config, route).await,
        }
    }

    /// 没有请求体的 GET 接口的鉴权与验签（签名里的请求体摘要是空串的 SHA-256）；返回通过鉴权的密钥。
    async fn authenticate_get<'c>(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        config: &'c Config,
    ) -> Result<Option<auth::Caller<'c>>, Failure> {
        let guard = (self.limiter.auth_guard(), ctx.client_ip);
        let client = auth::authenticate(session, (config, &self.keys), guard)?;
        ctx.client = client.as_ref().map(|c| c.name.clone());
        if let Some(client) = client.as_deref() {
            signature::check(session, client, &[], config, &self.nonces).await?;
        }
        Ok(client)
    }

    /// LLM 接口（Chat Completions、Messages、count_tokens、Responses）：鉴权、读体、验签与防重放、按方言校验、
    /// 模型权限与限流准入，再交给 `exchange` 选目标、交换与故障转移。
    ///
    /// 先鉴权再读体：未通过鉴权的客户端不能让网关读入 10 MiB 的请求体。
    /// 签名覆盖请求体的摘要，所以在读完请求体之后、解析 JSON 之前校验。
    async fn serve(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        config: &Config,
        route: Route,
    ) -> Result<u16, Failure> {
        let guard = (self.limiter.auth_guard(), ctx.client_ip);
        let caller = auth::authenticate(session, (config, &self.keys), guard)?;
        let client = caller.as_deref();
        ctx.client = client.map(|c| c.name.clone());
        let raw = body::read(session, config.server.max_body_bytes).await?;
        if let Some(client) = client {
            signature::check(session, client, &raw, config, &self.nonces).await?;
        }
        let inbound = parse_inbound(session, (route, config), raw)?;
        let model = resolve_model(ctx, config, client, &inbound)?;
        let owner = conversation::owner(ctx.client.as_deref());
        let inbound = conversation::prepare(&self.conversations, owner, inbound).await?;
        if config.access_log.include_prompts {
            ctx.prompt = context::prompt_excerpt(inbound.body());
        }
        if matches!(inbound, Inbound::CountTokens(_)) {
            return self
                .count_tokens(session, ctx, config, (client, model), &inbound)
                .await;
        }
        self.answer(session, ctx, config, (client, model), &inbound)
            .await
    }

    /// 应答：先查响应缓存，命中的请求只计请求数（不预留 token，也就不必结算）并直接回放；
    /// 否则按输入估算加最大输出预留 token，与上游交换，成功后保存缓存与会话。
    async fn answer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        config: &Config,
        (client, model): (Option<&Client>, &Model),
        inbound: &Inbound,
    ) -> Result<u16, Failure> {
        let mut plan = cached::plan((session, ctx), config.cache.as_ref(), (client, inbound));
        let admitted = self
            .admit_looking(
                session,
                ctx,
                config,
                (client, model),
                (plan.as_mut(), inbound),
            )
            .await?;
        let reserve = match admitted {
            Admitted::Hit(entry) => {
                return cached::serve_hit(config, entry, (session, ctx), inbound).await
            }
            Admitted::Reserved(reserve) => reserve,
        };
        let wants = Wants {
            keep: plan.as_ref().is_some_and(cached::CachePlan::stores)
                || matches!(inbound, Inbound::Responses(req) if req.keep),
            output_cap: ctx
                .budget
                .as_ref()
                .and_then(BudgetTicket::headroom_usd)
                .and_then(|headroom| {
                    budgets::output_cap(&config.pricing, model, &reserve, headroom)
                }),
        };
        let (mut report, result) =
            exchange::run(&self.upstream, session, (inbound, wants), model, config).await;
        if result.is_ok() {
            if let (Some(plan), Some(cache)) = (&plan, config.cache.as_ref()) {
                cached::remember(&self.cache, cache, (plan, inbound), &report).await;
            }
            let owner = conversation::owner(ctx.client.as_deref());
            conversation::remember(&self.conversations, owner, inbound, &mut report, config).await;
        }
        ctx.report = report;
        ctx.dropped = dropped_features(inbound);
        result
    }

    /// `POST /v1/messages/count_tokens`：模型有 Anthropic 目标时转发给它的计数接口并原样返回，有 Gemini 目标时问它的
    /// `countTokens`（对话内容精确计数，系统提示与工具本地估算）；
    /// 没有、或上游暂时不可用时在本地估算（只会偏高），并用响应头标明是估算。
    ///
    /// 计数请求只计请求数限流，不预留 token。上游对请求本身的拒绝（4xx）照常返回给客户端。
    async fn count_tokens(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        config: &Config,
        (client, model): (Option<&Client>, &Model),
        inbound: &Inbound,
    ) -> Result<u16, Failure> {
        let nothing = Usage::default();
        self.admit(session, ctx, config, (client, model), nothing)
            .await?;
        if model.targets.iter().any(|t| {
            matches!(
                t.provider.kind,
                ProviderKind::Anthropic | ProviderKind::Gemini
            )
        }) {
            let (report, result) = exchange::run(
                &self.upstream,
                session,
                (inbound, Wants::default()),
                model,
                config,
            )
            .await;
            ctx.report = report;
            match result {
                Err(Failure::Api(e))
                    if local::count_fallback(&e) && session.response_written().is_none() =>
                {
                    warn!(
                        "请求 {} 的 count_tokens 上游不可用，改为本地估算：{}",
                        ctx.request_id,
                        e.describe()
                    );
                }
                other => return other,
            }
        }
        let body = local::estimated_count_body(inbound.body());
        downstream::write_json_with(session, body, &local::estimated_count_headers())
            .await
            .map_err(Failure::gone)?;
        Ok(STATUS_OK)
    }
}

/// 按路由的方言解析请求体；Messages 请求同时取出要透传给 Anthropic 的请求头，向量请求按 `server` 段的上限校验。
///
/// 错误：请求体不合法时返回 400（写出时按路由的方言成形）。
fn parse_inbound(
    session: &Session,
    (route, config): (Route, &Config),
    raw: bytes::Bytes,
) -> Result<Inbound, ApiError> {
    match route {
        Route::Embeddings => {
            let caps = EmbeddingCaps {
                max_inputs: config.server.embeddings_max_inputs,
                max_input_bytes: config.server.embeddings_max_input_bytes,
            };
            EmbeddingsRequest::parse(raw, caps).map(Inbound::Embeddings)
        }
        Route::Messages | Route::CountTokens => {
            let headers = messages::forwarded_headers(&session.req_header().headers);
            let req = MessagesRequest::parse(raw, headers)?;
            Ok(match route {
                Route::CountTokens => Inbound::CountTokens(req),
                _ => Inbound::Messages(req),
            })
        }
        Route::Responses => ResponsesRequest::parse(raw).map(Inbound::Responses),
        _ => ChatRequest::parse(raw).map(Inbound::Chat),
    }
}

/// 查模型权限、模型配置与种类，并记入上下文。
///
/// 先查权限再查模型是否存在：受限的密钥无法借 404 与 403 的差别探测别的模型。
/// 错误：密钥不允许该模型 403，模型未配置 404，模型的种类与接口不符（向量模型用于聊天，或反过来）400。
fn resolve_model<'c>(
    ctx: &mut RequestCtx,
    config: &'c Config,
    client: Option<&Client>,
    inbound: &Inbound,
) -> Result<&'c Model, ApiError> {
    let name = inbound.model();
    ctx.model = Some(name.to_string());
    if client.is_some_and(|c| !c.allows_model(name)) {
        return Err(ApiError::model_not_allowed(name));
    }
    let model = config
        .model(name)
        .ok_or_else(|| ApiError::model_not_found(name))?;
    ctx.model_label = Some(model.name.clone());
    let wanted = match inbound {
        Inbound::Embeddings(_) => ModelKind::Embeddings,
        _ => ModelKind::Chat,
    };
    if model.kind != wanted {
        return Err(wrong_model_kind(name, model.kind, wanted));
    }
    Ok(model)
}

/// 模型的种类与接口不符的 400：说明模型是哪种、这个接口要哪种。
fn wrong_model_kind(name: &str, actual: ModelKind, wanted: ModelKind) -> ApiError {
    let message = format!(
        "模型 `{name}` 是 {} 模型，不能用于 {} 接口",
        actual.label(),
        wanted.label()
    );
    ApiError::bad_request(ErrorCode::WrongModelKind, message).with_param("model")
}

/// 准入时预留的用量：输入按请求体估算；聊天加上最大输出，向量没有输出。
fn reservation(inbound: &Inbound, config: &Config) -> Usage {
    let raw = inbound.raw().len();
    match inbound {
        Inbound::Embeddings(_) => Usage {
            prompt: estimate_tokens(raw),
            ..Usage::default()
        },
        _ => limits::reserved_usage(inbound.body(), raw, config.rate_limits.default_max_tokens),
    }
}

/// 翻译时丢弃的功能（逗号分隔）；没有丢弃时为 `None`。
fn dropped_features(inbound: &Inbound) -> Option<String> {
    inbound
        .dropped()
        .filter(|d| !d.0.is_empty())
        .map(|d| d.0.join(","))
}

/// 写出网关自己应答的 200 JSON；返回状态码。
async fn reply(session: &mut Session, body: bytes::Bytes) -> Result<u16, Failure> {
    downstream::write_json(session, STATUS_OK, body)
        .await
        .map_err(Failure::gone)?;
    Ok(STATUS_OK)
}

/// 记下写客户端失败的原因：写超时（客户端不读或读得太慢）计入指标并告警，其余（客户端断开）只进调试日志。
fn note_write_failure(request_id: &str, cause: &pingora::Error) {
    if matches!(cause.etype(), ErrorType::WriteTimedout) {
        METRICS.client_write_timeouts.inc();
        warn!("请求 {request_id} 写客户端超时，已放弃并释放上游连接：{cause}");
    } else {
        debug!("请求 {request_id} 写客户端失败：{}", error::chain(cause));
    }
}

/// 按客户端的方言写出错误（响应头已发出时写成流中错误事件），并记下写给客户端的状态码。
///
/// 错误：写客户端失败。
async fn write_failure(
    session: &mut Session,
    ctx: &mut RequestCtx,
    error: &ApiError,
) -> pingora::Result<()> {
    if let Some(header) = session.response_written() {
        ctx.status = header.status.as_u16();
        return match ctx.dialect {
            Dialect::Chat => downstream::write_stream_error(session, error).await,
            Dialect::Messages => {
                let mut out = BytesMut::new();
                messages::stream_error_event(error, &ctx.request_id, &mut out);
                downstream::write_last_chunk(session, out.freeze()).await
            }
            Dialect::Responses => {
                let mut out = BytesMut::new();
                responses::stream_error_event(error, 0, &mut out);
                downstream::write_last_chunk(session, out.freeze()).await
            }
        };
    }
    match ctx.dialect {
        Dialect::Chat => {
            ctx.status = error.status;
            downstream::write_error(session, error).await
        }
        Dialect::Messages => {
            let reply = messages::error_body(error, &ctx.request_id);
            ctx.status = reply.status;
            downstream::write_error_body(session, reply.status, reply.body, error.retry_after).await
        }
        Dialect::Responses => {
            let (status, body) = responses::error_reply(error);
            ctx.status = status;
            downstream::write_error_body(session, status, body, error.retry_after).await
        }
    }
}

/// 收尾：把失败写给客户端（响应头已发出时写成流中错误事件），并填写上下文供访问日志使用。
async fn finish(session: &mut Session, ctx: &mut RequestCtx, result: Result<u16, Failure>) {
    let error = match result {
        Ok(status) => {
            ctx.status = status;
            return;
        }
        Err(Failure::ClientGone(cause)) => {
            if let Some(cause) = cause {
                note_write_failure(&ctx.request_id, &cause);
            }
            ctx.status = STATUS_CLIENT_CLOSED;
            ctx.error = Some("客户端在响应完成前断开".to_string());
            ctx.error_code = Some(ErrorCode::ClientClosed);
            return;
        }
        Err(Failure::Api(error)) => error,
    };
    if error.status >= 500 || error.cause.is_some() {
        warn!(
            "请求失败：请求ID={} {} 模型={:?} 上游={:?} 错误码={} 错误={}",
            ctx.request_id,
            session.request_summary(),
            ctx.model,
            ctx.report.provider,
            error.code.as_str(),
            error.describe()
        );
    }
    let written = write_failure(session, ctx, &error).await;
    if written.is_err() {
        ctx.status = STATUS_CLIENT_CLOSED;
    }
    ctx.error_code = Some(error.code);
    ctx.error = Some(error.message);
}
