//! `/admin/teams`：团队的新建、列出、读取、修改与删除。团队只有模型列表与美元预算两个可改的字段；
//! 还有密钥属于它时不能删除。

use bytes::Bytes;
use http::Method;
use serde_json::{json, Value};

use super::keys::{decode, parse_spec, unavailable, unknown};
use crate::clock::unix_now;
use crate::error::{ApiError, ErrorCode, TYPE_INVALID_REQUEST};
use crate::virtual_keys::{check_name, KeySpec, KeyStore, TeamRecord};

/// 新建成功的状态码。
const STATUS_CREATED: u16 = 201;
/// 成功的状态码。
const STATUS_OK: u16 = 200;

/// 按方法与路径分派（`segments` 为 `/admin/teams` 之后的各段）。
///
/// 错误：路径不存在 404；其余见各操作。
pub(super) async fn dispatch(
    store: &KeyStore,
    (method, segments): (&Method, &[&str]),
    body: &Bytes,
) -> Result<(u16, Value), ApiError> {
    match (method.clone(), segments) {
        (Method::POST, []) => create(store, parse_spec(body)?).await,
        (Method::GET, []) => list(store).await,
        (Method::GET, [name]) => Ok((STATUS_OK, view(&load(store, &decode(name)?).await?))),
        (Method::PATCH, [name]) => update(store, &decode(name)?, parse_spec(body)?).await,
        (Method::DELETE, [name]) => delete(store, &decode(name)?).await,
        _ => Err(unknown()),
    }
}

/// 密钥引用的团队必须存在（没有引用时通过）。
///
/// 错误：不存在 404 `team_not_found`，Redis 不可用 503。
pub(super) async fn check_exists(store: &KeyStore, team: Option<&str>) -> Result<(), ApiError> {
    match team {
        Some(name) => load(store, name).await.map(|_| ()),
        None => Ok(()),
    }
}

/// 新建团队。
async fn create(store: &KeyStore, spec: KeySpec) -> Result<(u16, Value), ApiError> {
    let name = spec.name.clone().ok_or_else(|| {
        ApiError::bad_request(ErrorCode::MissingRequiredParameter, "缺少必填字段 `name`")
            .with_param("name")
    })?;
    check_name(&name)?;
    let mut team = TeamRecord::new(name.clone(), unix_now());
    team.apply(spec)?;
    if !store
        .put_team(&team, true)
        .await
        .map_err(|e| unavailable(Some(e)))?
    {
        return Err(ApiError::new(
            409,
            TYPE_INVALID_REQUEST,
            ErrorCode::TeamExists,
            format!("名为 `{name}` 的团队已存在"),
        ));
    }
    Ok((STATUS_CREATED, view(&team)))
}

/// 列出全部团队。
async fn list(store: &KeyStore) -> Result<(u16, Value), ApiError> {
    let teams = store.teams().await.map_err(|e| unavailable(Some(e)))?;
    let data: Vec<Value> = teams.iter().map(view).collect();
    Ok((STATUS_OK, json!({ "object": "list", "data": data })))
}

/// 修改给出的字段（模型列表与预算）。
async fn update(store: &KeyStore, name: &str, spec: KeySpec) -> Result<(u16, Value), ApiError> {
    let mut team = load(store, name).await?;
    team.apply(spec)?;
    if !store
        .put_team(&team, false)
        .await
        .map_err(|e| unavailable(Some(e)))?
    {
        return Err(not_found(name));
    }
    Ok((STATUS_OK, view(&team)))
}

/// 删除团队；还有密钥属于它时拒绝。
async fn delete(store: &KeyStore, name: &str) -> Result<(u16, Value), ApiError> {
    let keys = store.list().await.map_err(|e| unavailable(Some(e)))?;
    let members: Vec<&str> = keys
        .iter()
        .filter(|k| k.team.as_deref() == Some(name))
        .map(|k| k.name.as_str())
        .collect();
    if !members.is_empty() {
        return Err(ApiError::new(
            409,
            TYPE_INVALID_REQUEST,
            ErrorCode::TeamInUse,
            format!(
                "团队 `{name}` 还有密钥：{}；先把它们移出团队或删除",
                members.join("、")
            ),
        ));
    }
    if !store
        .delete_team(name)
        .await
        .map_err(|e| unavailable(Some(e)))?
    {
        return Err(not_found(name));
    }
    Ok((STATUS_OK, json!({ "name": name, "deleted": true })))
}

/// 读一个团队。
///
/// 错误：不存在 404，Redis 不可用 503。
async fn load(store: &KeyStore, name: &str) -> Result<TeamRecord, ApiError> {
    store
        .team(name)
        .await
        .map_err(|e| unavailable(Some(e)))?
        .ok_or_else(|| not_found(name))
}

/// 回复里的一个团队。
fn view(team: &TeamRecord) -> Value {
    serde_json::to_value(team).unwrap_or_default()
}

/// 404：没有这个团队。
fn not_found(name: &str) -> ApiError {
    ApiError::new(
        404,
        TYPE_INVALID_REQUEST,
        ErrorCode::TeamNotFound,
        format!("团队 `{name}` 不存在"),
    )
}
