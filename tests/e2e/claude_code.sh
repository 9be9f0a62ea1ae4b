#!/usr/bin/env bash
# 端到端测试：用真实的 Claude Code 命令行（npm 包 @anthropic-ai/claude-code）以打印模式访问网关。
# 全程离线：只访问 CHATNEXUS_ROOT_URL（应是 127.0.0.1 上的地址），不读写真实的用户配置。
#
# 用法：CHATNEXUS_ROOT_URL=http://127.0.0.1:端口 CHATNEXUS_API_KEY=客户端密钥 \
#         bash tests/e2e/claude_code.sh <模型名> <回答里应包含的字符串>
# 可选环境变量：
#   CHATNEXUS_E2E_CACHE   安装缓存目录，缺省 ~/.cache/chatnexus-e2e（多次运行复用，不进 git）
#   CHATNEXUS_CC_AUTH     bearer（缺省，发 Authorization: Bearer）或 x-api-key（发 x-api-key 头）
#   CHATNEXUS_CC_PROMPT   提示词，缺省「说一句你好」
#   CHATNEXUS_CC_TIMEOUT  单次运行的超时秒数，缺省 120
# 自测（不需要网关）：先起 tests/e2e/anthropic_stub.py，把 CHATNEXUS_ROOT_URL 指向它，
#   期望字符串用「桩服务器」。
set -euo pipefail

# 固定的 Claude Code 版本；升级时改这里，缓存里版本不符会重新安装
CLAUDE_CODE_VERSION="2.1.332"
CACHE="${CHATNEXUS_E2E_CACHE:-$HOME/.cache/chatnexus-e2e}"
NPM_PREFIX="$CACHE/npm"
AUTH_STYLE="${CHATNEXUS_CC_AUTH:-bearer}"
PROMPT="${CHATNEXUS_CC_PROMPT:-说一句你好}"
TIMEOUT_SECONDS="${CHATNEXUS_CC_TIMEOUT:-120}"

fail() {
  echo "Claude Code 端到端测试失败：$*" >&2
  exit 1
}

[ $# -eq 2 ] || fail "用法：$0 <模型名> <回答里应包含的字符串>"
MODEL="$1"
EXPECTED="$2"
[ -n "${CHATNEXUS_ROOT_URL:-}" ] || fail "没有设置 CHATNEXUS_ROOT_URL（网关根地址，不带 /v1）"
[ -n "${CHATNEXUS_API_KEY:-}" ] || fail "没有设置 CHATNEXUS_API_KEY（客户端密钥）"

# npm 包里真正的程序是按平台拆出的可选依赖包里的原生二进制；直接用它，
# 不依赖 postinstall 脚本（新版 npm 可能默认不跑安装脚本），运行时也不需要 Node。
platform_binary() {
  local cpu
  case "$(uname -m)" in
    x86_64 | amd64) cpu=x64 ;;
    aarch64 | arm64) cpu=arm64 ;;
    *) return 1 ;;
  esac
  local dir
  for dir in "claude-code-linux-$cpu" "claude-code-linux-$cpu-musl"; do
    local bin="$NPM_PREFIX/node_modules/@anthropic-ai/$dir/claude"
    if [ -x "$bin" ]; then
      echo "$bin"
      return 0
    fi
  done
  return 1
}

# 缓存里已有固定版本就直接用，否则用 npm 安装（npm 缓存也放在缓存目录下）
ensure_installed() {
  local bin
  if bin=$(platform_binary) && "$bin" --version 2> /dev/null | grep -qF "$CLAUDE_CODE_VERSION"; then
    echo "$bin"
    return 0
  fi
  command -v npm > /dev/null || fail "找不到 npm，无法安装 Claude Code"
  mkdir -p "$NPM_PREFIX"
  # 包声明要求 Node 22+，但只用它的原生二进制，Node 版本无关，所以关掉 engine-strict
  echo "安装 Claude Code $CLAUDE_CODE_VERSION 到 $NPM_PREFIX ……" >&2
  npm install --prefix "$NPM_PREFIX" --cache "$CACHE/npm-cache" --ignore-scripts \
    --engine-strict=false --no-audit --no-fund --loglevel=error \
    "@anthropic-ai/claude-code@$CLAUDE_CODE_VERSION" >&2 \
    || fail "npm 安装 @anthropic-ai/claude-code@$CLAUDE_CODE_VERSION 失败"
  bin=$(platform_binary) || fail "安装后找不到本平台（$(uname -m)）的 Claude Code 二进制"
  "$bin" --version 2> /dev/null | grep -qF "$CLAUDE_CODE_VERSION" \
    || fail "安装的 Claude Code 版本不是 $CLAUDE_CODE_VERSION"
  echo "$bin"
}

