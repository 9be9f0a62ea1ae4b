#!/usr/bin/env bash
# 端到端测试：用官方 openai 与 anthropic Python SDK、真实的 Claude Code 与 Codex 访问真实运行的网关
# （内置模拟器作上游，只用 127.0.0.1）。
# 用法：bash tests/e2e/run.sh  （需要已构建的 debug 版 chatnexus：$CARGO_TARGET_DIR/debug/chatnexus，
#       没有设置 CARGO_TARGET_DIR 时为 target/debug/chatnexus）
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# 与 cargo 一致：CARGO_TARGET_DIR 是相对路径时相对于当前目录
TARGET_DIR=$(realpath -m "${CARGO_TARGET_DIR:-$ROOT/target}")
BIN="$TARGET_DIR/debug/chatnexus"
VENV="$ROOT/.venv"
KEY="sk-chatnexus-e2e"
# 只允许 demo 模型的密钥（403）与每分钟只允许 1 个请求的密钥（网关自己的 429）
RESTRICTED_KEY="sk-chatnexus-e2e-restricted"
LIMITED_KEY="sk-chatnexus-e2e-limited"
# Responses 测试专用的限流密钥：与上面的分开，免得同一分钟里别的测试先用掉额度
RESPONSES_LIMITED_KEY="sk-chatnexus-e2e-limited-responses"
# 请求体上限：足够其余测试使用，413 测试发一个更大的请求体
MAX_BODY_BYTES=1048576
WORK=$(mktemp -d)
# 要在退出时停止的进程：两个网关与几个带故障的独立模拟器
PIDS=()

cleanup() {
  # SIGINT 是网关的快速退出（写出日志后当场结束）；SIGTERM 会按 grace_period_seconds 优雅等待进行中的请求
  local pid
  for pid in ${PIDS[@]+"${PIDS[@]}"}; do kill -INT "$pid" 2> /dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

[ -x "$BIN" ] || { echo "找不到 $BIN，请先 cargo build --bin chatnexus"; exit 1; }

# free_ports、sha256_of、wait_http
# shellcheck source=../support/common.sh
source "$ROOT/tests/support/common.sh"

# 带故障的独立模拟器：以给定状态码应答每个请求（429 带 Retry-After）
start_fault_mock() {
  "$BIN" mock --listen "127.0.0.1:$1" --fault-status "$2" > "$WORK/mock-$2.log" 2>&1 &
  PIDS+=($!)
}

# 流中出错的独立模拟器：流式回复发出 N 个增量后按给定故障（error-after 在流中报错，drop-after 直接断开）结束
start_stream_fault_mock() {
  "$BIN" mock --listen "127.0.0.1:$1" "--$2" "$3" > "$WORK/mock-$2.log" 2>&1 &
  PIDS+=($!)
}

# 为 SDK 准备独立的虚拟环境
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check "openai>=1.40,<3" "anthropic>=2.14,<3"

read -r GATEWAY_PORT MOCK_PORT MOCK500_PORT MOCK529_PORT MOCK429_PORT DEAD_PORT CC_GATEWAY_PORT CC_MOCK_PORT \
  MOCK_ERROR_PORT MOCK_DROP_PORT < <(free_ports 10)
HASH=$(sha256_of "$KEY")
MOCK="http://127.0.0.1:$MOCK_PORT"
start_fault_mock "$MOCK500_PORT" 500
start_fault_mock "$MOCK529_PORT" 529
start_fault_mock "$MOCK429_PORT" 429
start_stream_fault_mock "$MOCK_ERROR_PORT" error-after 2
start_stream_fault_mock "$MOCK_DROP_PORT" drop-after 2

# 按运维的实际流程用命令行准备密钥：主密钥、加密的上游密钥、要求签名的客户端密钥
export CHATNEXUS_MASTER_KEY
CHATNEXUS_MASTER_KEY=$("$BIN" keys gen-master 2> /dev/null | sed 's/^CHATNEXUS_MASTER_KEY=//')
encrypted() { printf '%s' "mock-key-$1" | "$BIN" keys encrypt --provider "$1" 2> /dev/null; }
mapfile -t SIGNED < <("$BIN" keys gen-client --name e2e-signed --signing 2> /dev/null)
# 防重放用 tests/run.sh 准备好的 Redis；单独运行本脚本时缺省连本机 6379
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}

