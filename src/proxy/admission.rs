//! 请求的准入：限流（请求数与 token 预留）、美元预算预留，以及它们与响应缓存查找的先后。
//!
//! 命中缓存的请求只计请求数，不预留 token 与预算，所以缓存查找在准入之前、或与准入合成一步：
//! 响应缓存与限流都在同一个单机 Redis 里时，限流准入脚本顺带读缓存条目（一次往返，见 `Limiter::admit_probing`）；
//! 否则先查缓存（进程内，或一次 GET）再准入。

use pingora_proxy::Session;

use super::cached::{self, CachePlan};
use super::context::RequestCtx;
use super::{reservation, Gateway};
use crate::budgets;
use crate::cache::Entry;
use crate::config::{CacheSettings, Config, Model};
use crate::dialects::Inbound;
use crate::downstream::GatewayHeaders;
use crate::error::ApiError;
use crate::limits::{self, Subjects, Ticket};
use crate::redis_link::Fetched;
use crate::security::Client;
use crate::streaming::Usage;

/// 查缓存并准入的结果。
pub(super) enum Admitted {
    /// 命中：回放这个条目（只计了请求数，没有预留 token）。
    Hit(Entry),
    /// 没有命中：按这份用量预留并准入了，照常与上游交换。
    Reserved(Usage),
}

impl Gateway {
    /// 准入：先限流（放行时记下准入记录并给之后的响应加上额度头），再按最坏费用预留密钥的美元预算。
    ///
    /// 参数 `reserve`：要预留的用量（输入估算与最大输出；命中缓存与计数请求为零）。
    /// 错误：超限 429；预算不够 429 `insufficient_quota`；带预算的密钥用没有价格的模型 403；预算存储不可用 503。
    pub(super) async fn admit(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        config: &Config,
        (client, model): (Option<&Client>, &Model),
        reserve: Usage,
    ) -> Result<(), ApiError> {
        let tokens = limits::reserved_total(&reserve);
        let subjects = subjects(ctx, client, model);
        let ticket = self
            .limiter
            .admit(&config.rate_limits, &subjects, tokens)
            .await?;
        keep_ticket(session, ctx, ticket);
        self.reserve_budget(ctx, config, (client, model), reserve)
            .await
    }

    /// 查缓存并准入：命中时返回条目（只计了请求数），否则按本请求的预留（`reservation`）准入。
    /// 没有缓存计划时只准入；预留只在要用时才算（进程内或单独 GET 的命中不必算）。
    ///
    /// 错误：同 [`Gateway::admit`]。
    pub(super) async fn admit_looking(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        config: &Config,
        (client, model): (Option<&Client>, &Model),
        (plan, inbound): (Option<&mut CachePlan>, &Inbound),
    ) -> Result<Admitted, ApiError> {
        if let (Some(plan), Some(settings)) = (plan, config.cache.as_ref()) {
            if let Some(storage) = cached::probe_key(&self.cache, settings, plan, &self.limiter) {
                let probe = (plan, settings, storage.as_str());
                let reserve = reservation(inbound, config);
                return self
                    .admit_probing(session, ctx, config, (client, model), (probe, reserve))
                    .await;
            }
            let found = cached::lookup((&self.cache, settings), plan, (session, ctx)).await;
            if let Some(entry) = found {
                self.admit(session, ctx, config, (client, model), Usage::default())
                    .await?;
                return Ok(Admitted::Hit(entry));
            }
        }
        let reserve = reservation(inbound, config);
        self.admit(session, ctx, config, (client, model), reserve)
            .await?;
        Ok(Admitted::Reserved(reserve))
    }

    /// 一次往返的查找与准入：限流准入脚本顺带读缓存条目，条目存在时不预留 token。
    ///
    /// 读到的条目最后没用上（按当前的过期时间已过期，或已损坏）时补一次 token 准入；
    /// 未命中时与相同请求合并，跟随者等到领头的结果后命中的，预留在结束时按零结算。
    async fn admit_probing(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        config: &Config,
        (client, model): (Option<&Client>, &Model),
        ((plan, settings, storage), reserve): ((&mut CachePlan, &CacheSettings, &str), Usage),
    ) -> Result<Admitted, ApiError> {
        let tokens = limits::reserved_total(&reserve);
        let subjects = subjects(ctx, client, model);
        let admission = self
            .limiter
            .admit_probing(&config.rate_limits, &subjects, tokens, storage)
            .await?;
        let waived = matches!(admission.fetched, Fetched::Value(_));
        keep_ticket(session, ctx, admission.ticket);
        let first = self
            .cache
            .resolve(settings, storage, admission.fetched)
            .await;
        let hit = cached::conclude((&self.cache, settings), plan, (session, ctx), first).await;
        if let Some(entry) = hit {
            return Ok(Admitted::Hit(entry));
        }
        if let (true, Some(ticket)) = (waived, ctx.limit.as_mut()) {
            self.limiter
                .reserve(&config.rate_limits, &subjects, (ticket, tokens))
                .await?;
        }
        self.reserve_budget(ctx, config, (client, model), reserve)
            .await?;
        Ok(Admitted::Reserved(reserve))
    }

    /// 按最坏费用预留密钥的美元预算（密钥有预算且要预留 token 时）。
    ///
    /// 错误：预算不够 429 `insufficient_quota`；没有价格的模型 403；预算存储不可用 503。
    async fn reserve_budget(
        &self,
        ctx: &mut RequestCtx,
        config: &Config,
        (client, model): (Option<&Client>, &Model),
        reserve: Usage,
    ) -> Result<(), ApiError> {
        let tokens = limits::reserved_total(&reserve);
        let Some(client) = client.filter(|c| c.has_budgets() && tokens > 0) else {
            return Ok(());
        };
        let unpriced = config.budgets.allow_unpriced_models;
        let worst = budgets::worst_case(&config.pricing, model, (&reserve, unpriced))?;
        ctx.budget = self.budgets.reserve(client, worst).await?;
        Ok(())
    }
}

/// 限流的主体：客户端密钥、客户端 IP 与模型。
fn subjects<'a>(ctx: &RequestCtx, client: Option<&'a Client>, model: &'a Model) -> Subjects<'a> {
    Subjects {
        client,
        ip: ctx.client_ip,
        model,
    }
}

/// 记下准入记录，并把最紧一层的额度头交给之后的响应。
fn keep_ticket(session: &mut Session, ctx: &mut RequestCtx, ticket: Option<Ticket>) {
    let Some(mut ticket) = ticket else {
        return;
    };
    if let Some(headers) = GatewayHeaders::of(session) {
        headers.set_quota(std::mem::take(&mut ticket.headers));
    }
    ctx.limit = Some(ticket);
}
