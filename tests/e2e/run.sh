#!/usr/bin/env bash
# 端到端测试：用官方 openai Python SDK 访问真实运行的网关（内置模拟器作上游，只用 127.0.0.1）。
# 用法：bash tests/e2e/run.sh  （需要已构建的 target/debug/chatnexus）
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN="$ROOT/target/debug/chatnexus"
VENV="$ROOT/.venv"
KEY="sk-chatnexus-e2e"
WORK=$(mktemp -d)
GATEWAY_PID=""

cleanup() {
  if [ -n "$GATEWAY_PID" ]; then kill "$GATEWAY_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# 同时持有两个监听再一起释放，保证两个端口互不相同
free_ports() {
  python3 -c 'import socket; ss=[socket.socket() for _ in range(2)]; [s.bind(("127.0.0.1", 0)) for s in ss]; print(*[s.getsockname()[1] for s in ss])'
}

# 为 SDK 准备独立的虚拟环境
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check "openai>=1.40,<3"

read -r GATEWAY_PORT MOCK_PORT < <(free_ports)
HASH=$(printf '%s' "$KEY" | sha256sum | cut -d' ' -f1)
MOCK="http://127.0.0.1:$MOCK_PORT"
# 同一个内置模拟器按路径说四种协议；它不校验上游密钥的值，这里用明文占位
cat > "$WORK/chatnexus.yaml" <<YAML
server: { listen: "127.0.0.1:$GATEWAY_PORT" }
auth: { keys: [ { name: e2e, sha256: "$HASH" } ] }
mock: { listen: "127.0.0.1:$MOCK_PORT", behavior: { chunks: 6, chunk_delay_ms: 5, cached_tokens: 2, reasoning_tokens: 1 } }
providers:
  - { name: mock, kind: openai_compatible, base_url: "$MOCK" }
  - { name: claude, kind: anthropic, base_url: "$MOCK", api_key: "mock-key" }
  - { name: gem, kind: gemini, base_url: "$MOCK", api_key: "mock-key" }
  - { name: az, kind: azure, base_url: "$MOCK", api_key: "mock-key", api_version: "2024-10-21" }
models:
  - { name: demo, targets: [ { provider: mock } ] }
  - { name: claude, targets: [ { provider: claude, model: claude-sonnet-4-5, max_tokens: 1024 } ] }
  - { name: gemini, targets: [ { provider: gem, model: gemini-2.5-flash } ] }
  - { name: azure, targets: [ { provider: az, deployment: gpt-4o-prod } ] }
YAML

"$BIN" -t -c "$WORK/chatnexus.yaml"
"$BIN" -c "$WORK/chatnexus.yaml" > "$WORK/gateway.log" 2>&1 &
GATEWAY_PID=$!
for _ in $(seq 1 100); do
  if curl -sf "http://127.0.0.1:$GATEWAY_PORT/health" > /dev/null; then break; fi
  sleep 0.1
done

CHATNEXUS_BASE_URL="http://127.0.0.1:$GATEWAY_PORT/v1" CHATNEXUS_API_KEY="$KEY" \
  "$VENV/bin/python" "$ROOT/tests/e2e/test_openai_sdk.py" || { cat "$WORK/gateway.log"; exit 1; }
