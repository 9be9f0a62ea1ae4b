//! `chatnexus` 命令行：运行网关（缺省）、检查配置（`-t`）、运行上游模拟器（`mock`）、热重载（`reload`）、
//! 密钥工具（`keys`）。

#![deny(clippy::too_many_lines)]

mod cli_admin;
mod cli_keys;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use log::{error, info, warn};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use pingora::server::configuration::Opt;
use pingora::server::{RunArgs, Server};
use pingora::services::background::background_service;

use chatnexus::config::{self, Config, DEFAULT_CONFIG_PATH};
use chatnexus::drain::{DrainExit, ShutdownSignals};
use chatnexus::mock::{mock_service, FaultOptions, MockSettings};
use chatnexus::runtime_dir;

/// 全局分配器用 mimalloc：请求路径上大量短命的小块分配，它比 glibc malloc 快得多（见 Cargo.toml 与 docs/performance.md）。
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// 指定配置文件路径的环境变量。
const CONFIG_ENV: &str = "CHATNEXUS_CONFIG";
/// 模拟器关停时提前退出服务的名称。
const MOCK_DRAIN_SERVICE: &str = "模拟器关停时提前退出";
/// 读取的环境变量文件名（工作目录下，以及配置文件所在目录下）。
const ENV_FILE: &str = ".env";
/// 缺省日志级别（生产环境 INFO，开发时用 RUST_LOG=debug）。
const DEFAULT_LOG_LEVEL: &str = "info";

/// ChatNexus：OpenAI 兼容的 LLM 网关。
#[derive(Parser)]
#[command(
    name = "chatnexus",
    version,
    about = "ChatNexus：基于 Pingora 的 OpenAI 兼容 LLM 网关"
)]
struct Cli {
    /// 配置文件路径（缺省读取环境变量 CHATNEXUS_CONFIG，再缺省为 conf/chatnexus.yaml）
    #[arg(short = 'c', long = "conf", global = true)]
    conf: Option<PathBuf>,
    /// 只检查配置：通过退出码为 0，否则打印全部问题并以非零码退出
    #[arg(short = 't', long = "test")]
    test: bool,
    /// 平滑升级：从旧进程接管监听套接字
    #[arg(short = 'u', long = "upgrade")]
    upgrade: bool,
    /// 以守护进程方式运行
    #[arg(short = 'd', long = "daemon")]
    daemon: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// 单独运行上游模拟器（测试与压测用）
    Mock(MockArgs),
    /// 校验配置后通知运行中的网关（按 server.pid_file 找到它）热重载配置
    Reload,
    /// 密钥工具：生成主密钥、加密上游密钥与签名密钥、生成客户端密钥
    #[command(subcommand)]
    Keys(cli_keys::KeysCommand),
}

#[derive(clap::Args)]
struct MockArgs {
    /// 监听地址
    #[arg(long, default_value = "127.0.0.1:18081")]
    listen: String,
    /// 流式回复的内容块数
    #[arg(long, default_value_t = MockSettings::default().chunks)]
    chunks: usize,
    /// 相邻两块之间的延迟（毫秒）
    #[arg(long, default_value_t = 0)]
    chunk_delay_ms: u64,
    /// 故障模式（至多一种）
    #[command(flatten)]
    fault: FaultOptions,
    /// 写响应头之前的延迟（毫秒）
    #[arg(long, default_value_t = 0)]
    first_byte_delay_ms: u64,
    /// 429 与 503 故障响应的 Retry-After 秒数
    #[arg(long, default_value_t = MockSettings::default().retry_after_secs)]
    retry_after_secs: u64,
}

fn main() -> ExitCode {
    if let Err(e) = load_env_file(Path::new(ENV_FILE)) {
        eprintln!("{e}");
        return ExitCode::FAILURE;
    }
    // 每条日志写出前都脱敏：即使 RUST_LOG=trace 让 Pingora 打印整个请求头，密钥也不会进日志
    if let Err(e) = chatnexus::logging::init(DEFAULT_LOG_LEVEL) {
        eprintln!("初始化日志失败：{e}");
        return ExitCode::FAILURE;
    }
    runtime_dir::warn_if_exposed(Path::new(ENV_FILE), ".env 文件");
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Mock(ref args)) => run_mock(args),
        Some(Command::Reload) => send_reload(&cli),
        Some(Command::Keys(ref command)) => cli_keys::run(command),
        None => run_gateway(&cli),
    }
}

/// 只读取给定路径的 `.env`（不存在不算错），已有的环境变量不被覆盖。
///
/// 不用 `dotenvy::dotenv()`：它找不到时会逐级向上层目录查找，可能读进别人放在上层目录里的 `.env`。
fn load_env_file(path: &Path) -> Result<(), String> {
    match dotenvy::from_path(path) {
        Err(e) if !e.not_found() => Err(format!("读取 {} 失败：{e}", path.display())),
        _ => Ok(()),
    }
}

