//! `chatnexus keys …`：生成主密钥、加密上游密钥与签名密钥、轮换后重新加密、生成客户端密钥，
//! 以及经管理接口管理虚拟密钥（见 `cli_admin`）。
//!
//! 要写进配置的值打印到标准输出（便于重定向与脚本处理），说明文字打印到标准错误。
//! 明文密钥只从标准输入读取，绝不从命令行参数读取（参数会出现在 `ps` 与 shell 历史里）。

use std::io::Read;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use zeroize::Zeroizing;

use chatnexus::config::{valid_client_name, valid_provider_name};
use chatnexus::security::crypto::{random_token, MasterKey, MasterKeys, MASTER_KEY_ENV};
use chatnexus::security::KeyHash;

use crate::cli_admin;

/// 新客户端密钥的前缀。
const CLIENT_KEY_PREFIX: &str = "sk-cnx-";
/// 新签名密钥的前缀。
const SIGNING_SECRET_PREFIX: &str = "cnxs-";
/// 签名密钥的最短字节数（与配置加载的检查一致）。
const MIN_SIGNING_SECRET_BYTES: usize = 32;
/// 从标准输入读取的上限：密钥不会这么长，防止误把大文件管道进来。
const MAX_STDIN_BYTES: u64 = 64 * 1024;

/// `keys` 的子命令。
#[derive(Subcommand)]
pub enum KeysCommand {
    /// 生成新的主密钥（32 字节 CSPRNG 随机数，标准 base64），输出 `CHATNEXUS_MASTER_KEY=…`
    GenMaster,
    /// 用主密钥加密从标准输入读入的密钥，输出可直接写进配置的一行
    Encrypt(EncryptArgs),
    /// 把旧主密钥加密的密文（从标准输入读入）改用当前主密钥加密；需同时设置 CHATNEXUS_MASTER_KEY_OLD
    Reencrypt(EncryptArgs),
    /// 生成新的客户端密钥：明文只打印这一次，配置里只存它的 SHA-256
    GenClient(GenClientArgs),
    /// 经管理接口新建虚拟密钥（管理令牌来自 CHATNEXUS_ADMIN_TOKEN）：明文只打印这一次
    Create(cli_admin::CreateArgs),
    /// 经管理接口列出全部虚拟密钥
    List(cli_admin::AdminArgs),
    /// 经管理接口停用一个虚拟密钥（所有实例一秒内生效）
    Disable(cli_admin::NameArgs),
    /// 经管理接口轮换一个虚拟密钥：新明文只打印这一次，旧密钥立即作废
    Rotate(cli_admin::NameArgs),
}

/// 密文属于哪个条目（决定附加数据与输出的字段名）。
#[derive(Args)]
#[group(required = true, multiple = false)]
pub struct EncryptArgs {
    /// 上游名（providers[].name）：输出 api_key_enc
    #[arg(long)]
    provider: Option<String>,
    /// 客户端密钥名（auth.keys[].name）：输出 signing_secret_enc
    #[arg(long)]
    client: Option<String>,
}

/// `gen-client` 的参数。
#[derive(Args)]
pub struct GenClientArgs {
    /// 密钥名（auth.keys[].name，出现在访问日志中）
    #[arg(long)]
    name: String,
    /// 同时生成签名密钥并要求该密钥的请求签名（需要主密钥）
    #[arg(long)]
    signing: bool,
}

/// 执行一个 `keys` 子命令。
pub fn run(command: &KeysCommand) -> ExitCode {
    let result = match command {
        KeysCommand::GenMaster => gen_master(),
        KeysCommand::Encrypt(args) => encrypt(args),
        KeysCommand::Reencrypt(args) => reencrypt(args),
        KeysCommand::GenClient(args) => gen_client(args),
        KeysCommand::Create(args) => cli_admin::create(args),
        KeysCommand::List(args) => cli_admin::list(args),
        KeysCommand::Disable(args) => cli_admin::disable(args),
        KeysCommand::Rotate(args) => cli_admin::rotate(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("错误：{message}");
            ExitCode::FAILURE
        }
    }
}

fn gen_master() -> Result<(), String> {
    let key = MasterKey::generate();
    println!("{MASTER_KEY_ENV}={}", key.to_base64().as_str());
    eprintln!(
        "请把这一行写入 .env 或密钥管理系统（不要提交到仓库）；丢失主密钥就无法解密配置里的密文。"
    );
    Ok(())
}

/// 条目类型、名字、输出的字段名。
struct Entry<'a> {
    name: &'a str,
    field: &'static str,
    is_client: bool,
}

