//! 外部安全评审发现的命令行与部署问题的回归测试：模拟器收到 SIGTERM 后提前退出、网关收到 SIGINT 当场退出、私有运行时目录、
//! `.env` 不向上层目录查找、演示密钥不能用在非回环监听上、私密文件权限告警；
//! 以及攒着写出的访问日志在关停时不丢。

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use chatnexus::security::KeyHash;

const BIN: &str = env!("CARGO_BIN_EXE_chatnexus");
/// 等待端口就绪、进程退出的最长时间（只防挂起，远短于 Pingora 300 秒的宽限期，不是性能断言）。
const DEADLINE: Duration = Duration::from_secs(30);
/// 轮询间隔。
const POLL: Duration = Duration::from_millis(50);
/// 测试配置引用的客户端密钥摘要所在的环境变量。
const HASH_ENV: &str = "CHATNEXUS_TEST_CLIENT_SHA256";
/// 公开的演示密钥。
const DEMO_KEY: &str = "sk-chatnexus-demo";
/// 只有属主能读写的文件权限。
const OWNER_ONLY: u32 = 0o600;
/// 组与其他用户也可读的文件权限。
const WORLD_READABLE: u32 = 0o644;
/// 只有属主能进入的目录权限。
const PRIVATE_DIR: u32 = 0o700;
/// 权限位。
const PERMISSION_BITS: u32 = 0o777;
/// 人人可写的目录权限。
const OPEN_DIR: u32 = 0o777;
/// 每个服务两个线程时反复起停的次数：Pingora 自己的快速退出在这种配置下约一成的概率空转不退出
/// （见 `drain::ShutdownSignals`），20 次里几乎必然出现一次。
const SIGINT_ROUNDS: usize = 20;
/// 三个监听服务（代理、指标、内置模拟器），每个两个线程（单线程运行时下是两个各自的运行时）。
const MULTI_LISTENER_CONFIG: &str = r#"server: { listen: "127.0.0.1:GATEWAY_PORT", metrics_listen: "127.0.0.1:METRICS_PORT", threads: 2 }
auth: { disabled: true }
mock: { listen: "127.0.0.1:MOCK_PORT" }
providers: [ { name: mock, kind: openai_compatible, base_url: "http://127.0.0.1:MOCK_PORT" } ]
models: [ { name: 演示, targets: [ { provider: mock, model: m } ] } ]
"#;
/// 网关收到 SIGINT、自己结束进程时的日志。
const QUICK_EXIT_LINE: &str = "收到 SIGINT，快速退出";
/// 访问日志行的开头。
const ACCESS_LINE: &str = "访问 请求ID=";
/// 发请求用的客户端密钥（请求头只能是 ASCII）。
const REQUEST_KEY: &str = "sk-access-log-test";

/// 测试结束时删除的临时目录。
struct 临时目录(PathBuf);

impl Drop for 临时目录 {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn 工作目录(name: &str) -> 临时目录 {
    let dir = std::env::temp_dir().join(format!("chatnexus-加固-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("创建目录");
    临时目录(dir)
}

fn 空闲端口() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("绑定回环端口");
    listener.local_addr().expect("本地地址").port()
}

/// 在 `dir` 下运行 chatnexus（不继承测试进程的运行时目录与密钥摘要变量）。
fn 命令(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .env_remove("RUNTIME_DIRECTORY")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove(HASH_ENV)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn 等待端口(port: u16, child: &mut Child) {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = Instant::now() + DEADLINE;
    while TcpStream::connect(addr).is_err() {
        let exited = child.try_wait().expect("查询子进程");
        assert!(exited.is_none(), "进程提前退出：{exited:?}");
        assert!(Instant::now() < deadline, "{addr} 一直没有开始监听");
        std::thread::sleep(POLL);
    }
}

/// 发 SIGTERM，在期限内等它退出；返回它的输出。
fn 终止并等待退出(child: Child) -> Output {
    发信号并等待退出(child, Signal::SIGTERM)
}

/// 发给定的信号，在期限内等它退出；返回它的输出。
fn 发信号并等待退出(mut child: Child, signal: Signal) -> Output {
    let pid = i32::try_from(child.id()).expect("进程号");
    kill(Pid::from_raw(pid), signal).expect("发送信号");
    let deadline = Instant::now() + DEADLINE;
    while child.try_wait().expect("查询子进程").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("收到 {signal} 且没有进行中的请求，进程却没有在期限内退出");
        }
        std::thread::sleep(POLL);
    }
    child.wait_with_output().expect("收集输出")
}

/// 只监听回环地址、客户端密钥摘要取自环境变量的最小配置。
fn 写配置(dir: &Path, port: u16) -> PathBuf {
    let path = dir.join("chatnexus.yaml");
    let yaml = format!(
        "server: {{ listen: \"127.0.0.1:{port}\" }}\nauth: {{ keys: [ {{ name: 测试, sha256_env: {HASH_ENV} }} ] }}\n"
    );
    std::fs::write(&path, yaml).expect("写配置");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(OWNER_ONLY)).expect("改权限");
    path
}