# 同一个内置模拟器按路径说四种协议（含 OpenAI Responses）；它不校验上游密钥的值，这里加密保存占位密钥。
# fail500-*、overloaded-claude、ratelimited-* 指向带故障的独立模拟器，streamerror-*、streamdrop-claude
# 指向流式回复中途报错或断开的独立模拟器；unavailable 的上游密钥
# 取自一个不存在的环境变量，该上游被停用，请求得到网关自己的 503“没有可用上游”。
unset CHATNEXUS_E2E_UNSET_KEY
cat > "$WORK/chatnexus.yaml" <<YAML
server: { listen: "127.0.0.1:$GATEWAY_PORT", max_body_bytes: $MAX_BODY_BYTES }
auth:
  keys:
    - { name: e2e, sha256: "$HASH" }
    - { name: e2e-restricted, sha256: "$(sha256_of "$RESTRICTED_KEY")", models: [demo] }
    - { name: e2e-limited, sha256: "$(sha256_of "$LIMITED_KEY")", limits: { requests: 1 } }
    - { name: e2e-limited-responses, sha256: "$(sha256_of "$RESPONSES_LIMITED_KEY")", limits: { requests: 1 } }
  ${SIGNED[2]}
redis: { url_env: REDIS_URL, key_prefix: "chatnexus-e2e-$$:" }
mock: { listen: "127.0.0.1:$MOCK_PORT", behavior: { chunks: 6, chunk_delay_ms: 5, cached_tokens: 2, reasoning_tokens: 1 } }
providers:
  - { name: mock, kind: openai_compatible, base_url: "$MOCK" }
  - { name: oai, kind: openai, base_url: "$MOCK", $(encrypted oai) }
  - { name: claude, kind: anthropic, base_url: "$MOCK", $(encrypted claude) }
  - { name: gem, kind: gemini, base_url: "$MOCK", $(encrypted gem) }
  - { name: az, kind: azure, base_url: "$MOCK", $(encrypted az), api_version: "2024-10-21" }
  - { name: fail500-compat, kind: openai_compatible, base_url: "http://127.0.0.1:$MOCK500_PORT" }
  - { name: fail500-claude, kind: anthropic, base_url: "http://127.0.0.1:$MOCK500_PORT", $(encrypted fail500-claude) }
  - { name: overloaded-claude, kind: anthropic, base_url: "http://127.0.0.1:$MOCK529_PORT", $(encrypted overloaded-claude) }
  - { name: ratelimited-compat, kind: openai_compatible, base_url: "http://127.0.0.1:$MOCK429_PORT" }
  - { name: fail500-gpt, kind: openai, base_url: "http://127.0.0.1:$MOCK500_PORT", $(encrypted fail500-gpt) }
  - { name: ratelimited-gpt, kind: openai, base_url: "http://127.0.0.1:$MOCK429_PORT", $(encrypted ratelimited-gpt) }
  - { name: streamerror-compat, kind: openai_compatible, base_url: "http://127.0.0.1:$MOCK_ERROR_PORT" }
  - { name: streamerror-gpt, kind: openai, base_url: "http://127.0.0.1:$MOCK_ERROR_PORT", $(encrypted streamerror-gpt) }
  - { name: streamdrop-claude, kind: anthropic, base_url: "http://127.0.0.1:$MOCK_DROP_PORT", $(encrypted streamdrop-claude) }
  - { name: unavailable, kind: anthropic, base_url: "http://127.0.0.1:$DEAD_PORT", api_key_env: CHATNEXUS_E2E_UNSET_KEY }