fn entry(args: &EncryptArgs) -> Result<Entry<'_>, String> {
    match (&args.provider, &args.client) {
        (Some(name), None) if valid_provider_name(name) => Ok(Entry {
            name,
            field: "api_key_enc",
            is_client: false,
        }),
        (Some(name), None) => Err(format!(
            "上游名 `{name}` 不合法：只能由字母、数字、`.`、`_`、`-` 组成，长度 1 到 64"
        )),
        (None, Some(name)) if valid_client_name(name) => Ok(Entry {
            name,
            field: "signing_secret_enc",
            is_client: true,
        }),
        (None, Some(name)) => Err(format!(
            "客户端密钥名 `{name}` 不合法：不能为空、不能含空白，且不超过 64 个字符"
        )),
        _ => Err("必须且只能指定 --provider 或 --client 之一".to_string()),
    }
}

fn master_keys() -> Result<MasterKeys, String> {
    MasterKeys::from_env(|var| std::env::var(var).ok())
        .map_err(|e| e.to_string())?
        .ok_or_else(|| {
            format!("环境变量 {MASTER_KEY_ENV} 未设置（可写入 .env）；用 `chatnexus keys gen-master` 生成")
        })
}

/// 读取标准输入的全部内容并去掉首尾空白（包括管道带来的换行）。
fn read_stdin(what: &str) -> Result<Zeroizing<String>, String> {
    let mut raw = Zeroizing::new(Vec::new());
    std::io::stdin()
        .take(MAX_STDIN_BYTES + 1)
        .read_to_end(&mut raw)
        .map_err(|e| format!("读取标准输入失败：{e}"))?;
    if raw.len() as u64 > MAX_STDIN_BYTES {
        return Err(format!("标准输入超过 {MAX_STDIN_BYTES} 字节，不像是{what}"));
    }
    let text = std::str::from_utf8(&raw).map_err(|_| format!("{what}不是 UTF-8 文本"))?;
    let trimmed = Zeroizing::new(text.trim().to_string());
    if trimmed.is_empty() {
        return Err(format!(
            "标准输入为空：请从标准输入提供{what}，例如 printf %s \"$KEY\" | chatnexus keys encrypt …"
        ));
    }
    Ok(trimmed)
}

fn encrypt(args: &EncryptArgs) -> Result<(), String> {
    let entry = entry(args)?;
    let keys = master_keys()?;
    let plaintext = read_stdin("要加密的密钥")?;
    if entry.is_client && plaintext.len() < MIN_SIGNING_SECRET_BYTES {
        return Err(format!(
            "签名密钥至少 {MIN_SIGNING_SECRET_BYTES} 字节；建议用 `chatnexus keys gen-client --signing` 生成"
        ));
    }
    let enc = keys.encrypt(entry.name, plaintext.as_bytes());
    println!("{}: \"{enc}\"", entry.field);
    eprintln!(
        "附加数据为 `{}`：这段密文只能用在该名字的条目上。",
        entry.name
    );
    Ok(())
}

fn reencrypt(args: &EncryptArgs) -> Result<(), String> {
    let entry = entry(args)?;
    let keys = master_keys()?;
    let old = read_stdin("密文")?;
    let opened = keys.decrypt(entry.name, &old).map_err(|e| e.to_string())?;
    let enc = keys.encrypt(entry.name, opened.secret.expose().as_bytes());
    println!("{}: \"{enc}\"", entry.field);
    if !opened.used_old_key {
        eprintln!("提示：原密文本来就由当前主密钥加密，已换用新的随机 nonce 重新加密。");
    }
    Ok(())
}

fn gen_client(args: &GenClientArgs) -> Result<(), String> {
    if !valid_client_name(&args.name) {
        return Err(format!(
            "客户端密钥名 `{}` 不合法：不能为空、不能含空白，且不超过 64 个字符",
            args.name
        ));
    }
    // 先取主密钥：缺主密钥时不生成任何东西，避免打印出一个用不上的密钥
    let keys = if args.signing {
        Some(master_keys()?)
    } else {
        None
    };
    let key = random_token(CLIENT_KEY_PREFIX);
    let hash = KeyHash::of(&key).to_hex();
    let name = serde_json::to_string(&args.name).map_err(|e| e.to_string())?;
    eprintln!("客户端密钥（只显示这一次，网关不保存明文；请立即交给使用方）：");
    println!("{}", key.as_str());
    let mut line = format!("  - {{ name: {name}, sha256: \"{hash}\"");
    if let Some(keys) = keys {
        let secret = random_token(SIGNING_SECRET_PREFIX);
        let enc = keys.encrypt(&args.name, secret.as_bytes());
        eprintln!(
            "签名密钥（只显示这一次；客户端用它计算 X-ChatNexus-Signature，见 docs/security.md）："
        );
        println!("{}", secret.as_str());
        line.push_str(&format!(
            ", require_signature: true, signing_secret_enc: \"{enc}\""
        ));
    }
    line.push_str(" }");
    eprintln!("加入配置 auth.keys 的一行：");
    println!("{line}");
    Ok(())
}
