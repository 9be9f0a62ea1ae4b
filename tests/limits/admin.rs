//! 管理接口与虚拟密钥：令牌鉴权、不在公开端口上、增删改查往返，以及一个实例上的创建、停用、轮换、删除
//! 很快在共享同一个 Redis 的另一个实例上生效（每个实例每 250 毫秒读一次版本号）。

use std::future::Future;
use std::time::Instant;

use serde_json::{json, Value};

use crate::env::{chat, key, single_redis, start_admin_gateway, Ask, ADMIN_TOKEN, HANG_GUARD};
use crate::support::gateway::Gateway;
use crate::support::{expect_error, redis_url, unique_prefix};

/// 轮询间隔：等新密钥生效时每次探测都是一次鉴权失败，同一 IP 每分钟 20 次失败后会被 429；
/// 实例每 250 毫秒刷新一次，按 100 毫秒探测，每次等待只会失败三四次。
const POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// 发一个管理请求（带正确的令牌）。
pub(crate) async fn 管理(
    gateway: Gateway,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .request(method, gateway.admin_url(path))
        .bearer_auth(ADMIN_TOKEN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.expect("管理请求必须送达")
}

/// 管理请求的 JSON 回复（断言状态码）。
pub(crate) async fn 管理_json(
    gateway: Gateway,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
    status: u16,
) -> Value {
    let resp = 管理(gateway, method, path, body).await;
    assert_eq!(resp.status().as_u16(), status, "{path}");
    resp.json().await.expect("管理回复是 JSON")
}

/// 用密钥发一个聊天请求，返回状态码。
pub(crate) async fn 聊天状态(gateway: Gateway, secret: &str) -> u16 {
    let resp = chat(&reqwest::Client::new(), gateway, secret, Ask::default()).await;
    let status = resp.status().as_u16();
    resp.text().await.expect("读完回复");
    status
}

/// 轮询直到用这个密钥聊天得到 `status`（只防挂起：超过上限即失败）。
pub(crate) async fn 直到<F: Future<Output = u16>>(
    what: &str,
    status: u16,
    mut probe: impl FnMut() -> F,
) {
    let deadline = Instant::now() + HANG_GUARD;
    while probe().await != status {
        assert!(Instant::now() < deadline, "等待超时：{what}");
        tokio::time::sleep(POLL).await;
    }
}

/// 共享同一个 Redis 键前缀的两个开着管理接口的网关。
pub(crate) fn 两个实例(name: &str) -> (Gateway, Gateway) {
    let redis = single_redis(&redis_url(), &unique_prefix(name));
    (
        start_admin_gateway(redis.clone()),
        start_admin_gateway(redis),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn 管理接口_没有令牌或令牌错误时拒绝_公开端口上没有管理接口() {
    let (a, _) = 两个实例("cnx-admin-auth");
    let client = reqwest::Client::new();
    let bare = client
        .get(a.admin_url("/admin/keys"))
        .send()
        .await
        .expect("送达");
    assert_eq!(expect_error(bare, 401).await["code"], "invalid_api_key");
    let wrong = client
        .get(a.admin_url("/admin/keys"))
        .bearer_auth("错误的令牌")
        .send()
        .await
        .expect("送达");
    expect_error(wrong, 401).await;
    管理_json(a, reqwest::Method::GET, "/admin/keys", None, 200).await;
    let health = 管理_json(a, reqwest::Method::GET, "/admin/health", None, 200).await;
    assert!(
        health["targets"].as_array().is_some_and(|t| !t.is_empty()),
        "{health}"
    );
    let public = client
        .get(a.url("/admin/keys"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("送达");
    assert_eq!(public.status(), 404, "公开端口上没有管理接口");
}

/// 在实例 `gateway` 上新建一个虚拟密钥，返回它的密钥明文。
pub(crate) async fn 新建(gateway: Gateway, body: Value) -> String {
    let created = 管理_json(
        gateway,
        reqwest::Method::POST,
        "/admin/keys",
        Some(body),
        201,
    )
    .await;
    assert!(created.get("sha256").is_none(), "回复不含摘要");
    created["key"].as_str().expect("新建时返回密钥").to_string()
}

/// `虚拟甲` 的管理路径（百分号编码）。
const 虚拟甲: &str = "/admin/keys/%E8%99%9A%E6%8B%9F%E7%94%B2";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn 虚拟密钥_一个实例上的创建与停用_在另一个实例上生效() {
    let (a, b) = 两个实例("cnx-admin-sync");
    let secret = 新建(a, json!({ "name": "虚拟甲", "models": ["fast"] })).await;
    直到("新密钥在实例乙上可用", 200, || {
        聊天状态(b, &secret)
    })
    .await;
    let disable = Some(json!({ "disabled": true }));
    管理_json(b, reqwest::Method::PATCH, 虚拟甲, disable, 200).await;
    直到("停用在实例甲上生效", 401, || {
        聊天状态(a, &secret)
    })
    .await;
    let enable = Some(json!({ "disabled": false }));
    管理_json(b, reqwest::Method::PATCH, 虚拟甲, enable, 200).await;
    直到("重新启用", 200, || 聊天状态(a, &secret)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn 虚拟密钥_轮换后旧密钥作废_删除后在另一个实例上失效() {
    let (a, b) = 两个实例("cnx-admin-rotate");
    let secret = 新建(a, json!({ "name": "虚拟甲" })).await;
    直到("新密钥在实例乙上可用", 200, || {
        聊天状态(b, &secret)
    })
    .await;
    let rotate = format!("{虚拟甲}/rotate");
    let rotated = 管理_json(a, reqwest::Method::POST, &rotate, None, 200).await;
    let fresh = rotated["key"].as_str().expect("轮换返回新密钥").to_string();
    直到("新密钥在实例乙上可用", 200, || {
        聊天状态(b, &fresh)
    })
    .await;
    assert_eq!(聊天状态(b, &secret).await, 401, "轮换后旧密钥作废");
    管理_json(a, reqwest::Method::DELETE, 虚拟甲, None, 200).await;
    直到("删除在实例乙上生效", 401, || {
        聊天状态(b, &fresh)
    })
    .await;
    管理_json(a, reqwest::Method::GET, 虚拟甲, None, 404).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn 虚拟密钥_模型允许列表与配置密钥一样生效() {
    let (a, _) = 两个实例("cnx-admin-models");
    let created = 管理_json(
        a,
        reqwest::Method::POST,
        "/admin/keys",
        Some(json!({ "name": "只许别的", "models": ["别的模型"] })),
        201,
    )
    .await;
    let secret = created["key"].as_str().expect("新建时返回密钥").to_string();
    直到("不在允许列表里的模型被拒", 403, || {
        聊天状态(a, &secret)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn 管理接口_往返_新建列出读取() {
    let (a, _) = 两个实例("cnx-admin-crud");
    let body =
        json!({ "name": "服务一", "limits": { "requests": 5 }, "expires_unix": 4_000_000_000u64 });
    新建(a, body).await;
    let list = 管理_json(a, reqwest::Method::GET, "/admin/keys", None, 200).await;
    let names: Vec<&str> = list["data"]
        .as_array()
        .expect("data 是数组")
        .iter()
        .filter_map(|k| k["name"].as_str())
        .collect();
    assert_eq!(names, ["服务一"]);
    let path = "/admin/keys/%E6%9C%8D%E5%8A%A1%E4%B8%80";
    let one = 管理_json(a, reqwest::Method::GET, path, None, 200).await;
    assert_eq!(one["limits"]["requests"], 5);
    assert_eq!(one["expires_unix"], 4_000_000_000u64);
    assert!(
        one.get("key").is_none() && one.get("sha256").is_none(),
        "读取时不含密钥与摘要"
    );
    assert_eq!(
        聊天状态(a, key("甲")).await,
        200,
        "配置文件里的密钥照常可用"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn 管理接口_重名非法名字未知字段与不存在都是清楚的错误() {
    let (a, _) = 两个实例("cnx-admin-errors");
    let body = json!({ "name": "服务二" });
    新建(a, body.clone()).await;
    let post = |body: Value| 管理(a, reqwest::Method::POST, "/admin/keys", Some(body));
    assert_eq!(
        expect_error(post(body).await, 409).await["code"],
        "key_exists"
    );
    let clash = post(json!({ "name": "甲" })).await;
    assert_eq!(
        expect_error(clash, 409).await["code"],
        "key_exists",
        "不能与配置文件里的密钥重名"
    );
    expect_error(post(json!({ "name": "有 空格" })).await, 400).await;
    let unknown = post(json!({ "name": "乙二", "颜色": "红" })).await;
    assert_eq!(expect_error(unknown, 400).await["code"], "invalid_json");
    let missing = 管理(a, reqwest::Method::DELETE, "/admin/keys/没有", None).await;
    assert_eq!(expect_error(missing, 404).await["code"], "key_not_found");
}

/// 运行 `chatnexus keys <args> --admin <地址>`（带管理令牌的环境变量），返回（是否成功, 标准输出, 标准错误）。
fn 命令行(gateway: Gateway, args: &[&str], with_token: bool) -> (bool, String, String) {
    let admin = format!("http://{}", gateway.admin.expect("开着管理接口"));
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_chatnexus"));
    command.arg("keys").args(args).args(["--admin", &admin]);
    command.env_remove("CHATNEXUS_ADMIN_TOKEN");
    if with_token {
        command.env("CHATNEXUS_ADMIN_TOKEN", ADMIN_TOKEN);
    }
    let out = command.output().expect("运行 chatnexus");
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).expect("输出是 UTF-8");
    (out.status.success(), text(out.stdout), text(out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn 命令行_新建列出轮换停用都经管理接口() {
    let (a, b) = 两个实例("cnx-admin-cli");
    let (ok, stdout, _) = 命令行(
        a,
        &["create", "--name", "命令行甲", "--models", "fast,stream"],
        true,
    );
    assert!(ok, "新建成功");
    let secret = stdout.trim().to_string();
    assert!(secret.starts_with("sk-cnx-"), "标准输出只有密钥：{stdout}");
    直到("命令行新建的密钥在实例乙上可用", 200, || {
        聊天状态(b, &secret)
    })
    .await;
    let (_, listed, _) = 命令行(a, &["list"], true);
    assert!(
        listed.contains("命令行甲\t启用\t团队=-\t模型=fast,stream"),
        "{listed}"
    );
    let (ok, rotated, _) = 命令行(a, &["rotate", "--name", "命令行甲"], true);
    assert!(ok);
    let fresh = rotated.trim().to_string();
    直到("轮换后的新密钥可用", 200, || {
        聊天状态(b, &fresh)
    })
    .await;
    assert_eq!(聊天状态(b, &secret).await, 401, "旧密钥作废");
    assert!(命令行(a, &["disable", "--name", "命令行甲"], true).0);
    直到("停用生效", 401, || 聊天状态(b, &fresh)).await;
    let (ok, _, stderr) = 命令行(a, &["list"], false);
    assert!(
        !ok && stderr.contains("CHATNEXUS_ADMIN_TOKEN"),
        "没有管理令牌时说明原因：{stderr}"
    );
}
