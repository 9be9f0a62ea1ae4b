//! 虚拟密钥与团队在 Redis 里的读写：各一个哈希存全部记录，共用一个计数器作版本号；每个修改是一个脚本，
//! 改记录与加版本号原子地一起完成（不会有实例读到新版本号却读到旧记录）。

use std::collections::HashMap;
use std::sync::Arc;

use log::warn;
use redis::{Cmd, Script};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{KeyRecord, TeamRecord};
use crate::redis_link::{RedisFailure, RedisLink};

/// 键名里在前缀之后的部分；`{vkeys}` 是 Redis Cluster 的哈希标签，让三个键落在同一槽位。
const RECORDS_SEGMENT: &str = "{vkeys}:records";
/// 团队哈希在前缀之后的部分。
const TEAMS_SEGMENT: &str = "{vkeys}:teams";
/// 版本号键在前缀之后的部分。
const VERSION_SEGMENT: &str = "{vkeys}:version";
/// 新建：同名的不存在时写入并加版本号，返回 1；已存在返回 0。
const CREATE_LUA: &str = r"
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('INCR', KEYS[2])
  return 1
end
return 0";
/// 覆盖：同名的存在时写入并加版本号，返回 1；不存在返回 0。
const SAVE_LUA: &str = r"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  redis.call('INCR', KEYS[2])
  return 1
end
return 0";
/// 删除：删掉了就加版本号，返回 1；不存在返回 0。
const DELETE_LUA: &str = r"
if redis.call('HDEL', KEYS[1], ARGV[1]) == 1 then
  redis.call('INCR', KEYS[2])
  return 1
end
return 0";

/// 虚拟密钥的 Redis 存储。
///
/// 用途：管理接口经它增删改查；后台刷新经它读版本号与全部记录。
///
/// ```
/// let timeout = std::time::Duration::from_secs(1); // 连接与命令超时
/// let link = chatnexus::redis_link::RedisLink::open("redis://127.0.0.1:6379", false, timeout).unwrap(); // 还不连接
/// let _store = chatnexus::virtual_keys::KeyStore::new(std::sync::Arc::new(link), "chatnexus:"); // 与网关同一个前缀
/// ```
pub struct KeyStore {
    link: Arc<RedisLink>,
    prefix: String,
    records: String,
    teams: String,
    version: String,
    create: Script,
    save: Script,
    delete: Script,
}

impl KeyStore {
    /// 用共享的 Redis 连接与键前缀创建。
    pub fn new(link: Arc<RedisLink>, prefix: &str) -> Self {
        KeyStore {
            prefix: prefix.to_string(),
            link,
            records: format!("{prefix}{RECORDS_SEGMENT}"),
            teams: format!("{prefix}{TEAMS_SEGMENT}"),
            version: format!("{prefix}{VERSION_SEGMENT}"),
            create: Script::new(CREATE_LUA),
            save: Script::new(SAVE_LUA),
            delete: Script::new(DELETE_LUA),
        }
    }

    /// 共享的 Redis 连接与键前缀（管理接口读用量时用）。
    pub fn link(&self) -> (&RedisLink, &str) {
        (&self.link, &self.prefix)
    }

    /// 当前版本号（还没有任何修改时为 0）。
    ///
    /// 错误：Redis 不可用或超时。
    pub async fn version(&self) -> Result<i64, RedisFailure> {
        let mut cmd = Cmd::new();
        cmd.arg("GET").arg(&self.version);
        let value: Option<i64> = self.link.query(&cmd).await?;
        Ok(value.unwrap_or(0))
    }

    /// 全部密钥记录（按名字排序；损坏的记录跳过并告警）。
    ///
    /// 错误：Redis 不可用或超时。
    pub async fn list(&self) -> Result<Vec<KeyRecord>, RedisFailure> {
        self.list_in(&self.records).await
    }

    /// 全部团队（按名字排序）。
    ///
    /// 错误：Redis 不可用或超时。
    pub async fn teams(&self) -> Result<Vec<TeamRecord>, RedisFailure> {
        self.list_in(&self.teams).await
    }

    /// 按名字读一个密钥。
    ///
    /// 错误：Redis 不可用或超时。
    pub async fn get(&self, name: &str) -> Result<Option<KeyRecord>, RedisFailure> {
        self.get_in(&self.records, name).await
    }