fn 写_env(dir: &Path) {
    let line = format!("{HASH_ENV}={}\n", KeyHash::of("sk-测试").to_hex());
    let path = dir.join(".env");
    std::fs::write(&path, line).expect("写 .env");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(OWNER_ONLY)).expect("改权限");
}

#[test]
fn 模拟器收到_sigterm_后不等宽限期就退出() {
    let dir = 工作目录("mock");
    let port = 空闲端口();
    let listen = format!("127.0.0.1:{port}");
    let mut child = 命令(&dir.0, &["mock", "--listen", &listen])
        .spawn()
        .expect("启动模拟器");
    等待端口(port, &mut child);
    let out = 终止并等待退出(child);
    assert!(out.status.success(), "应正常退出：{out:?}");
}

#[test]
fn 网关的进程号文件放在私有运行时目录_收到_sigterm_后退出() {
    let dir = 工作目录("runtime");
    let port = 空闲端口();
    let config = 写配置(&dir.0, port);
    写_env(&dir.0);
    let xdg = dir.0.join("xdg");
    std::fs::create_dir_all(&xdg).expect("创建 XDG 目录");
    let mut child = 命令(&dir.0, &["-c", &config.display().to_string()])
        .env("XDG_RUNTIME_DIR", &xdg)
        .spawn()
        .expect("启动网关");
    等待端口(port, &mut child);
    let runtime = xdg.join("chatnexus");
    let mode = std::fs::metadata(&runtime)
        .expect("运行时目录已创建")
        .permissions()
        .mode();
    assert_eq!(
        mode & PERMISSION_BITS,
        PRIVATE_DIR,
        "运行时目录只能属主访问"
    );
    assert!(
        runtime.join("chatnexus.pid").exists(),
        "进程号文件在运行时目录里"
    );
    let out = 终止并等待退出(child);
    assert!(out.status.success(), "应正常退出：{out:?}");
}

#[test]
fn 网关_运行时目录被他人抢先建成公开目录时拒绝启动() {
    let dir = 工作目录("抢占");
    let config = 写配置(&dir.0, 空闲端口());
    写_env(&dir.0);
    let xdg = dir.0.join("xdg");
    let runtime = xdg.join("chatnexus");
    std::fs::create_dir_all(&runtime).expect("创建目录");
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(OPEN_DIR)).expect("改权限");
    let out = 命令(&dir.0, &["-c", &config.display().to_string()])
        .env("XDG_RUNTIME_DIR", &xdg)
        .output()
        .expect("运行网关");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "必须拒绝启动");
    assert!(stderr.contains("不是本用户私有的"), "{stderr}");
}