CLAUDE_BIN=$(ensure_installed)

# 一次性的 HOME 与工作目录：不读真实的 ~/.claude.json 与设置，跑完即删
SANDBOX=$(mktemp -d)
trap 'rm -rf "$SANDBOX"' EXIT
mkdir -p "$SANDBOX/home" "$SANDBOX/work" "$SANDBOX/tmp"

case "$AUTH_STYLE" in
  # ANTHROPIC_AUTH_TOKEN 发 Bearer 头；打印模式下两种方式都不需要交互确认密钥
  bearer) AUTH_ENV="ANTHROPIC_AUTH_TOKEN=$CHATNEXUS_API_KEY" ;;
  x-api-key) AUTH_ENV="ANTHROPIC_API_KEY=$CHATNEXUS_API_KEY" ;;
  *) fail "CHATNEXUS_CC_AUTH 只能是 bearer 或 x-api-key，现在是「$AUTH_STYLE」" ;;
esac

# env -i 清空环境，避免继承调用者的 ANTHROPIC_* 等变量。
# CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 是离线的关键：没有它会查外部域名的 DNS，
#   还会先发 HEAD /api/hello 探测；另外两个关闭自动更新与遥测，作双保险。
# CLAUDE_CODE_DISABLE_NONSTREAMING_FALLBACK=1：流式回答格式不对时不偷偷改用非流式重试，
#   否则网关的 SSE 出错也能蒙混过关。
# CLAUDE_CODE_MAX_RETRIES=0：出错立即失败，不做退避重试。
set +e
(
  cd "$SANDBOX/work"
  env -i PATH="/usr/local/bin:/usr/bin:/bin" HOME="$SANDBOX/home" LANG=C.UTF-8 TERM=dumb \
    TMPDIR="$SANDBOX/tmp" CLAUDE_CODE_TMPDIR="$SANDBOX/tmp" \
    ANTHROPIC_BASE_URL="$CHATNEXUS_ROOT_URL" "$AUTH_ENV" \
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 DISABLE_AUTOUPDATER=1 DISABLE_TELEMETRY=1 \
    CLAUDE_CODE_DISABLE_NONSTREAMING_FALLBACK=1 CLAUDE_CODE_MAX_RETRIES=0 \
    timeout "$TIMEOUT_SECONDS" "$CLAUDE_BIN" -p "$PROMPT" --model "$MODEL" \
    > "$SANDBOX/answer.txt" 2> "$SANDBOX/stderr.txt" < /dev/null
)
STATUS=$?
set -e

ANSWER=$(cat "$SANDBOX/answer.txt")
show_output() {
  echo "—— 标准输出 ——" >&2
  cat "$SANDBOX/answer.txt" >&2
  echo "—— 标准错误 ——" >&2
  cat "$SANDBOX/stderr.txt" >&2
}

if [ "$STATUS" -eq 124 ]; then
  show_output
  fail "模型 $MODEL：Claude Code 在 $TIMEOUT_SECONDS 秒内没有结束"
fi
if [ "$STATUS" -ne 0 ]; then
  show_output
  fail "模型 $MODEL：Claude Code 退出码 $STATUS"
fi
# Claude Code 收不全事件时可能退出码为 0 却什么也不打印，所以单独检查非空
if [ -z "${ANSWER//[[:space:]]/}" ]; then
  show_output
  fail "模型 $MODEL：Claude Code 的回答是空的"
fi
if [[ "$ANSWER" != *"$EXPECTED"* ]]; then
  show_output
  fail "模型 $MODEL：回答里没有期望的「$EXPECTED」"
fi
echo "Claude Code（模型 $MODEL）回答：$ANSWER"
