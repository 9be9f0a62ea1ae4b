//! `chatnexus keys create/list/disable/rotate`：经管理接口（`server.admin_listen`）管理虚拟密钥。
//!
//! 管理令牌只从环境变量 `CHATNEXUS_ADMIN_TOKEN` 读取（命令行参数会出现在 `ps` 与 shell 历史里）。
//! 管理接口只应开在本机或运维网络上，所以这里只支持 `http://` 地址，用标准库的 TCP 连接发一个
//! `Connection: close` 的 HTTP/1.1 请求并读到连接关闭。新密钥打印到标准输出，说明文字打印到标准错误。

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use clap::Args;
use serde_json::{json, Value};

/// 管理令牌的环境变量。
const ADMIN_TOKEN_ENV: &str = "CHATNEXUS_ADMIN_TOKEN";
/// 管理接口的缺省地址（与文档里的示例一致）。
const DEFAULT_ADMIN_URL: &str = "http://127.0.0.1:9092";
/// 只支持的协议前缀。
const HTTP_SCHEME: &str = "http://";
/// 连接与读写的超时。
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// 读回复的上限。
const MAX_REPLY_BYTES: u64 = 16 * 1024 * 1024;
/// 头与正文之间的空行。
const HEADER_END: &[u8] = b"\r\n\r\n";
/// 密钥集合的路径。
const KEYS_PATH: &str = "/admin/keys";

/// 管理接口的地址。
#[derive(Args)]
pub struct AdminArgs {
    /// 管理接口的地址（server.admin_listen），如 http://127.0.0.1:9092
    #[arg(long, default_value = DEFAULT_ADMIN_URL)]
    admin: String,
}

/// `keys create` 的参数。
#[derive(Args)]
pub struct CreateArgs {
    #[command(flatten)]
    target: AdminArgs,
    /// 密钥名
    #[arg(long)]
    name: String,
    /// 所属团队（必须已存在）
    #[arg(long)]
    team: Option<String>,
    /// 允许的模型，逗号分隔；不给表示不限
    #[arg(long, value_delimiter = ',')]
    models: Option<Vec<String>>,
    /// 每日预算（美元）
    #[arg(long)]
    daily_usd: Option<f64>,
    /// 每月预算（美元）
    #[arg(long)]
    monthly_usd: Option<f64>,
}

/// 针对一个已有密钥的参数。
#[derive(Args)]
pub struct NameArgs {
    #[command(flatten)]
    target: AdminArgs,
    /// 密钥名
    #[arg(long)]
    name: String,
}

/// 新建虚拟密钥：密钥明文打印到标准输出（只出现这一次）。
///
/// 错误：缺少管理令牌、连不上或管理接口拒绝时返回中文说明。
pub fn create(args: &CreateArgs) -> Result<(), String> {
    let mut body = json!({ "name": args.name });
    if let Some(team) = &args.team {
        body["team"] = json!(team);
    }
    if let Some(models) = &args.models {
        body["models"] = json!(models);
    }
    if args.daily_usd.is_some() || args.monthly_usd.is_some() {
        body["budgets"] = json!({ "daily_usd": args.daily_usd, "monthly_usd": args.monthly_usd });
    }
    let created = call(&args.target, "POST", KEYS_PATH, Some(&body))?;
    print_secret(&created)
}

/// 列出全部虚拟密钥：每行名字、状态、团队与允许的模型。
///
/// 错误：同 [`create`]。
pub fn list(args: &AdminArgs) -> Result<(), String> {
    let listed = call(args, "GET", KEYS_PATH, None)?;
    for key in listed["data"].as_array().into_iter().flatten() {
        let status = if key["disabled"] == true {
            "已停用"
        } else {
            "启用"
        };
        let models = key["models"].as_array().map_or("不限".to_string(), |m| {
            m.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(",")
        });
        let team = key["team"].as_str().unwrap_or("-");
        println!(
            "{}\t{status}\t团队={team}\t模型={models}",
            key["name"].as_str().unwrap_or_default()
        );
    }
    Ok(())
}

