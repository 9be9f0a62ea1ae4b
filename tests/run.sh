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
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi

LOG=$(mktemp)
REDIS_DIR=""
cleanup() {
  # 只停本脚本自己启动的 redis-server（按它的 pid 文件）
  if [ -n "$REDIS_DIR" ] && [ -f "$REDIS_DIR/redis.pid" ]; then
    kill "$(cat "$REDIS_DIR/redis.pid")" 2> /dev/null || true
  fi
  if [ -n "$REDIS_DIR" ]; then rm -rf "$REDIS_DIR"; fi
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
  if ! command -v redis-server > /dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server
  fi
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
cargo test --all-targets 2>&1 | tee -a "$LOG"
cargo test --doc 2>&1 | tee -a "$LOG"
bash tests/e2e/run.sh 2>&1 | tee -a "$LOG"
bash tests/deploy/verify_unit.sh
bash tests/deploy/zero_downtime.sh

# 汇总：cargo 的各个测试目标加上 Python 端到端测试
rust_passed=$(grep -oE '[0-9]+ passed' "$LOG" | awk '{s += $1} END {print s + 0}')
rust_failed=$(grep -oE '[0-9]+ failed' "$LOG" | awk '{s += $1} END {print s + 0}')
py_ran=$(grep -oE '^Ran [0-9]+ tests?' "$LOG" | awk '{s += $2} END {print s + 0}')
echo "$((rust_passed + py_ran)) passed, ${rust_failed} failed"
