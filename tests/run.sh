#!/usr/bin/env bash
# 运行全部测试：Rust 单元测试、集成测试、文档测试，以及官方 OpenAI SDK 端到端测试。
# 在全新的 Debian 机器上也能运行：缺少的系统依赖（含 redis-server）会自动安装。
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

# Pingora 依赖的 zlib-ng 需要 cmake；端到端测试需要 curl、python3-venv 与 openssl（签名示例）
need=()
command -v cmake > /dev/null || need+=(cmake)
command -v curl > /dev/null || need+=(curl)
command -v openssl > /dev/null || need+=(openssl)
python3 -c 'import venv, ensurepip' 2> /dev/null || need+=(python3-venv)
# 限流测试自己启动 redis-server（停掉再重启的故障测试、三主节点集群），所以无论是否已有可用的 Redis 都需要它
command -v redis-server > /dev/null || need+=(redis-server)
command -v redis-cli > /dev/null || need+=(redis-tools)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi

LOG=$(mktemp)
REDIS_DIR=""
CLUSTER_DIR=""
# 等一个进程退出的最长轮询次数（每次 0.1 秒，共 10 秒）
EXIT_POLLS=100
cleanup() {
  # 只停本脚本自己启动的 redis-server（按它们的 pid 文件）；集群节点退出时还会改写目录里的 nodes.conf，
  # 所以等它们真的退出后再删目录，否则 rm 会撞上正在写入的文件而失败
  local pids=()
  for pidfile in "$REDIS_DIR/redis.pid" "$CLUSTER_DIR"/*/redis.pid; do
    if [ -n "$pidfile" ] && [ -f "$pidfile" ]; then
      pids+=("$(cat "$pidfile")")
    fi
  done
  for pid in "${pids[@]}"; do
    kill "$pid" 2> /dev/null || true
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 "$EXIT_POLLS"); do
      kill -0 "$pid" 2> /dev/null || break
      sleep 0.1
    done
  done
  if [ -n "$REDIS_DIR" ]; then rm -rf "$REDIS_DIR"; fi
  if [ -n "$CLUSTER_DIR" ]; then rm -rf "$CLUSTER_DIR"; fi
  rm -f "$LOG"
}
trap cleanup EXIT

# 防重放测试需要真实的 Redis：REDIS_URL（缺省 redis://127.0.0.1:6379）应答 PING 就用它，
# 否则在回环地址的空闲端口上临时启动一个（不落盘），并把 REDIS_URL 指向它
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
redis_answers() {
  python3 - "$1" << 'PY'
import socket, sys, urllib.parse
url = urllib.parse.urlparse(sys.argv[1])
def command(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a.encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out
try:
    s = socket.create_connection((url.hostname or "127.0.0.1", url.port or 6379), timeout=2)
    s.settimeout(2)
    if url.password:
        auth = [urllib.parse.unquote(url.password)]
        if url.username:
            auth.insert(0, urllib.parse.unquote(url.username))
        s.sendall(command("AUTH", *auth))
        if not s.recv(64).startswith(b"+OK"):
            sys.exit(1)
    s.sendall(command("PING"))
    sys.exit(0 if s.recv(64).startswith(b"+PONG") else 1)
except OSError:
    sys.exit(1)
PY
}
if redis_answers "$REDIS_URL"; then
  echo "使用已有的 Redis：${REDIS_URL##*@}"
else
  REDIS_DIR=$(mktemp -d)
  REDIS_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
    --dir "$REDIS_DIR" --pidfile "$REDIS_DIR/redis.pid" --logfile "$REDIS_DIR/redis.log"
  export REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
  for _ in $(seq 1 50); do
    if redis_answers "$REDIS_URL"; then break; fi
    sleep 0.1
  done
  redis_answers "$REDIS_URL" || { echo "redis-server 没有启动"; cat "$REDIS_DIR/redis.log"; exit 1; }
  echo "已在 $REDIS_URL 临时启动 redis-server"
fi

# 限流的集群测试需要三主节点的 Redis Cluster：在回环地址的空闲端口上临时启动（不落盘），
# 集群总线端口也显式取空闲端口（缺省的“端口 + 10000”可能超出 65535），测试结束时随 cleanup 停掉
CLUSTER_DIR=$(mktemp -d)
read -r -a CLUSTER_PORTS <<< "$(python3 -c '
import socket
socks = [socket.socket() for _ in range(6)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
')"
CLUSTER_NODES=()
CLUSTER_URLS=()
for i in 0 1 2; do
  port=${CLUSTER_PORTS[$i]}
  bus=${CLUSTER_PORTS[$((i + 3))]}
  mkdir -p "$CLUSTER_DIR/$port"
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
    --cluster-enabled yes --cluster-port "$bus" --cluster-node-timeout 5000 \
    --dir "$CLUSTER_DIR/$port" --pidfile "$CLUSTER_DIR/$port/redis.pid" --logfile "$CLUSTER_DIR/$port/redis.log"
  CLUSTER_NODES+=("127.0.0.1:$port")
  CLUSTER_URLS+=("redis://127.0.0.1:$port")
done
for node in "${CLUSTER_URLS[@]}"; do
  for _ in $(seq 1 50); do
    if redis_answers "$node"; then break; fi
    sleep 0.1
  done
done
redis-cli --cluster create "${CLUSTER_NODES[@]}" --cluster-replicas 0 --cluster-yes > "$CLUSTER_DIR/create.log"
for _ in $(seq 1 100); do
  if redis-cli -p "${CLUSTER_PORTS[0]}" cluster info | grep -q 'cluster_state:ok'; then break; fi
  sleep 0.1
done
redis-cli -p "${CLUSTER_PORTS[0]}" cluster info | grep -q 'cluster_state:ok' || { echo "Redis 集群没有建好"; cat "$CLUSTER_DIR/create.log"; exit 1; }
REDIS_CLUSTER_URLS=$(IFS=,; echo "${CLUSTER_URLS[*]}")
export REDIS_CLUSTER_URLS
echo "已在 ${CLUSTER_NODES[*]} 临时启动三主节点的 Redis 集群"

cargo test --all-targets 2>&1 | tee -a "$LOG"
cargo test --doc 2>&1 | tee -a "$LOG"
bash tests/e2e/run.sh 2>&1 | tee -a "$LOG"
bash tests/admin_page/run.sh 2>&1 | tee -a "$LOG"
bash tests/deploy/verify_unit.sh
bash tests/deploy/zero_downtime.sh
bash tests/deploy/cache_reload.sh

# 汇总：cargo 的各个测试目标加上 Python 端到端测试
rust_passed=$(grep -oE '[0-9]+ passed' "$LOG" | awk '{s += $1} END {print s + 0}')
rust_failed=$(grep -oE '[0-9]+ failed' "$LOG" | awk '{s += $1} END {print s + 0}')
py_ran=$(grep -oE '^Ran [0-9]+ tests?' "$LOG" | awk '{s += $2} END {print s + 0}')
echo "$((rust_passed + py_ran)) passed, ${rust_failed} failed"
