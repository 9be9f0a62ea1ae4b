//! `/admin/keys`：虚拟密钥的新建（密钥只在回复里出现这一次）、列出、读取、修改、删除与轮换。
//! 密钥的 `team` 必须是已有的团队。

use bytes::Bytes;
use http::Method;
use percent_encoding::percent_decode_str;
use serde_json::{json, Value};

use super::teams;
use crate::clock::unix_now;
use crate::config::Config;
use crate::error::{ApiError, ErrorCode, TYPE_INVALID_REQUEST, TYPE_SERVER};
use crate::redis_link::RedisFailure;
use crate::security::crypto::random_token;
use crate::security::KeyHash;
use crate::virtual_keys::{check_name, KeyRecord, KeySpec, KeyStore};

/// 轮换的子路径。
const ROTATE: &str = "rotate";
/// 新密钥的前缀（与 `chatnexus keys gen-client` 生成的一样）。
const KEY_PREFIX: &str = "sk-cnx-";
/// 新建成功的状态码。
const STATUS_CREATED: u16 = 201;
/// 成功的状态码。
const STATUS_OK: u16 = 200;

/// 按方法与路径分派（`segments` 为 `/admin/keys` 之后的各段）。
///
/// 错误：路径不存在 404；其余见各操作。
pub(super) async fn dispatch(
    store: &KeyStore,
    config: &Config,
    (method, segments): (&Method, &[&str]),
    body: &Bytes,
) -> Result<(u16, Value), ApiError> {
    match (method.clone(), segments) {
        (Method::POST, []) => create(store, config, parse_spec(body)?).await,
        (Method::GET, []) => list(store).await,
        (Method::GET, [name]) => Ok((STATUS_OK, view(&load(store, &decode(name)?).await?))),
        (Method::PATCH, [name]) => update(store, &decode(name)?, parse_spec(body)?).await,
        (Method::DELETE, [name]) => delete(store, &decode(name)?).await,
        (Method::POST, [name, action]) if *action == ROTATE => rotate(store, &decode(name)?).await,
        _ => Err(unknown()),
    }
}

/// 新建：名字合法、不与任何密钥重名；回复带上只显示这一次的密钥。
async fn create(
    store: &KeyStore,
    config: &Config,
    spec: KeySpec,
) -> Result<(u16, Value), ApiError> {
    let name = spec.name.clone().ok_or_else(|| {
        ApiError::bad_request(ErrorCode::MissingRequiredParameter, "缺少必填字段 `name`")
            .with_param("name")
    })?;
    check_name(&name)?;
    if config.clients.contains(&name) {
        return Err(exists(&name));
    }
    let secret = random_token(KEY_PREFIX);
    let mut record = KeyRecord::new(name.clone(), KeyHash::of(&secret), unix_now());
    record.apply(spec)?;
    teams::check_exists(store, record.team.as_deref()).await?;
    if !store
        .create(&record)
        .await
        .map_err(|e| unavailable(Some(e)))?
    {
        return Err(exists(&name));
    }
    Ok((STATUS_CREATED, with_secret(&record, &secret)))
}

/// 列出全部虚拟密钥（不含摘要）。
async fn list(store: &KeyStore) -> Result<(u16, Value), ApiError> {
    let records = store.list().await.map_err(|e| unavailable(Some(e)))?;
    let data: Vec<Value> = records.iter().map(view).collect();
    Ok((STATUS_OK, json!({ "object": "list", "data": data })))
}

/// 修改给出的字段。
async fn update(store: &KeyStore, name: &str, spec: KeySpec) -> Result<(u16, Value), ApiError> {
    let mut record = load(store, name).await?;
    record.apply(spec)?;
    teams::check_exists(store, record.team.as_deref()).await?;
    save(store, &record).await?;
    Ok((STATUS_OK, view(&record)))
}

/// 删除。
async fn delete(store: &KeyStore, name: &str) -> Result<(u16, Value), ApiError> {
    if !store.delete(name).await.map_err(|e| unavailable(Some(e)))? {
        return Err(not_found(name));
    }
    Ok((STATUS_OK, json!({ "name": name, "deleted": true })))
}