#[test]
fn 只读工作目录的_env_不向上层目录查找() {
    let parent = 工作目录("上层");
    let child = parent.0.join("子目录");
    std::fs::create_dir_all(&child).expect("创建子目录");
    写配置(&child, 空闲端口());
    写_env(&parent.0);
    let check = || {
        命令(&child, &["-t", "-c", "chatnexus.yaml"])
            .output()
            .expect("运行配置检查")
    };
    let out = check();
    assert!(!out.status.success(), "上层目录的 .env 不能被读入：{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(HASH_ENV),
        "{out:?}"
    );
    写_env(&child);
    let out = check();
    assert!(out.status.success(), "工作目录的 .env 照常读入：{out:?}");
}

#[test]
fn 演示密钥在非回环监听上_配置检查失败并说明如何生成密钥() {
    let dir = 工作目录("演示");
    let path = dir.0.join("open.yaml");
    let yaml = format!(
        "server: {{ listen: \"0.0.0.0:{}\" }}\nauth: {{ keys: [ {{ name: demo, sha256: \"{}\" }} ] }}\n",
        空闲端口(),
        KeyHash::of(DEMO_KEY).to_hex()
    );
    std::fs::write(&path, yaml).expect("写配置");
    let out = 命令(&dir.0, &["-t", "-c", "open.yaml"])
        .output()
        .expect("运行配置检查");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "必须拒绝：{stderr}");
    assert!(stderr.contains("chatnexus keys gen-client"), "{stderr}");
}

#[test]
fn 配置文件组或其他用户可读时告警() {
    let dir = 工作目录("权限");
    let config = 写配置(&dir.0, 空闲端口());
    写_env(&dir.0);
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(WORLD_READABLE))
        .expect("改权限");
    let out = 命令(&dir.0, &["-t", "-c", "chatnexus.yaml"])
        .output()
        .expect("运行配置检查");
    assert!(out.status.success(), "告警不影响启动：{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("组或其他用户可读"),
        "{out:?}"
    );
}

/// 带内置模拟器上游、访问日志攒一分钟才写出的配置模板（测试期间只有关停会让它写出）：
/// `GATEWAY_PORT`、`MOCK_PORT`、`HASH_ENV` 在写出时替换。
const BUFFERED_LOG_CONFIG: &str = r#"server: { listen: "127.0.0.1:GATEWAY_PORT" }
auth: { keys: [ { name: 测试, sha256_env: HASH_ENV } ] }
mock: { listen: "127.0.0.1:MOCK_PORT" }
providers: [ { name: mock, kind: openai_compatible, base_url: "http://127.0.0.1:MOCK_PORT" } ]
models: [ { name: 演示, targets: [ { provider: mock, model: m } ] } ]
access_log: { flush_ms: 60000 }
"#;

/// 按 [`BUFFERED_LOG_CONFIG`] 写出配置文件。
fn 写攒日志的配置(dir: &Path, port: u16, mock_port: u16) -> PathBuf {
    let path = dir.join("chatnexus.yaml");
    let yaml = BUFFERED_LOG_CONFIG
        .replace("GATEWAY_PORT", &port.to_string())
        .replace("MOCK_PORT", &mock_port.to_string())
        .replace("HASH_ENV", HASH_ENV);
    std::fs::write(&path, yaml).expect("写配置");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(OWNER_ONLY)).expect("改权限");
    path
}

