//! 测试自己启动的 redis-server：停掉再重启的故障测试不能动共享的 Redis，所以用自己的进程（回环地址、空闲端口、不落盘）；
//! 没有 tests/run.sh 准备好的集群（`REDIS_CLUSTER_URLS`）时，集群测试也用它现场建一个三主节点的集群。

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// 本机回环地址上的 Redis 连接串前缀。
const REDIS_LOOPBACK: &str = "redis://127.0.0.1";
/// 等待 redis-server 就绪或集群建好的上限（只防挂起）。
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// 轮询间隔。
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// 集群的主节点数。
const CLUSTER_MASTERS: usize = 3;
/// tests/run.sh 启动的集群的节点列表（逗号分隔的连接串）。
const CLUSTER_ENV: &str = "REDIS_CLUSTER_URLS";

/// 一个由测试启动的 redis-server 进程；释放时停掉并删除它的目录。
pub struct RedisProcess {
    child: Option<Child>,
    /// 监听端口。
    pub port: u16,
    dir: PathBuf,
    /// 集群节点的总线端口（单机为 `None`）；缺省的“端口 + 10000”可能超出 65535，所以显式指定。
    cluster_bus: Option<u16>,
}

impl RedisProcess {
    /// 在空闲端口上启动一个单机 redis-server 并等它就绪。
    pub fn start() -> Self {
        Self::start_on(crate::support::free_port(), None)
    }

    fn start_on(port: u16, cluster_bus: Option<u16>) -> Self {
        let dir =
            std::env::temp_dir().join(format!("chatnexus-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("创建 redis-server 目录");
        let mut process = RedisProcess {
            child: None,
            port,
            dir,
            cluster_bus,
        };
        process.restart();
        process
    }

    /// 连接串。
    pub fn url(&self) -> String {
        format!("{REDIS_LOOPBACK}:{}", self.port)
    }

    /// 停掉进程（模拟 Redis 宕机）。
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// 在同一端口上（重新）启动并等它应答 PING。
    pub fn restart(&mut self) {
        self.kill();
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(bus) = self.cluster_bus {
            command
                .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "5000"])
                .args(["--cluster-port", &bus.to_string()]);
        }
        let child = command
            .spawn()
            .expect("需要 redis-server（bash tests/run.sh 会自动安装）");
        self.child = Some(child);
        wait_until("redis-server 应答 PING", || ping(&self.url()));
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// 一个三主节点的 Redis 集群：tests/run.sh 已启动时用它，否则现场启动（随本对象释放而停掉）。
pub struct Cluster {
    /// 逗号分隔的节点连接串。
    pub urls: String,
    _nodes: Vec<RedisProcess>,
}

impl Cluster {
    /// 取得集群。
    pub fn get() -> Cluster {
        if let Some(urls) = std::env::var(CLUSTER_ENV)
            .ok()
            .filter(|u| !u.trim().is_empty())
        {
            return Cluster {
                urls,
                _nodes: Vec::new(),
            };
        }
        let all = crate::support::free_ports(CLUSTER_MASTERS * 2);
        let (ports, buses) = all.split_at(CLUSTER_MASTERS);
        let nodes: Vec<RedisProcess> = ports
            .iter()
            .zip(buses)
            .map(|(&port, &bus)| RedisProcess::start_on(port, Some(bus)))
            .collect();
        let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let status = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .status()
            .expect("需要 redis-cli");
        assert!(status.success(), "redis-cli --cluster create 失败");
        for node in &nodes {
            wait_until("集群状态为 ok", || cluster_ok(&node.url()));
        }
        let urls: Vec<String> = nodes.iter().map(RedisProcess::url).collect();
        Cluster {
            urls: urls.join(","),
            _nodes: nodes,
        }
    }

    /// 各节点的连接串。
    pub fn nodes(&self) -> Vec<&str> {
        self.urls.split(',').map(str::trim).collect()
    }
}

/// 节点是否应答 PING。
fn ping(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else {
        return false;
    };
    let Ok(mut conn) = client.get_connection_with_timeout(POLL_INTERVAL) else {
        return false;
    };
    redis::cmd("PING").query::<String>(&mut conn).is_ok()
}

/// 节点看到的集群状态是否为 ok（全部槽都已分配）。
fn cluster_ok(url: &str) -> bool {
    let Ok(mut conn) = redis::Client::open(url).and_then(|c| c.get_connection()) else {
        return false;
    };
    redis::cmd("CLUSTER")
        .arg("INFO")
        .query::<String>(&mut conn)
        .is_ok_and(|info| info.contains("cluster_state:ok"))
}

/// 轮询直到条件成立（只防挂起）。
fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + READY_TIMEOUT;
    while !ready() {
        assert!(Instant::now() < deadline, "等待超时：{what}");
        std::thread::sleep(POLL_INTERVAL);
    }
}
