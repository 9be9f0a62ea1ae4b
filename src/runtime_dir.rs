//! 进程号文件与平滑升级套接字所在的私有运行时目录，以及私密文件（配置、`.env`）的权限检查。
//!
//! 平滑升级时旧进程把监听套接字交给连上升级套接字的进程：放在人人可写的 `/tmp` 下，另一个本机用户可以
//! 抢先绑定这个路径，接管网关的监听端口。所以缺省放在只有本用户能进的目录里。

use std::fs::DirBuilder;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use log::warn;
use nix::unistd::getuid;

/// systemd 按单元的 `RuntimeDirectory=` 创建目录后设置的环境变量（多个目录时以冒号分隔）。
const SYSTEMD_RUNTIME_ENV: &str = "RUNTIME_DIRECTORY";
/// 用户会话的运行时目录（`/run/user/<uid>`）。
const XDG_RUNTIME_ENV: &str = "XDG_RUNTIME_DIR";
/// 在用户运行时目录下建的子目录名，也是临时目录下私有目录名的前缀。
const APP_DIR: &str = "chatnexus";
/// 缺省进程号文件名。
pub const PID_FILE_NAME: &str = "chatnexus.pid";
/// 缺省平滑升级套接字名。
pub const UPGRADE_SOCK_NAME: &str = "upgrade.sock";
/// 私有目录的权限：只有属主能读写进入。
const PRIVATE_DIR_MODE: u32 = 0o700;
/// 组与其他用户的写权限位：有它们，别人就能在目录里抢先建同名文件或套接字。
const GROUP_OTHER_WRITE: u32 = 0o022;
/// 权限位（不含 setuid 等特殊位），告警时显示。
const PERMISSION_BITS: u32 = 0o777;
/// 组与其他用户的读权限位。
const GROUP_OTHER_READ: u32 = 0o044;

/// 运行时目录的问题：无法创建，或已存在却不是本用户私有的（可能被别人抢先建好）。
///
/// 用途：网关启动前检查；出错时拒绝启动并打印这条中文说明。
///
/// ```
/// let e = chatnexus::runtime_dir::RuntimeDirError::NotPrivate("/tmp/x".into()); // 别人建的目录
/// assert!(e.to_string().contains("/tmp/x")); // 说明里有路径
/// ```
#[derive(Debug, thiserror::Error)]
pub enum RuntimeDirError {
    /// 无法创建目录或读取其属性。
    #[error("无法准备运行时目录 {0}：{1}")]
    Io(String, io::Error),
    /// 目录属于别的用户，或组与其他用户也能写入。
    #[error("运行时目录 {0} 不是本用户私有的（属主不是本用户，或组与其他用户可写）：可能被其他本机用户抢先创建，请删除它或在配置中指定 server.pid_file 与 server.upgrade_sock")]
    NotPrivate(String),
}

/// 缺省运行时目录：systemd 的 `RuntimeDirectory=`（如 `/run/chatnexus`），否则 `$XDG_RUNTIME_DIR/chatnexus`，
/// 再否则系统临时目录下本用户的 `chatnexus-<uid>`（启动时建成 0700）。只计算路径，不创建。
pub fn default_dir() -> PathBuf {
    let systemd = std::env::var_os(SYSTEMD_RUNTIME_ENV)
        .and_then(|dirs| std::env::split_paths(&dirs).next())
        .filter(|dir| dir.is_absolute());
    if let Some(dir) = systemd {
        return dir;
    }
    match std::env::var_os(XDG_RUNTIME_ENV).map(PathBuf::from) {
        Some(dir) if dir.is_absolute() => dir.join(APP_DIR),
        _ => std::env::temp_dir().join(format!("{APP_DIR}-{}", getuid())),
    }
}

/// 确保 `file` 所在目录存在且只有本用户能写入：不存在时建成 0700；缺省目录若已存在却属于别人或组与其他用户
/// 可写则报错（systemd 以 0755 建的 `/run/chatnexus` 属于本用户、别人不可写，照常使用），用户在配置里指定的
/// 目录不私有时只告警（例如有意放在共享目录）。
///
/// 错误：无法创建目录，或缺省目录不是本用户私有的。
pub fn prepare(file: &Path) -> Result<(), RuntimeDirError> {
    let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(());
    };
    let shown = || dir.display().to_string();
    DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR_MODE)
        .create(dir)
        .map_err(|e| RuntimeDirError::Io(shown(), e))?;
    let meta = std::fs::metadata(dir).map_err(|e| RuntimeDirError::Io(shown(), e))?;
    let private = meta.uid() == getuid().as_raw() && meta.mode() & GROUP_OTHER_WRITE == 0;
    if private {
        return Ok(());
    }
    if dir == default_dir() {
        return Err(RuntimeDirError::NotPrivate(shown()));
    }
    warn!(
        "{} 所在目录 {} 不是本用户私有的：其他本机用户可能抢先创建同名文件或套接字",
        file.display(),
        shown()
    );
    Ok(())
}

/// 私密文件（配置、`.env`）能被组或其他用户读取时告警：其中可能有明文密钥。
pub fn warn_if_exposed(path: &Path, what: &str) {
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    let mode = meta.permissions().mode();
    if mode & GROUP_OTHER_READ != 0 {
        warn!(
            "{what} {} 的权限是 {:o}，组或其他用户可读；其中的密钥可能外泄，建议 chmod 600",
            path.display(),
            mode & PERMISSION_BITS
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn 运行时目录_不存在时建成_0700() {
        let base = std::env::temp_dir().join(format!("chatnexus-rt-测试-{}", std::process::id()));
        let file = base.join("子目录").join(PID_FILE_NAME);
        prepare(&file).expect("应能创建");
        let mode = std::fs::metadata(base.join("子目录"))
            .expect("目录存在")
            .mode();
        let _ = std::fs::remove_dir_all(&base);
        assert_eq!(
            mode & PERMISSION_BITS,
            PRIVATE_DIR_MODE,
            "新建的运行时目录必须只有属主能访问"
        );
    }

    #[test]
    fn 运行时目录_缺省不在公共临时目录下() {
        let dir = default_dir();
        assert_ne!(
            dir,
            std::env::temp_dir(),
            "进程号文件与升级套接字不能直接放在 /tmp"
        );
        assert_ne!(
            dir,
            Path::new("/tmp"),
            "进程号文件与升级套接字不能直接放在 /tmp"
        );
    }
}