/// 停用一个虚拟密钥（所有实例一秒内生效）。
///
/// 错误：同 [`create`]。
pub fn disable(args: &NameArgs) -> Result<(), String> {
    let body = json!({ "disabled": true });
    call(&args.target, "PATCH", &key_path(&args.name), Some(&body))?;
    eprintln!("已停用密钥 `{}`", args.name);
    Ok(())
}

/// 轮换一个虚拟密钥：新密钥打印到标准输出，旧密钥立即作废。
///
/// 错误：同 [`create`]。
pub fn rotate(args: &NameArgs) -> Result<(), String> {
    let path = format!("{}/rotate", key_path(&args.name));
    let rotated = call(&args.target, "POST", &path, None)?;
    print_secret(&rotated)
}

/// 打印只出现一次的密钥明文。
fn print_secret(reply: &Value) -> Result<(), String> {
    let key = reply["key"].as_str().ok_or("管理接口的回复里没有密钥")?;
    println!("{key}");
    eprintln!(
        "这是密钥 `{}` 的明文，只显示这一次，请立即保存。",
        reply["name"].as_str().unwrap_or_default()
    );
    Ok(())
}

/// 一个密钥的路径（名字按 URL 编码，可以是中文）。
fn key_path(name: &str) -> String {
    let encoded: String =
        percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC).collect();
    format!("{KEYS_PATH}/{encoded}")
}

/// 发一个管理请求，返回 2xx 回复的 JSON。
///
/// 错误：缺少管理令牌、地址不合法、连不上、读写失败、回复不是 JSON、或不是 2xx（带管理接口的中文消息）。
fn call(
    target: &AdminArgs,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, String> {
    let token = std::env::var(ADMIN_TOKEN_ENV)
        .map_err(|_| format!("环境变量 {ADMIN_TOKEN_ENV} 未设置：管理令牌只从环境变量读取"))?;
    let host = target
        .admin
        .strip_prefix(HTTP_SCHEME)
        .map(|rest| rest.trim_end_matches('/'))
        .filter(|h| !h.is_empty() && !h.contains('/'))
        .ok_or_else(|| {
            format!(
                "管理接口地址 `{}` 不合法：只支持 http://主机:端口",
                target.admin
            )
        })?;
    let payload = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
        payload.len()
    );
    let (status, reply) = exchange(host, request.as_bytes())?;
    let value: Value =
        serde_json::from_slice(&reply).map_err(|e| format!("管理接口的回复不是 JSON（{e}）"))?;
    if !(200..300).contains(&status) {
        let message = value["error"]["message"].as_str().unwrap_or("未知错误");
        return Err(format!("管理接口返回 {status}：{message}"));
    }
    Ok(value)
}

/// 连接、写出请求、读到连接关闭，返回状态码与正文。
///
/// 错误：连不上、读写失败或回复不是 HTTP。
fn exchange(host: &str, request: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let addr = host
        .to_socket_addrs()
        .map_err(|e| format!("解析管理接口地址 `{host}` 失败：{e}"))?
        .next()
        .ok_or_else(|| format!("管理接口地址 `{host}` 没有可用的地址"))?;
    let mut stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .map_err(|e| format!("连接管理接口 {addr} 失败：{e}"))?;
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    stream
        .write_all(request)
        .map_err(|e| format!("发送管理请求失败：{e}"))?;
    let mut reply = Vec::new();
    stream
        .take(MAX_REPLY_BYTES)
        .read_to_end(&mut reply)
        .map_err(|e| format!("读取管理接口的回复失败：{e}"))?;
    let split = reply
        .windows(HEADER_END.len())
        .position(|w| w == HEADER_END)
        .ok_or("管理接口的回复不是 HTTP")?;
    let status = std::str::from_utf8(&reply[..split])
        .ok()
        .and_then(|head| head.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or("管理接口的回复没有状态码")?;
    Ok((status, reply[split + HEADER_END.len()..].to_vec()))
}
