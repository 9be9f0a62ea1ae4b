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
CLI_VERSION="2.1.332"
CLI_NAME="Claude Code"
NPM_PACKAGE="@anthropic-ai/claude-code"
CACHE="${CHATNEXUS_E2E_CACHE:-$HOME/.cache/chatnexus-e2e}"
NPM_PREFIX="$CACHE/npm"
AUTH_STYLE="${CHATNEXUS_CC_AUTH:-bearer}"
PROMPT="${CHATNEXUS_CC_PROMPT:-说一句你好}"
TIMEOUT_SECONDS="${CHATNEXUS_CC_TIMEOUT:-120}"

# shellcheck source=tests/e2e/cli_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/cli_common.sh"

check_arguments "$0" "$@"

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

version_matches() {
  "$1" --version 2> /dev/null | grep -qF "$CLI_VERSION"
}

CLAUDE_BIN=$(ensure_installed)

# 一次性的 HOME 与工作目录：不读真实的 ~/.claude.json 与设置，跑完即删
make_sandbox

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
run_in_sandbox env -i PATH="/usr/local/bin:/usr/bin:/bin" HOME="$SANDBOX/home" LANG=C.UTF-8 TERM=dumb \
  TMPDIR="$SANDBOX/tmp" CLAUDE_CODE_TMPDIR="$SANDBOX/tmp" \
  ANTHROPIC_BASE_URL="$CHATNEXUS_ROOT_URL" "$AUTH_ENV" \
  CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 DISABLE_AUTOUPDATER=1 DISABLE_TELEMETRY=1 \
  CLAUDE_CODE_DISABLE_NONSTREAMING_FALLBACK=1 CLAUDE_CODE_MAX_RETRIES=0 \
  timeout "$TIMEOUT_SECONDS" "$CLAUDE_BIN" -p "$PROMPT" --model "$MODEL"

check_answer
