#!/usr/bin/env bash
# 端到端测试：用官方 openai 与 anthropic Python SDK 访问真实运行的网关（内置模拟器作上游，只用 127.0.0.1）。
# 用法：bash tests/e2e/run.sh  （需要已构建的 target/debug/chatnexus）
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN="$ROOT/target/debug/chatnexus"
VENV="$ROOT/.venv"
KEY="sk-chatnexus-e2e"
WORK=$(mktemp -d)
GATEWAY_PID=""

cleanup() {
  # SIGINT 是 Pingora 的快速退出；SIGTERM 会按 grace_period_seconds 优雅等待好几分钟
  if [ -n "$GATEWAY_PID" ]; then kill -INT "$GATEWAY_PID" 2>/dev/null || true; fi
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
"$VENV/bin/pip" install --quiet --disable-pip-version-check "openai>=1.40,<3" "anthropic>=2.14,<3"

read -r GATEWAY_PORT MOCK_PORT < <(free_ports)
HASH=$(printf '%s' "$KEY" | sha256sum | cut -d' ' -f1)
MOCK="http://127.0.0.1:$MOCK_PORT"

# 按运维的实际流程用命令行准备密钥：主密钥、加密的上游密钥、要求签名的客户端密钥
export CHATNEXUS_MASTER_KEY
CHATNEXUS_MASTER_KEY=$("$BIN" keys gen-master 2> /dev/null | sed 's/^CHATNEXUS_MASTER_KEY=//')
encrypted() { printf '%s' "mock-key-$1" | "$BIN" keys encrypt --provider "$1" 2> /dev/null; }
mapfile -t SIGNED < <("$BIN" keys gen-client --name e2e-signed --signing 2> /dev/null)
# 防重放用 tests/run.sh 准备好的 Redis；单独运行本脚本时缺省连本机 6379
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}

# 同一个内置模拟器按路径说四种协议；它不校验上游密钥的值，这里加密保存占位密钥
cat > "$WORK/chatnexus.yaml" <<YAML
server: { listen: "127.0.0.1:$GATEWAY_PORT" }
auth:
  keys:
    - { name: e2e, sha256: "$HASH" }
  ${SIGNED[2]}
redis: { url_env: REDIS_URL, key_prefix: "chatnexus-e2e-$$:" }
mock: { listen: "127.0.0.1:$MOCK_PORT", behavior: { chunks: 6, chunk_delay_ms: 5, cached_tokens: 2, reasoning_tokens: 1 } }
providers:
  - { name: mock, kind: openai_compatible, base_url: "$MOCK" }
  - { name: claude, kind: anthropic, base_url: "$MOCK", $(encrypted claude) }
  - { name: gem, kind: gemini, base_url: "$MOCK", $(encrypted gem) }
  - { name: az, kind: azure, base_url: "$MOCK", $(encrypted az), api_version: "2024-10-21" }
models:
  - { name: demo, targets: [ { provider: mock } ] }
  - { name: claude, targets: [ { provider: claude, model: claude-sonnet-4-5, max_tokens: 1024 } ] }
  - { name: gemini, targets: [ { provider: gem, model: gemini-2.5-flash } ] }
  - { name: azure, targets: [ { provider: az, deployment: gpt-4o-prod } ] }
YAML

"$BIN" -t -c "$WORK/chatnexus.yaml"
# TRACE 级日志：Pingora 会打印整个上游请求头，用来验证日志脱敏
RUST_LOG=trace "$BIN" -c "$WORK/chatnexus.yaml" > "$WORK/gateway.log" 2>&1 &
GATEWAY_PID=$!
for _ in $(seq 1 100); do
  if curl -sf "http://127.0.0.1:$GATEWAY_PORT/health" > /dev/null; then break; fi
  sleep 0.1
done

export CHATNEXUS_SIGNED_KEY="${SIGNED[0]}" CHATNEXUS_SIGNING_SECRET="${SIGNED[1]}"
CHATNEXUS_BASE_URL="http://127.0.0.1:$GATEWAY_PORT/v1" CHATNEXUS_API_KEY="$KEY" \
  "$VENV/bin/python" "$ROOT/tests/e2e/test_openai_sdk.py" || { cat "$WORK/gateway.log"; exit 1; }
CHATNEXUS_ROOT_URL="http://127.0.0.1:$GATEWAY_PORT" CHATNEXUS_API_KEY="$KEY" \
  "$VENV/bin/python" "$ROOT/tests/e2e/test_anthropic_sdk.py" || { cat "$WORK/gateway.log"; exit 1; }

# docs/security.md 里的两个客户端示例原样运行一遍，保证文档可用
CHATNEXUS_BASE_URL="http://127.0.0.1:$GATEWAY_PORT" CHATNEXUS_API_KEY="$CHATNEXUS_SIGNED_KEY" \
  bash "$ROOT/docs/examples/signed_request.sh" | grep -q '模拟上游' \
  || { echo "shell 签名示例失败"; cat "$WORK/gateway.log"; exit 1; }
CHATNEXUS_BASE_URL="http://127.0.0.1:$GATEWAY_PORT" CHATNEXUS_API_KEY="$CHATNEXUS_SIGNED_KEY" \
  python3 "$ROOT/docs/examples/signed_client.py" | grep -q '模拟上游' \
  || { echo "Python 签名示例失败"; cat "$WORK/gateway.log"; exit 1; }
echo "签名示例（shell、Python）通过"

# 网关日志（含 TRACE）里不能出现任何密钥明文；TRACE 打印的上游请求头必须已被脱敏
grep -q 'authorization: \[已隐藏\]\|x-api-key: \[已隐藏\]' "$WORK/gateway.log" \
  || { echo "没有找到被脱敏的 TRACE 请求头，日志检查不成立"; exit 1; }
if grep -F -e "mock-key-" -e "${SIGNED[0]}" -e "${SIGNED[1]}" -e "$CHATNEXUS_MASTER_KEY" "$WORK/gateway.log"; then
  echo "网关日志泄露了密钥"
  exit 1
fi