/// 经原始 HTTP/1.1 发一个聊天请求（`Connection: close`），返回完整的响应文本。
fn 发聊天请求(port: u16) -> String {
    let body = r#"{"model":"演示","messages":[{"role":"user","content":"你好"}]}"#;
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {REQUEST_KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("连接网关");
    stream.set_read_timeout(Some(DEADLINE)).expect("读超时");
    stream.write_all(request.as_bytes()).expect("发送请求");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("读取响应");
    response
}

/// 起一个攒着访问日志的网关（内置模拟器作上游），发一个聊天请求，确认访问日志还在内存里。
///
/// 返回：网关进程与它的标准错误所在的文件。
fn 起网关并发一个请求(dir: &Path) -> (Child, PathBuf) {
    let (port, mock_port) = (空闲端口(), 空闲端口());
    let config = 写攒日志的配置(dir, port, mock_port);
    let env = format!("{HASH_ENV}={}\n", KeyHash::of(REQUEST_KEY).to_hex());
    let env_path = dir.join(".env");
    std::fs::write(&env_path, env).expect("写 .env");
    std::fs::set_permissions(&env_path, std::fs::Permissions::from_mode(OWNER_ONLY))
        .expect("改权限");
    let log_path = dir.join("stderr.log");
    let log_file = std::fs::File::create(&log_path).expect("创建日志文件");
    let mut child = 命令(dir, &["-c", &config.display().to_string()])
        .env(
            "RUST_LOG",
            "warn,chatnexus::access=info,chatnexus::drain=info",
        )
        .env("XDG_RUNTIME_DIR", dir)
        .stderr(log_file)
        .spawn()
        .expect("启动网关");
    等待端口(port, &mut child);
    等待端口(mock_port, &mut child);
    let response = 发聊天请求(port);
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "请求应成功：{response}"
    );
    let before = std::fs::read_to_string(&log_path).expect("读日志");
    assert!(
        !before.contains(ACCESS_LINE),
        "flush_ms 为一分钟时访问日志应还攒在内存里：{before}"
    );
    (child, log_path)
}

/// 断言关停后日志里有那个请求的访问日志行。
fn 断言访问日志已写出(log: &str) {
    let line = log.lines().find(|l| l.contains(ACCESS_LINE));
    assert!(
        line.is_some_and(|l| l.contains("状态=200") && l.contains("模型=演示")),
        "关停时攒着的访问日志必须写出：{log}"
    );
}

#[test]
fn 访问日志攒在内存里_收到_sigterm_关停时全部写出() {
    let dir = 工作目录("访问日志");
    let (child, log_path) = 起网关并发一个请求(&dir.0);
    let out = 终止并等待退出(child);
    assert!(out.status.success(), "应正常退出：{out:?}");
    断言访问日志已写出(&std::fs::read_to_string(&log_path).expect("读日志"));
}

#[test]
fn 收到_sigint_写出访问日志后当场退出_不经过_pingora_逐个关停运行时() {
    let dir = 工作目录("快速退出");
    let (child, log_path) = 起网关并发一个请求(&dir.0);
    let out = 发信号并等待退出(child, Signal::SIGINT);
    assert!(out.status.success(), "快速退出也是正常退出：{out:?}");
    let log = std::fs::read_to_string(&log_path).expect("读日志");
    断言访问日志已写出(&log);
    assert!(
        log.contains(QUICK_EXIT_LINE),
        "SIGINT 应由网关自己当场结束进程：{log}"
    );
}

/// 按 [`MULTI_LISTENER_CONFIG`] 写出配置文件；返回配置路径与三个端口。
fn 写多监听的配置(dir: &Path) -> (PathBuf, [u16; 3]) {
    let ports = [空闲端口(), 空闲端口(), 空闲端口()];
    let path = dir.join("chatnexus.yaml");
    let yaml = MULTI_LISTENER_CONFIG
        .replace("GATEWAY_PORT", &ports[0].to_string())
        .replace("METRICS_PORT", &ports[1].to_string())
        .replace("MOCK_PORT", &ports[2].to_string());
    std::fs::write(&path, yaml).expect("写配置");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(OWNER_ONLY)).expect("改权限");
    (path, ports)
}

#[test]
fn 每个服务两个线程时_反复收到_sigint_每次都在期限内退出() {
    let dir = 工作目录("反复快速退出");
    for round in 1..=SIGINT_ROUNDS {
        let (config, ports) = 写多监听的配置(&dir.0);
        let mut child = 命令(&dir.0, &["-c", &config.display().to_string()])
            .env("XDG_RUNTIME_DIR", &dir.0)
            .spawn()
            .expect("启动网关");
        for port in ports {
            等待端口(port, &mut child);
        }
        let out = 发信号并等待退出(child, Signal::SIGINT);
        assert!(out.status.success(), "第 {round} 次应正常退出：{out:?}");
    }
}
