//! 配置热重载：收到 SIGHUP 时重新读取并完整校验配置，通过后原子地替换。
//!
//! 新请求用新配置（路由、密钥、上游）；进行中的请求与流持有旧配置的 `Arc`，在旧配置上做完。
//! 旧配置最后一个引用释放时，其中解密过的上游密钥随 `Secret` 一起被清零。
//! 新配置无效时记录中文错误并保留旧配置。

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use log::{error, info, warn};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::signal::unix::{signal, SignalKind};

use crate::config::{self, Config, ConfigError, SharedConfig};
use crate::metrics::METRICS;

/// 重载指标的结果标签：成功。
const RELOAD_OK: &str = "ok";
/// 重载指标的结果标签：失败。
const RELOAD_ERROR: &str = "error";

/// 从 `path` 重新加载配置并替换 `shared`。
///
/// 需要重启（或平滑升级）才能生效的字段改变时只记警告，其余改动立即生效。
/// 错误：读取、解析或校验失败时返回错误，`shared` 保持不变。
pub fn reload(path: &Path, shared: &SharedConfig) -> Result<(), ConfigError> {
    let fresh = config::load(path)?;
    warn_restart_only(&shared.load(), &fresh);
    shared.store(Arc::new(fresh));
    info!("配置已重新加载：{}", path.display());
    Ok(())
}

/// 监听地址、线程数与线程间是否偷任务、CA 文件与内置模拟器在进程启动时就已生效，热重载改不了它们。
fn warn_restart_only(old: &Config, fresh: &Config) {
    let (a, b) = (&old.server, &fresh.server);
    let changed = [
        ("server.listen", a.listen != b.listen),
        ("server.threads", a.threads != b.threads),
        ("server.work_stealing", a.work_stealing != b.work_stealing),
        ("server.ca_file", a.ca_file != b.ca_file),
        ("server.upgrade_sock", a.upgrade_sock != b.upgrade_sock),
        (
            "mock",
            old.mock.as_ref().map(|m| m.listen) != fresh.mock.as_ref().map(|m| m.listen),
        ),
        // 防重放存储属于网关本身（热替换时保留已见过的 nonce），按启动时的设置建立
        ("redis", redis_settings(old) != redis_settings(fresh)),
        (
            "security.memory_nonce_capacity",
            old.security.memory_nonce_capacity != fresh.security.memory_nonce_capacity,
        ),
    ];
    for (field, _) in changed.iter().filter(|(_, changed)| *changed) {
        warn!("配置字段 {field} 的改动需要重启或平滑升级才能生效，热重载已忽略它");
    }
}

/// 用于比较的 Redis 设置（连接串只在内存里比较，不输出）。
fn redis_settings(config: &Config) -> Option<(&str, &str, std::time::Duration)> {
    config
        .redis
        .as_ref()
        .map(|r| (r.url.expose(), r.key_prefix.as_str(), r.timeout))
}

/// 收到 SIGHUP 就重新加载配置的后台服务。
///
/// 用途：`server::build` 在知道配置文件路径时把它加入 `Server`。
///
/// ```
/// use std::sync::Arc; // 共享配置
/// let yaml = "auth: { disabled: true }"; // 最小配置
/// let cfg = chatnexus::config::build(chatnexus::config::parse(yaml).unwrap(), |_| None).unwrap(); // 构建配置
/// let shared = Arc::new(arc_swap::ArcSwap::from_pointee(cfg)); // 与网关共享
/// let _reloader = chatnexus::reload::ConfigReloader::new("conf/chatnexus.yaml".into(), shared); // 监听 SIGHUP
/// ```
pub struct ConfigReloader {
    path: PathBuf,
    shared: SharedConfig,
}

impl ConfigReloader {
    /// 创建重载服务。
    pub fn new(path: PathBuf, shared: SharedConfig) -> Self {
        ConfigReloader { path, shared }
    }
}

#[async_trait]
impl BackgroundService for ConfigReloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(hangup) => hangup,
            Err(e) => {
                error!("无法监听 SIGHUP，配置热重载不可用：{e}");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = hangup.recv() => {
                    let result = match reload(&self.path, &self.shared) {
                        Ok(()) => RELOAD_OK,
                        Err(e) => {
                            error!("重新加载配置失败，继续使用旧配置：{e}");
                            RELOAD_ERROR
                        }
                    };
                    METRICS.config_reloads.with_label_values(&[result]).inc();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use arc_swap::ArcSwap;

    use super::*;

    fn 写配置(dir: &Path, models: &str) -> PathBuf {
        let path = dir.join("chatnexus.yaml");
        let yaml = format!("auth: {{ disabled: true }}\nproviders: [ {{ name: local, kind: openai_compatible, base_url: 'http://127.0.0.1:9' }} ]\nmodels: [ {models} ]\n");
        std::fs::write(&path, yaml).expect("写入配置");
        path
    }

    fn 临时目录(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("chatnexus-reload-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("创建目录");
        dir
    }

    #[test]
    fn 重载_有效配置立即替换() {
        let dir = 临时目录("有效");
        let path = 写配置(&dir, "{ name: 甲, targets: [ { provider: local } ] }");
        let shared: SharedConfig = Arc::new(ArcSwap::from_pointee(
            config::load(&path).expect("初始配置有效"),
        ));
        let held = shared.load_full();
        写配置(&dir, "{ name: 乙, targets: [ { provider: local } ] }");
        reload(&path, &shared).expect("新配置有效");
        assert!(shared.load().model("乙").is_some(), "新请求必须看到新模型");
        assert!(held.model("甲").is_some(), "进行中的请求继续持有旧配置");
    }

    #[test]
    fn 重载_无效配置被拒绝且保留旧配置() {
        let dir = 临时目录("无效");
        let path = 写配置(&dir, "{ name: 甲, targets: [ { provider: local } ] }");
        let shared: SharedConfig = Arc::new(ArcSwap::from_pointee(
            config::load(&path).expect("初始配置有效"),
        ));
        写配置(&dir, "{ name: 乙, targets: [ { provider: 不存在 } ] }");
        let e = reload(&path, &shared).expect_err("引用不存在的上游必须被拒绝");
        assert!(
            e.to_string().contains("models[0].targets[0].provider"),
            "{e}"
        );
        assert!(shared.load().model("甲").is_some(), "旧配置必须保留");
    }
}
