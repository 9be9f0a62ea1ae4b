//! `chatnexus keys …` 命令行：运行构建好的二进制，明文经标准输入传入，
//! 再证明它打印的密文能经配置加载解密、打印的摘要能通过鉴权。

#[path = "support/mod.rs"]
mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use chatnexus::config;
use chatnexus::security::crypto::{MASTER_KEY_ENV, MASTER_KEY_OLD_ENV};

use support::config::{GatewayConfig, Provider, ProviderKind};

const BIN: &str = env!("CARGO_BIN_EXE_chatnexus");
/// 配置里引用的 OpenAI 地址（不会被访问）。
const OPENAI_URL: &str = "https://api.openai.com";
/// 配置里引用的 Anthropic 地址（不会被访问）。
const ANTHROPIC_URL: &str = "https://api.anthropic.com";
/// 配置里引用的本机兼容上游（不会被访问）。
const LOCAL_URL: &str = "http://127.0.0.1:1";

/// 关闭鉴权、只有一个以密文 `enc` 保存密钥的上游的配置。
fn 单上游配置(name: &str, kind: ProviderKind, base_url: &str, enc: &str) -> GatewayConfig {
    GatewayConfig::default()
        .auth_disabled()
        .provider(Provider::new(name, kind, base_url).api_key_enc(enc.to_string()))
}

/// 测试结束时删除的临时目录。
struct 临时目录(PathBuf);

impl std::ops::Deref for 临时目录 {
    type Target = PathBuf;

    fn deref(&self) -> &PathBuf {
        &self.0
    }
}

