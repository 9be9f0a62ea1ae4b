#!/usr/bin/env bash
# 端到端测试：用真实的 OpenAI Codex 命令行（npm 包 @openai/codex）以 `codex exec` 非交互模式访问网关的
# Responses 接口。全程离线：只访问 CHATNEXUS_ROOT_URL（应是 127.0.0.1 上的地址），不读写真实的用户配置。
#
# 用法：CHATNEXUS_ROOT_URL=http://127.0.0.1:端口 CHATNEXUS_API_KEY=客户端密钥 \
#         bash tests/e2e/codex.sh <模型名> <回答里应包含的字符串>
# 可选环境变量：
#   CHATNEXUS_E2E_CACHE      安装缓存目录，缺省 ~/.cache/chatnexus-e2e（多次运行复用，不进 git）
#   CHATNEXUS_CODEX_PROMPT   提示词，缺省「说一句你好」
#   CHATNEXUS_CODEX_TIMEOUT  单次运行的超时秒数，缺省 120
# 自测（不需要网关）：先起 tests/e2e/responses_stub.py，把 CHATNEXUS_ROOT_URL 指向它，
#   期望字符串用「桩服务器」。
# 注意：Codex 会真的执行模型要求的工具调用（这里限制在只读沙箱和一次性工作目录里），
#   所以给它的上游只应回纯文本。
set -euo pipefail

# 固定的 Codex 版本；升级时改这里，缓存里版本不符会重新安装
CLI_VERSION="0.171.0"
CLI_NAME="Codex"
NPM_PACKAGE="@openai/codex"
CACHE="${CHATNEXUS_E2E_CACHE:-$HOME/.cache/chatnexus-e2e}"
NPM_PREFIX="$CACHE/codex-npm"
PROMPT="${CHATNEXUS_CODEX_PROMPT:-说一句你好}"
TIMEOUT_SECONDS="${CHATNEXUS_CODEX_TIMEOUT:-120}"

# shellcheck source=tests/e2e/cli_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/cli_common.sh"

check_arguments "$0" "$@"
# 地址要原样写进 TOML 字符串，含引号、反斜杠或空白就会写坏配置
[[ "$CHATNEXUS_ROOT_URL" =~ ^https?://[^[:space:]\"\\]+$ ]] \
  || fail "CHATNEXUS_ROOT_URL 不是合法的 http(s) 地址：「$CHATNEXUS_ROOT_URL」"
BASE_URL="${CHATNEXUS_ROOT_URL%/}/v1"

# npm 包里的 bin/codex.js 只是个 Node 启动器，真正的程序是按平台拆出的可选依赖包里的
# 原生（musl 静态链接）二进制；直接用它，不依赖 Node 版本，也不依赖安装脚本。
platform_binary() {
  local cpu triple
  case "$(uname -m)" in
    x86_64 | amd64) cpu=x64 triple=x86_64-unknown-linux-musl ;;
    aarch64 | arm64) cpu=arm64 triple=aarch64-unknown-linux-musl ;;
    *) return 1 ;;
  esac
  local bin="$NPM_PREFIX/node_modules/@openai/codex-linux-$cpu/vendor/$triple/bin/codex"
  [ -x "$bin" ] || return 1
  echo "$bin"
}

version_matches() {
  "$1" --version 2> /dev/null | grep -qxF "codex-cli $CLI_VERSION"
}

# 连接被拒绝时 Codex 不受 request_max_retries 限制，会一直「Reconnecting... waiting for network」到超时
explain_timeout() {
  if grep -qF "waiting for network" "$SANDBOX/stderr.txt"; then
    fail "模型 $MODEL：Codex 连不上 $BASE_URL，等到 $TIMEOUT_SECONDS 秒超时"
  fi
}

CODEX_BIN=$(ensure_installed)

# 一次性的 HOME、CODEX_HOME 与工作目录：不读真实的 ~/.codex，跑完即删
make_sandbox
CODEX_HOME_DIR="$SANDBOX/home/.codex"
mkdir -p "$CODEX_HOME_DIR"

# 配置要点（--strict-config 保证这些键在当前版本都认得，拼错会直接报错）：
# - 自定义提供方 chatnexus，只支持 wire_api = "responses"；密钥从 env_key 指定的变量读，
#   以 Authorization: Bearer 发出，不需要 codex login。
# - request_max_retries / stream_max_retries = 0：出错立即失败，不做退避重试
#   （缺省会对流中断重连 5 次，网关的 SSE 出错也能蒙混过关）。
# - [analytics] enabled = false 是离线的关键：没有它会查 ab.chatgpt.com 并上报事件。
# - [features] plugins = false 同样关键：没有它启动时会 git ls-remote github.com、
#   请求 api.github.com 与 chatgpt.com 同步官方插件库。
# - 其余（更新检查、反馈、OpenTelemetry 导出）作双保险。
cat > "$CODEX_HOME_DIR/config.toml" << EOF
model_provider = "chatnexus"
approval_policy = "never"
sandbox_mode = "read-only"
check_for_update_on_startup = false

[model_providers.chatnexus]
name = "ChatNexus"
base_url = "$BASE_URL"
env_key = "CHATNEXUS_API_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0

[analytics]
enabled = false

[feedback]
enabled = false

[otel]
exporter = "none"
trace_exporter = "none"
metrics_exporter = "none"
log_user_prompt = false

[features]
plugins = false
EOF

# env -i 清空环境，避免继承调用者的 OPENAI_* / CODEX_* 等变量。
# --skip-git-repo-check：工作目录不是 git 仓库；--ephemeral：不写会话记录；
# --sandbox read-only：模型若要执行命令，只能读不能写、不能联网；
# 标准输出只有最后的回答，过程与错误在标准错误里。
run_in_sandbox env -i PATH="/usr/local/bin:/usr/bin:/bin" HOME="$SANDBOX/home" CODEX_HOME="$CODEX_HOME_DIR" \
  LANG=C.UTF-8 TERM=dumb NO_COLOR=1 TMPDIR="$SANDBOX/tmp" CHATNEXUS_API_KEY="$CHATNEXUS_API_KEY" \
  timeout "$TIMEOUT_SECONDS" "$CODEX_BIN" exec --strict-config --skip-git-repo-check --ephemeral \
  --sandbox read-only --color never -C "$SANDBOX/work" -m "$MODEL" "$PROMPT"

check_answer