/// 轮换：换一个新密钥（旧密钥立即作废），回复带上只显示这一次的新密钥。
async fn rotate(store: &KeyStore, name: &str) -> Result<(u16, Value), ApiError> {
    let mut record = load(store, name).await?;
    let secret = random_token(KEY_PREFIX);
    record.sha256 = KeyHash::of(&secret).to_hex();
    save(store, &record).await?;
    Ok((STATUS_OK, with_secret(&record, &secret)))
}

/// 读一条记录。
///
/// 错误：不存在 404，Redis 不可用 503。
async fn load(store: &KeyStore, name: &str) -> Result<KeyRecord, ApiError> {
    store
        .get(name)
        .await
        .map_err(|e| unavailable(Some(e)))?
        .ok_or_else(|| not_found(name))
}

/// 覆盖一条记录（读与写之间被删掉了就是 404）。
async fn save(store: &KeyStore, record: &KeyRecord) -> Result<(), ApiError> {
    if store.save(record).await.map_err(|e| unavailable(Some(e)))? {
        Ok(())
    } else {
        Err(not_found(&record.name))
    }
}

/// 解析创建或修改的请求体（空体当作 `{}`）。
///
/// 错误：不是合法 JSON 或有未知字段时 400。
pub(super) fn parse_spec(body: &Bytes) -> Result<KeySpec, ApiError> {
    if body.is_empty() {
        return Ok(KeySpec::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(
            ErrorCode::InvalidJson,
            format!("请求体不是合法的密钥描述：{e}"),
        )
    })
}

/// 路径里的密钥名（百分号解码）。
///
/// 错误：解码后不是 UTF-8 时 400。
pub(super) fn decode(segment: &str) -> Result<String, ApiError> {
    percent_decode_str(segment)
        .decode_utf8()
        .map(|name| name.into_owned())
        .map_err(|_| {
            ApiError::bad_request(ErrorCode::InvalidValue, "路径里的密钥名不是合法的 UTF-8")
        })
}

/// 回复里的一个密钥：记录去掉摘要。
pub(super) fn view(record: &KeyRecord) -> Value {
    let mut value = serde_json::to_value(record).unwrap_or_default();
    if let Some(object) = value.as_object_mut() {
        object.remove("sha256");
    }
    value
}

/// 带上密钥明文的回复（只在新建与轮换时）。
fn with_secret(record: &KeyRecord, secret: &str) -> Value {
    let mut value = view(record);
    value["key"] = json!(secret);
    value
}

/// 404：没有这个密钥。
fn not_found(name: &str) -> ApiError {
    ApiError::new(
        404,
        TYPE_INVALID_REQUEST,
        ErrorCode::KeyNotFound,
        format!("虚拟密钥 `{name}` 不存在"),
    )
}

/// 409：同名的密钥已存在。
fn exists(name: &str) -> ApiError {
    ApiError::new(
        409,
        TYPE_INVALID_REQUEST,
        ErrorCode::KeyExists,
        format!("名为 `{name}` 的密钥已存在（虚拟密钥或配置文件里的密钥）"),
    )
}

/// 404：管理接口没有这个路径或方法。
pub(super) fn unknown() -> ApiError {
    ApiError::new(
        404,
        TYPE_INVALID_REQUEST,
        ErrorCode::UnknownUrl,
        "管理接口没有这个路径或方法（见 docs/admin.md）",
    )
}

/// 503：保存虚拟密钥的 Redis 不可用（原因只进日志）。
pub(super) fn unavailable(failure: Option<RedisFailure>) -> ApiError {
    let error = ApiError::new(
        503,
        TYPE_SERVER,
        ErrorCode::KeyStoreUnavailable,
        "保存虚拟密钥的 Redis 不可用，请稍后重试",
    );
    match failure {
        Some(failure) => error.with_detail(failure.to_string()),
        None => error.with_detail("没有配置 redis 段"),
    }
}