    /// 按名字读一个团队。
    ///
    /// 错误：Redis 不可用或超时。
    pub async fn team(&self, name: &str) -> Result<Option<TeamRecord>, RedisFailure> {
        self.get_in(&self.teams, name).await
    }

    /// 新建密钥；同名的已存在时返回 `false`。
    ///
    /// 错误：Redis 不可用或超时。
    pub async fn create(&self, record: &KeyRecord) -> Result<bool, RedisFailure> {
        self.write(&self.create, &self.records, &record.name, Some(record))
            .await
    }

    /// 覆盖已有的密钥（修改、停用、轮换）；不存在时返回 `false`。
    ///
    /// 错误：Redis 不可用或超时。
    pub async fn save(&self, record: &KeyRecord) -> Result<bool, RedisFailure> {
        self.write(&self.save, &self.records, &record.name, Some(record))
            .await
    }

    /// 删除密钥；不存在时返回 `false`。
    ///
    /// 错误：Redis 不可用或超时。
    pub async fn delete(&self, name: &str) -> Result<bool, RedisFailure> {
        self.write(&self.delete, &self.records, name, None::<&KeyRecord>)
            .await
    }

    /// 新建（`create`）或覆盖（否则）一个团队；返回脚本是否写了。
    ///
    /// 错误：Redis 不可用或超时。
    pub async fn put_team(&self, team: &TeamRecord, create: bool) -> Result<bool, RedisFailure> {
        let script = if create { &self.create } else { &self.save };
        self.write(script, &self.teams, &team.name, Some(team))
            .await
    }

    /// 删除团队；不存在时返回 `false`。
    ///
    /// 错误：Redis 不可用或超时。
    pub async fn delete_team(&self, name: &str) -> Result<bool, RedisFailure> {
        self.write(&self.delete, &self.teams, name, None::<&TeamRecord>)
            .await
    }

    /// 一个哈希里的全部记录（按名字排序）。
    async fn list_in<T: DeserializeOwned + Named>(
        &self,
        hash: &str,
    ) -> Result<Vec<T>, RedisFailure> {
        let mut cmd = Cmd::new();
        cmd.arg("HGETALL").arg(hash);
        let raw: HashMap<String, String> = self.link.query(&cmd).await?;
        let mut records: Vec<T> = raw
            .iter()
            .filter_map(|(name, text)| parse(name, text))
            .collect();
        records.sort_by(|a, b| a.name().cmp(b.name()));
        Ok(records)
    }

    /// 一个哈希里按名字读一条记录。
    async fn get_in<T: DeserializeOwned>(
        &self,
        hash: &str,
        name: &str,
    ) -> Result<Option<T>, RedisFailure> {
        let mut cmd = Cmd::new();
        cmd.arg("HGET").arg(hash).arg(name);
        let raw: Option<String> = self.link.query(&cmd).await?;
        Ok(raw.and_then(|text| parse(name, &text)))
    }

    /// 对一个哈希执行修改脚本（参数：名字与可选的记录 JSON），返回脚本是否改了东西。
    async fn write<T: Serialize>(
        &self,
        script: &Script,
        hash: &str,
        name: &str,
        record: Option<&T>,
    ) -> Result<bool, RedisFailure> {
        let mut call = script.prepare_invoke();
        call.key(hash).key(&self.version).arg(name);
        if let Some(record) = record {
            // 记录只含字符串、数字与布尔，序列化不会失败
            call.arg(serde_json::to_string(record).unwrap_or_default());
        }
        let mut conn = self.link.connection().await?;
        let changed: i64 = self
            .link
            .within(call.invoke_async(&mut conn), "虚拟密钥脚本")
            .await?;
        Ok(changed == 1)
    }
}

/// 有名字的记录（列出时按名字排序）。
trait Named {
    /// 记录的名字。
    fn name(&self) -> &str;
}

impl Named for KeyRecord {
    fn name(&self) -> &str {
        &self.name
    }
}

impl Named for TeamRecord {
    fn name(&self) -> &str {
        &self.name
    }
}

/// 解析一条记录；损坏的（人工改坏、版本不兼容）跳过并告警。
fn parse<T: DeserializeOwned>(name: &str, text: &str) -> Option<T> {
    match serde_json::from_str(text) {
        Ok(record) => Some(record),
        Err(e) => {
            warn!("虚拟密钥或团队 `{name}` 的记录已损坏（{e}），忽略它");
            None
        }
    }
}
