#!/usr/bin/env bash
# 吞吐对比：直接访问模拟上游 vs 经过 ChatNexus（鉴权 + 解析 + 转发），只用 127.0.0.1。
# 用法：bash bench/compare.sh [并发数] [秒数]
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CONNS=${1:-16}
SECONDS_PER_RUN=${2:-10}
BIN="$ROOT/target/release/chatnexus"
KEY="sk-chatnexus-bench"
WORK=$(mktemp -d)
PIDS=()

cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

command -v wrk > /dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
(cd "$ROOT" && cargo build --release --quiet)

# 同时持有两个监听再一起释放，保证两个端口互不相同
free_ports() {
  python3 -c 'import socket; ss=[socket.socket() for _ in range(2)]; [s.bind(("127.0.0.1", 0)) for s in ss]; print(*[s.getsockname()[1] for s in ss])'
}
wait_port() {
  for _ in $(seq 1 100); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "端口 $1 没有就绪" >&2; exit 1
}

read -r MOCK_PORT GATEWAY_PORT < <(free_ports)
cat > "$WORK/chatnexus.yaml" <<YAML
server: { listen: "127.0.0.1:$GATEWAY_PORT", threads: 1 }
auth: { keys: [ { name: bench, sha256: "$(printf '%s' "$KEY" | sha256sum | cut -d' ' -f1)" } ] }
providers: [ { name: mock, kind: openai_compatible, base_url: "http://127.0.0.1:$MOCK_PORT" } ]
models: [ { name: demo, targets: [ { provider: mock } ] } ]
YAML

# 模拟器与网关各绑一个核，wrk 与两者共享（本机只有 2 核，比值比绝对值更有意义）
RUST_LOG=error taskset -c 0 "$BIN" mock --listen "127.0.0.1:$MOCK_PORT" --chunks 8 > /dev/null 2>&1 &
PIDS+=($!)
RUST_LOG=error taskset -c 1 "$BIN" -c "$WORK/chatnexus.yaml" > /dev/null 2>&1 &
PIDS+=($!)
wait_port "$MOCK_PORT"
wait_port "$GATEWAY_PORT"

cat > "$WORK/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $KEY"
wrk.body = '{"model":"demo","messages":[{"role":"user","content":"你好，请介绍一下你自己"}]}'
LUA

run() {
  wrk -t 2 -c "$CONNS" -d "${SECONDS_PER_RUN}s" --latency -s "$WORK/post.lua" "$1" | tee "$WORK/$2.txt"
}
echo "== 直连模拟器（并发 $CONNS）"; run "http://127.0.0.1:$MOCK_PORT/v1/chat/completions" direct
echo "== 经过 ChatNexus（并发 $CONNS）"; run "http://127.0.0.1:$GATEWAY_PORT/v1/chat/completions" gateway
direct=$(awk '/Requests\/sec/ {print $2}' "$WORK/direct.txt")
gateway=$(awk '/Requests\/sec/ {print $2}' "$WORK/gateway.txt")
python3 -c "print(f'吞吐：直连 {float($direct):.0f} 次/秒，经网关 {float($gateway):.0f} 次/秒，比值 {float($gateway)/float($direct):.2f}')"