impl Drop for 临时目录 {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// 每个测试一个空的工作目录：二进制会读当前目录的 `.env`，不能让仓库里的影响结果。
fn 工作目录(name: &str) -> 临时目录 {
    let dir = std::env::temp_dir().join(format!("chatnexus-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("创建目录");
    临时目录(dir)
}

/// 运行 `chatnexus args…`，只传入给定的环境变量（清掉继承来的主密钥）。
fn 运行(dir: &Path, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(dir)
        .env_remove(MASTER_KEY_ENV)
        .env_remove(MASTER_KEY_OLD_ENV)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("启动 chatnexus");
    let mut pipe = child.stdin.take().expect("标准输入");
    if let Some(text) = stdin {
        // 命令可能在读标准输入之前就因参数或主密钥错误而退出，此时管道已关闭，不算测试失败
        if let Err(e) = pipe.write_all(text.as_bytes()) {
            assert_eq!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe,
                "写标准输入失败：{e}"
            );
        }
    }
    drop(pipe);
    child.wait_with_output().expect("等待 chatnexus")
}

fn 标准输出(out: &Output) -> String {
    assert!(
        out.status.success(),
        "命令失败：{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("UTF-8")
}

fn 生成主密钥(dir: &Path) -> String {
    let out = 标准输出(&运行(dir, &["keys", "gen-master"], &[], None));
    let line = out.trim();
    let value = line
        .strip_prefix("CHATNEXUS_MASTER_KEY=")
        .unwrap_or_else(|| panic!("输出应为 CHATNEXUS_MASTER_KEY=…：{line}"));
    assert_eq!(value.len(), 44, "32 字节的标准 base64 是 44 个字符");
    value.to_string()
}

/// 从 `field: "v1:…"` 行取出密文。
fn 密文(line: &str, field: &str) -> String {
    line.trim()
        .strip_prefix(&format!("{field}: \""))
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or_else(|| panic!("输出应为 {field}: \"v1:…\"：{line}"))
        .to_string()
}

#[test]
fn 主密钥_每次不同() {
    let dir = 工作目录("master");
    assert_ne!(生成主密钥(&dir), 生成主密钥(&dir));
}

#[test]
fn 加密上游密钥_标准输入读入_密文经配置加载解密() {
    let dir = 工作目录("encrypt");
    let master = 生成主密钥(&dir);
    let plaintext = "sk-proj-命令行测试-0123456789";
    let out = 运行(
        &dir,
        &["keys", "encrypt", "--provider", "openai"],
        &[(MASTER_KEY_ENV, &master)],
        Some(&format!("{plaintext}\n")),
    );
    let stdout = 标准输出(&out);
    assert!(!stdout.contains(plaintext), "明文不得回显");
    assert!(!String::from_utf8_lossy(&out.stderr).contains(plaintext));
    let enc = 密文(&stdout, "api_key_enc");
    let env = |var: &str| (var == MASTER_KEY_ENV).then(|| master.clone());
    let cfg = 单上游配置("openai", ProviderKind::OpenAi, OPENAI_URL, &enc)
        .build(env)
        .expect("密文必须能解密");
    assert_eq!(
        cfg.providers[0].api_key.as_ref().map(|k| k.expose()),
        Some(plaintext),
        "去掉了管道带来的换行"
    );
    // 挪到别的上游名下就解不开
    let moved = 单上游配置("other", ProviderKind::OpenAi, OPENAI_URL, &enc);
    let err = moved
        .build(env)
        .expect_err("附加数据不同必须失败")
        .to_string();
    assert!(err.contains("providers[0].api_key_enc"), "{err}");
}

/// 生成一份含 Anthropic 密文密钥的配置文件，返回它的路径与主密钥。
fn 写密文配置(dir: &Path) -> (String, String) {
    let master = 生成主密钥(dir);
    let enc = 密文(
        &标准输出(&运行(
            dir,
            &["keys", "encrypt", "--provider", "claude"],
            &[(MASTER_KEY_ENV, &master)],
            Some("sk-ant-命令行"),
        )),
        "api_key_enc",
    );
    let conf = dir.join("chatnexus.yaml");
    let config = 单上游配置("claude", ProviderKind::Anthropic, ANTHROPIC_URL, &enc);
    std::fs::write(&conf, config.to_yaml()).expect("写配置");
    (conf.display().to_string(), master)
}

#[test]
fn 配置检查_命令行_t_用环境变量中的主密钥解密() {
    let dir = 工作目录("check");
    let (conf, master) = 写密文配置(&dir);
    let ok = 运行(
        &dir,
        &["-t", "-c", &conf],
        &[(MASTER_KEY_ENV, &master)],
        None,
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    // 主密钥写在 .env 里同样有效
    std::fs::write(dir.join(".env"), format!("{MASTER_KEY_ENV}={master}\n")).expect("写 .env");
    let via_dotenv = 运行(&dir, &["-t", "-c", &conf], &[], None);
    assert!(
        via_dotenv.status.success(),
        "{}",
        String::from_utf8_lossy(&via_dotenv.stderr)
    );
    std::fs::remove_file(dir.join(".env")).expect("删 .env");
    // 没有主密钥：中文错误指出字段
    let missing = 运行(&dir, &["-t", "-c", &conf], &[], None);
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.contains("providers[0].api_key_enc") && stderr.contains(MASTER_KEY_ENV),
        "{stderr}"
    );
    // 主密钥太短：不补零不截断，启动失败
    let short = 运行(
        &dir,
        &["-t", "-c", &conf],
        &[(MASTER_KEY_ENV, "c2hvcnQ=")],
        None,
    );
    assert!(!short.status.success());
    let stderr = String::from_utf8_lossy(&short.stderr);
    assert!(
        stderr.contains("5 字节") && stderr.contains("32 字节"),
        "{stderr}"
    );
}

#[test]
fn 加密_缺少主密钥_空输入_非法名称_都失败且不输出密文() {
    let dir = 工作目录("errors");
    let no_master = 运行(
        &dir,
        &["keys", "encrypt", "--provider", "p"],
        &[],
        Some("sk-x"),
    );
    assert!(!no_master.status.success());
    assert!(no_master.stdout.is_empty());
    assert!(String::from_utf8_lossy(&no_master.stderr).contains(MASTER_KEY_ENV));
    let master = 生成主密钥(&dir);
    let empty = 运行(
        &dir,
        &["keys", "encrypt", "--provider", "p"],
        &[(MASTER_KEY_ENV, &master)],
        Some("  \n"),
    );
    assert!(!empty.status.success() && empty.stdout.is_empty());
    let bad_name = 运行(
        &dir,
        &["keys", "encrypt", "--provider", "带 空格"],
        &[(MASTER_KEY_ENV, &master)],
        Some("sk-x"),
    );
    assert!(!bad_name.status.success() && bad_name.stdout.is_empty());
    let both = 运行(
        &dir,
        &["keys", "encrypt", "--provider", "p", "--client", "c"],
        &[(MASTER_KEY_ENV, &master)],
        Some("sk-x"),
    );
    assert!(!both.status.success() && both.stdout.is_empty());
    let short_secret = 运行(
        &dir,
        &["keys", "encrypt", "--client", "甲"],
        &[(MASTER_KEY_ENV, &master)],
        Some("too-short"),
    );
    assert!(!short_secret.status.success() && short_secret.stdout.is_empty());
}

#[test]
fn 生成客户端密钥_打印一次明文与只含摘要的配置行() {
    let dir = 工作目录("client");
    let out = 标准输出(&运行(
        &dir,
        &["keys", "gen-client", "--name", "团队甲"],
        &[],
        None,
    ));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    let key = lines[0];
    assert!(key.starts_with("sk-cnx-") && key.len() == 7 + 43, "{key}");
    let line = lines[1];
    assert!(!line.contains(key), "配置行不得含明文");
    // 打印的配置行原样贴到 `auth.keys` 下（这正是运维的用法），其余部分由类型化配置生成
    let local = Provider::new("local", ProviderKind::OpenAiCompatible, LOCAL_URL);
    let rest = GatewayConfig::default().provider(local).to_yaml();
    let yaml = format!("auth:\n  keys:\n{line}\n{rest}");
    let cfg = config::build(
        config::parse(&yaml).expect("配置行必须是合法 YAML"),
        |_| None,
    )
    .expect("可构建");
    assert_eq!(
        cfg.clients.authenticate(key).map(|c| c.name.as_str()),
        Some("团队甲")
    );
    let again = 标准输出(&运行(
        &dir,
        &["keys", "gen-client", "--name", "团队甲"],
        &[],
        None,
    ));
    assert_ne!(again.lines().next(), Some(key), "每次生成的密钥不同");
}

#[test]
fn 生成签名客户端_签名密钥加密保存且能解密() {
    let dir = 工作目录("signing");
    let master = 生成主密钥(&dir);
    let out = 标准输出(&运行(
        &dir,
        &["keys", "gen-client", "--name", "签名客户", "--signing"],
        &[(MASTER_KEY_ENV, &master)],
        None,
    ));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    let (key, secret, line) = (lines[0], lines[1], lines[2]);
    assert!(secret.starts_with("cnxs-"), "{secret}");
    assert!(!line.contains(secret) && !line.contains(key));
    assert!(line.contains("require_signature: true") && line.contains("signing_secret_enc: \"v1:"));
    let yaml = format!("auth:\n  keys:\n{line}\n");
    let env = |var: &str| (var == MASTER_KEY_ENV).then(|| master.clone());
    let cfg = config::build(config::parse(&yaml).expect("合法 YAML"), env).expect("可构建");
    let client = cfg.clients.authenticate(key).expect("密钥有效");
    assert!(client.require_signature);
    assert_eq!(
        client.signing_secret.as_ref().map(|s| s.expose()),
        Some(secret)
    );
    // 没有主密钥时不生成任何东西
    let no_master = 运行(
        &dir,
        &["keys", "gen-client", "--name", "x", "--signing"],
        &[],
        None,
    );
    assert!(!no_master.status.success() && no_master.stdout.is_empty());
}

#[test]
fn 轮换_旧主密钥的密文重新加密后只需新主密钥() {
    let dir = 工作目录("rotate");
    let old = 生成主密钥(&dir);
    let new = 生成主密钥(&dir);
    let old_enc = 密文(
        &标准输出(&运行(
            &dir,
            &["keys", "encrypt", "--provider", "openai"],
            &[(MASTER_KEY_ENV, &old)],
            Some("sk-轮换"),
        )),
        "api_key_enc",
    );
    let out = 运行(
        &dir,
        &["keys", "reencrypt", "--provider", "openai"],
        &[(MASTER_KEY_ENV, &new), (MASTER_KEY_OLD_ENV, &old)],
        Some(&old_enc),
    );
    let new_enc = 密文(&标准输出(&out), "api_key_enc");
    assert_ne!(new_enc, old_enc);
    let cfg = 单上游配置("openai", ProviderKind::OpenAi, OPENAI_URL, &new_enc)
        .build(|var| (var == MASTER_KEY_ENV).then(|| new.clone()))
        .expect("只用新主密钥即可解密");
    assert_eq!(
        cfg.providers[0].api_key.as_ref().map(|k| k.expose()),
        Some("sk-轮换")
    );
    // 没有旧主密钥时，旧密文无法重新加密
    let fail = 运行(
        &dir,
        &["keys", "reencrypt", "--provider", "openai"],
        &[(MASTER_KEY_ENV, &new)],
        Some(&old_enc),
    );
    assert!(!fail.status.success() && fail.stdout.is_empty());
}