models:
  - { name: demo, targets: [ { provider: mock } ] }
  - { name: gpt, targets: [ { provider: oai, model: gpt-4o-mini } ] }
  - { name: claude, targets: [ { provider: claude, model: claude-sonnet-4-5, max_tokens: 1024 } ] }
  - { name: gemini, targets: [ { provider: gem, model: gemini-2.5-flash } ] }
  - { name: azure, targets: [ { provider: az, deployment: gpt-4o-prod } ] }
  - { name: fail500-compat, targets: [ { provider: fail500-compat } ] }
  - { name: fail500-claude, targets: [ { provider: fail500-claude, model: claude-sonnet-4-5 } ] }
  - { name: overloaded-claude, targets: [ { provider: overloaded-claude, model: claude-sonnet-4-5 } ] }
  - { name: ratelimited-compat, targets: [ { provider: ratelimited-compat } ] }
  - { name: fail500-gpt, targets: [ { provider: fail500-gpt, model: gpt-4o-mini } ] }
  - { name: ratelimited-gpt, targets: [ { provider: ratelimited-gpt, model: gpt-4o-mini } ] }
  - { name: streamerror-compat, targets: [ { provider: streamerror-compat } ] }
  - { name: streamerror-gpt, targets: [ { provider: streamerror-gpt, model: gpt-4o-mini } ] }
  - { name: streamdrop-claude, targets: [ { provider: streamdrop-claude, model: claude-sonnet-4-5, max_tokens: 1024 } ] }
  - { name: unavailable, targets: [ { provider: unavailable, model: claude-sonnet-4-5 } ] }
  - { name: emb-compat, targets: [ { provider: mock } ], kind: embeddings }
  - { name: emb-gpt, targets: [ { provider: oai, model: text-embedding-3-small } ], kind: embeddings }
  - { name: emb-azure, targets: [ { provider: az, deployment: emb-prod } ], kind: embeddings }
  - { name: emb-gemini, targets: [ { provider: gem, model: text-embedding-004 } ], kind: embeddings }
  - { name: emb-ratelimited, targets: [ { provider: ratelimited-compat } ], kind: embeddings }
YAML
# 客户端用主密钥看到的全部模型（两个 SDK 的模型列表测试与之比对）
CHATNEXUS_MODEL_NAMES=$(sed -n 's/^  - { name: \([^,]*\), targets:.*/\1/p' "$WORK/chatnexus.yaml" | paste -sd,)
export CHATNEXUS_MODEL_NAMES

chmod 600 "$WORK/chatnexus.yaml"
"$BIN" -t -c "$WORK/chatnexus.yaml"
# TRACE 级日志：Pingora 会打印整个上游请求头，用来验证日志脱敏
RUST_LOG=trace "$BIN" -c "$WORK/chatnexus.yaml" > "$WORK/gateway.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do
  if curl -sf "http://127.0.0.1:$GATEWAY_PORT/health" > /dev/null; then break; fi
  sleep 0.1
done
for port in "$MOCK500_PORT" "$MOCK529_PORT" "$MOCK429_PORT" "$MOCK_ERROR_PORT" "$MOCK_DROP_PORT"; do wait_http "http://127.0.0.1:$port/"; done

export CHATNEXUS_SIGNED_KEY="${SIGNED[0]}" CHATNEXUS_SIGNING_SECRET="${SIGNED[1]}"
CHATNEXUS_BASE_URL="http://127.0.0.1:$GATEWAY_PORT/v1" CHATNEXUS_API_KEY="$KEY" \
  "$VENV/bin/python" "$ROOT/tests/e2e/test_openai_sdk.py" || { cat "$WORK/gateway.log"; exit 1; }
CHATNEXUS_BASE_URL="http://127.0.0.1:$GATEWAY_PORT/v1" CHATNEXUS_API_KEY="$KEY" \
  "$VENV/bin/python" "$ROOT/tests/e2e/test_openai_embeddings.py" || { tail -n 400 "$WORK/gateway.log"; exit 1; }
CHATNEXUS_ROOT_URL="http://127.0.0.1:$GATEWAY_PORT" CHATNEXUS_API_KEY="$KEY" \
  "$VENV/bin/python" "$ROOT/tests/e2e/test_anthropic_sdk.py" || { cat "$WORK/gateway.log"; exit 1; }
CHATNEXUS_ROOT_URL="http://127.0.0.1:$GATEWAY_PORT" CHATNEXUS_API_KEY="$KEY" \
  CHATNEXUS_RESTRICTED_KEY="$RESTRICTED_KEY" CHATNEXUS_LIMITED_KEY="$LIMITED_KEY" \
  CHATNEXUS_MAX_BODY_BYTES="$MAX_BODY_BYTES" \
  "$VENV/bin/python" "$ROOT/tests/e2e/test_anthropic_messages.py" || { tail -n 400 "$WORK/gateway.log"; exit 1; }