/// 配置文件所在目录的 `.env`（与工作目录不同时）：读入并检查权限。
fn load_config_dir_env(config: &Path) -> Result<(), String> {
    let Some(dir) = config.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(());
    };
    let path = dir.join(ENV_FILE);
    if path == Path::new(ENV_FILE) || !path.exists() {
        return Ok(());
    }
    runtime_dir::warn_if_exposed(&path, ".env 文件");
    load_env_file(&path)
}

/// 配置文件路径：`-c` 优先，其次环境变量 `CHATNEXUS_CONFIG`，最后是缺省路径。
fn config_path(cli: &Cli) -> PathBuf {
    cli.conf
        .clone()
        .or_else(|| std::env::var_os(CONFIG_ENV).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH))
}

/// 读入配置目录的 `.env`，加载并校验配置；失败时把全部问题写到日志与标准错误。
fn load_config(path: &Path) -> Option<Config> {
    let loaded = load_config_dir_env(path).and_then(|()| {
        runtime_dir::warn_if_exposed(path, "配置文件");
        config::load(path).map_err(|e| e.to_string())
    });
    match loaded {
        Ok(config) => Some(config),
        Err(e) => {
            error!("{e}");
            eprintln!("{e}");
            None
        }
    }
}

/// 加载配置并运行网关；`-t` 时只检查配置。
fn run_gateway(cli: &Cli) -> ExitCode {
    let path = config_path(cli);
    let Some(config) = load_config(&path) else {
        return ExitCode::FAILURE;
    };
    if cli.test {
        println!("配置检查通过：{}", path.display());
        return ExitCode::SUCCESS;
    }
    for file in [&config.server.pid_file, &config.server.upgrade_sock] {
        if let Err(e) = runtime_dir::prepare(file) {
            error!("{e}");
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    }
    info!(
        "ChatNexus {} 启动，配置 {}，监听 {}",
        env!("CARGO_PKG_VERSION"),
        path.display(),
        config.server.listen.0
    );
    let pid_file = config.server.pid_file.clone();
    let opt = Opt {
        upgrade: cli.upgrade,
        daemon: cli.daemon,
        nocapture: false,
        test: false,
        conf: None,
    };
    let server = chatnexus::server::build(config, Some(path), Some(opt));
    // 守护进程模式由 Pingora 在 fork 之后写进程号文件；前台运行（如 systemd Type=simple）由这里写
    if !cli.daemon {
        if let Err(e) = std::fs::write(&pid_file, std::process::id().to_string()) {
            warn!(
                "无法写入进程号文件 {}：{e}；chatnexus reload 将找不到本进程",
                pid_file.display()
            );
        }
    }
    server.run(RunArgs {
        shutdown_signal: Box::new(ShutdownSignals),
    });
    // 关停结束：写出还攒着的访问日志再退出
    log::logger().flush();
    ExitCode::SUCCESS
}

/// `chatnexus reload`：先完整校验配置，通过后向运行中的网关发送 SIGHUP。
fn send_reload(cli: &Cli) -> ExitCode {
    let path = config_path(cli);
    let Some(config) = load_config(&path) else {
        eprintln!("新配置无效，没有通知网关");
        return ExitCode::FAILURE;
    };
    let pid_file = &config.server.pid_file;
    let pid = std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|text| text.trim().parse::<i32>().ok());
    let Some(pid) = pid else {
        eprintln!("无法从进程号文件 {} 读出网关的进程号", pid_file.display());
        return ExitCode::FAILURE;
    };
    match kill(Pid::from_raw(pid), Signal::SIGHUP) {
        Ok(()) => {
            println!("已通知进程 {pid} 重新加载配置 {}", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("通知进程 {pid} 失败：{e}");
            ExitCode::FAILURE
        }
    }
}

/// 单独运行上游模拟器。
fn run_mock(args: &MockArgs) -> ExitCode {
    let fault = match args.fault.fault() {
        Ok(fault) => fault,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let settings = MockSettings {
        chunks: args.chunks,
        chunk_delay_ms: args.chunk_delay_ms,
        first_byte_delay_ms: args.first_byte_delay_ms,
        retry_after_secs: args.retry_after_secs,
        fault,
        ..MockSettings::default()
    };
    if !args.listen.starts_with("127.") && !args.listen.starts_with("[::1]") {
        warn!("模拟器监听在非回环地址 {}，它不做任何鉴权", args.listen);
    }
    let mut server = Server::new_with_opt_and_conf(None, Default::default());
    server.bootstrap();
    let (mut service, stats) = mock_service(settings);
    service.add_tcp(&args.listen);
    server.add_service(service);
    // 与网关相同：SIGTERM 后没有进行中的请求就退出，不空等 Pingora 的宽限期
    let drain = DrainExit::new(move || stats.inflight());
    server.add_service(background_service(MOCK_DRAIN_SERVICE, drain));
    info!("上游模拟器监听 {}", args.listen);
    server.run_forever()
}
