//! 压测用的裸 Pingora 透传代理：把每个请求原样转发给同一个上游，不解析请求体、不鉴权、不记日志。
//!
//! 它不是产品的一部分，只是任何基于 Pingora 的网关的性能上限，`bench/run.sh` 用它做对照组。
//! 用法（转发到模拟器）：`cargo run --release --example passthrough -- --listen 127.0.0.1:18090 --upstream 127.0.0.1:18081`

use std::net::SocketAddr;

use async_trait::async_trait;
use clap::Parser;
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::upstreams::peer::HttpPeer;
use pingora_proxy::{ProxyHttp, Session};

/// 与网关用同一个全局分配器：对照组与被测对象只差网关自己的工作，比值才有意义。
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// 命令行参数。
#[derive(Parser)]
#[command(about = "裸 Pingora 透传代理（压测对照组）")]
struct Args {
    /// 监听地址
    #[arg(long)]
    listen: String,
    /// 上游地址（IP:端口，明文 HTTP）
    #[arg(long)]
    upstream: SocketAddr,
    /// 工作线程数
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// 每个工作线程一个单线程运行时、线程间不偷任务（与网关的缺省相同；不给时用 Pingora 的缺省，偷任务）
    #[arg(long)]
    no_work_stealing: bool,
}

/// 透传逻辑：每个请求都交给同一个上游，其余钩子全用 Pingora 的缺省实现。
struct Passthrough {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for Passthrough {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut (),
    ) -> pingora::Result<Box<HttpPeer>> {
        // 明文上游，不需要 SNI；连接由 Pingora 的连接池复用
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

fn main() {
    let args = Args::parse();
    let conf = ServerConf {
        threads: args.threads,
        work_stealing: !args.no_work_stealing,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let logic = Passthrough {
        upstream: args.upstream,
    };
    let mut proxy = pingora_proxy::http_proxy_service(&server.configuration, logic);
    proxy.add_tcp(&args.listen);
    server.add_service(proxy);
    server.run_forever()
}
