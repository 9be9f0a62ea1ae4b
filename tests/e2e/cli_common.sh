# 端到端测试公用：claude_code.sh 与 codex.sh 共用的安装、运行与校验逻辑（用 source 引入，不单独运行）。
#
# 引入前调用方须设置：
#   CLI_NAME     命令行的名字（出现在各种提示里），如「Claude Code」
#   CLI_VERSION  固定的版本
#   NPM_PACKAGE  npm 包名（不带版本）
#   NPM_PREFIX   安装目录；CACHE 为缓存目录（npm 缓存放在它下面）
#   TIMEOUT_SECONDS  单次运行的超时秒数
# 并定义函数：
#   platform_binary      打印本平台原生二进制的路径，找不到时返回非零
#   version_matches BIN  BIN 的版本是 CLI_VERSION 时返回零
# 可选定义 explain_timeout：超时时先调用它（可以给出更具体的失败原因）。

fail() {
  echo "$CLI_NAME 端到端测试失败：$*" >&2
  exit 1
}

# 检查参数与必需的环境变量，设置 MODEL 与 EXPECTED。
# 用法：check_arguments "$0" "$@"
check_arguments() {
  local script="$1"
  shift
  [ $# -eq 2 ] || fail "用法：$script <模型名> <回答里应包含的字符串>"
  MODEL="$1"
  EXPECTED="$2"
  [ -n "${CHATNEXUS_ROOT_URL:-}" ] || fail "没有设置 CHATNEXUS_ROOT_URL（网关根地址，不带 /v1）"
  [ -n "${CHATNEXUS_API_KEY:-}" ] || fail "没有设置 CHATNEXUS_API_KEY（客户端密钥）"
}

# 缓存里已有固定版本就直接用，否则用 npm 安装（npm 缓存也放在缓存目录下）；打印二进制的路径
ensure_installed() {
  local bin
  if bin=$(platform_binary) && version_matches "$bin"; then
    echo "$bin"
    return 0
  fi
  command -v npm > /dev/null || fail "找不到 npm，无法安装 $CLI_NAME"
  mkdir -p "$NPM_PREFIX"
  # 包可能声明要求较新的 Node，但只用它的原生二进制，Node 版本无关，所以关掉 engine-strict
  echo "安装 $CLI_NAME $CLI_VERSION 到 $NPM_PREFIX ……" >&2
  npm install --prefix "$NPM_PREFIX" --cache "$CACHE/npm-cache" --ignore-scripts \
    --engine-strict=false --no-audit --no-fund --loglevel=error \
    "$NPM_PACKAGE@$CLI_VERSION" >&2 \
    || fail "npm 安装 $NPM_PACKAGE@$CLI_VERSION 失败"
  bin=$(platform_binary) || fail "安装后找不到本平台（$(uname -m)）的 $CLI_NAME 二进制"
  version_matches "$bin" || fail "安装的 $CLI_NAME 版本不是 $CLI_VERSION"
  echo "$bin"
}

# 一次性的沙箱目录（SANDBOX，含 work 与 tmp 子目录）：不读写真实的用户配置，脚本退出时删除
make_sandbox() {
  SANDBOX=$(mktemp -d)
  trap 'rm -rf "$SANDBOX"' EXIT
  mkdir -p "$SANDBOX/home" "$SANDBOX/work" "$SANDBOX/tmp"
}

# 在沙箱的工作目录里运行给出的命令（标准输入为空），标准输出与标准错误分别存到沙箱里；
# 退出码存进 STATUS，回答（标准输出）存进 ANSWER
run_in_sandbox() {
  set +e
  (
    cd "$SANDBOX/work"
    "$@" > "$SANDBOX/answer.txt" 2> "$SANDBOX/stderr.txt" < /dev/null
  )
  STATUS=$?
  set -e
  ANSWER=$(cat "$SANDBOX/answer.txt")
}

show_output() {
  echo "—— 标准输出 ——" >&2
  cat "$SANDBOX/answer.txt" >&2
  echo "—— 标准错误 ——" >&2
  cat "$SANDBOX/stderr.txt" >&2
}

# 校验运行结果：按时结束、退出码为 0、回答非空且含 EXPECTED；通过时打印回答
check_answer() {
  if [ "$STATUS" -eq 124 ]; then
    show_output
    if declare -F explain_timeout > /dev/null; then
      explain_timeout
    fi
    fail "模型 $MODEL：$CLI_NAME 在 $TIMEOUT_SECONDS 秒内没有结束"
  fi
  if [ "$STATUS" -ne 0 ]; then
    show_output
    fail "模型 $MODEL：$CLI_NAME 退出码 $STATUS"
  fi
  # 收不全事件时命令行可能退出码为 0 却什么也不打印（Claude Code 缺事件、Codex 缺
  # response.output_item.done 时都是这样），所以单独检查非空
  if [ -z "${ANSWER//[[:space:]]/}" ]; then
    show_output
    fail "模型 $MODEL：$CLI_NAME 的回答是空的"
  fi
  if [[ "$ANSWER" != *"$EXPECTED"* ]]; then
    show_output
    fail "模型 $MODEL：回答里没有期望的「$EXPECTED」"
  fi
  echo "$CLI_NAME（模型 $MODEL）回答：$ANSWER"
}