CHATNEXUS_BASE_URL="http://127.0.0.1:$GATEWAY_PORT/v1" CHATNEXUS_API_KEY="$KEY" \
  CHATNEXUS_RESTRICTED_KEY="$RESTRICTED_KEY" CHATNEXUS_RESPONSES_LIMITED_KEY="$RESPONSES_LIMITED_KEY" \
  CHATNEXUS_MAX_BODY_BYTES="$MAX_BODY_BYTES" \
  "$VENV/bin/python" "$ROOT/tests/e2e/test_openai_responses.py" || { tail -n 400 "$WORK/gateway.log"; exit 1; }

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

# —— Claude Code 与 Codex ——
# 两个命令行都会真的执行模型调用的工具，所以它们连第二个网关：其模拟器 call_tools: false，总是回复文本。
# 一个 Anthropic 目标、一个 OpenAI 兼容目标（对 Messages 经枢纽翻译）与一个 OpenAI 目标（对 Responses
# 透传；base_url 按 OpenAI SDK 的习惯带 /v1），都指向这个模拟器。
if ! command -v npm > /dev/null; then
  echo "没有 npm，尝试用 apt-get 安装 nodejs 与 npm（需要联网）"
  { apt-get update -qq && apt-get install -y -qq nodejs npm; } > "$WORK/apt.log" 2>&1 \
    || { cat "$WORK/apt.log"; echo "安装 npm 失败，无法运行 Claude Code 与 Codex 端到端测试"; exit 1; }
fi
cat > "$WORK/claude-code.yaml" <<YAML
server: { listen: "127.0.0.1:$CC_GATEWAY_PORT" }
auth:
  keys:
    - { name: e2e, sha256: "$HASH" }
mock: { listen: "127.0.0.1:$CC_MOCK_PORT", behavior: { chunks: 6, call_tools: false } }
providers:
  - { name: mock, kind: openai_compatible, base_url: "http://127.0.0.1:$CC_MOCK_PORT" }
  - { name: claude, kind: anthropic, base_url: "http://127.0.0.1:$CC_MOCK_PORT", $(encrypted claude) }
  - { name: oai, kind: openai, base_url: "http://127.0.0.1:$CC_MOCK_PORT/v1", $(encrypted oai) }
models:
  - { name: demo, targets: [ { provider: mock } ] }
  - { name: claude, targets: [ { provider: claude, model: claude-sonnet-4-5, max_tokens: 1024 } ] }
  - { name: gpt, targets: [ { provider: oai, model: gpt-4o-mini } ] }
YAML
chmod 600 "$WORK/claude-code.yaml"
"$BIN" -t -c "$WORK/claude-code.yaml"
"$BIN" -c "$WORK/claude-code.yaml" > "$WORK/claude-code-gateway.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do
  if curl -sf "http://127.0.0.1:$CC_GATEWAY_PORT/health" > /dev/null; then break; fi
  sleep 0.1
done

# 期望字符串是模拟器缺省回复的一部分。三次运行：Anthropic 目标与 OpenAI 兼容目标（Bearer），再用 x-api-key 头
cc_run() {
  CHATNEXUS_ROOT_URL="http://127.0.0.1:$CC_GATEWAY_PORT" CHATNEXUS_API_KEY="$KEY" CHATNEXUS_CC_AUTH="$1" \
    bash "$ROOT/tests/e2e/claude_code.sh" "$2" "模拟上游" \
    || { echo "Claude Code（模型 $2，鉴权 $1）失败"; cat "$WORK/claude-code-gateway.log"; exit 1; }
}
cc_run bearer claude
cc_run bearer demo
cc_run x-api-key claude
echo "Claude Code 端到端：3 次运行全部通过"

# Codex 用 Responses 接口：OpenAI 目标（透传）与 Anthropic 目标（经枢纽翻译），期望字符串同上
codex_run() {
  CHATNEXUS_ROOT_URL="http://127.0.0.1:$CC_GATEWAY_PORT" CHATNEXUS_API_KEY="$KEY" \
    bash "$ROOT/tests/e2e/codex.sh" "$1" "模拟上游" \
    || { echo "Codex（模型 $1）失败"; cat "$WORK/claude-code-gateway.log"; exit 1; }
}
codex_run gpt
codex_run claude
echo "Codex 端到端：2 次运行全部通过"
# tests/run.sh 的汇总只数 Python unittest 的「Ran N tests」行；三次 Claude Code 与两次 Codex 运行都通过
# 才走到这里，按同样的格式报告，让它们计入通过总数（任何一次失败时上面已经退出，不会打印这一行）
echo "Ran 5 tests"
