#!/usr/bin/env bash
# 管理页面的浏览器测试：真实的网关进程（内置模拟器作上游、本机 Redis 存虚拟密钥），
# Debian 的无头 chromium 经 chromedriver（selenium）打开管理页面，登录、用表单创建密钥、看到它的花费、停用它，
# 截图保存到 target/admin-page.png。只使用 127.0.0.1。
# 用法：bash tests/admin_page/run.sh （需要已构建的 debug 版 chatnexus）
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TARGET_DIR=$(realpath -m "${CARGO_TARGET_DIR:-$ROOT/target}")
BIN="$TARGET_DIR/debug/chatnexus"
VENV="$ROOT/.venv"
TOKEN="admin-page-token-$$"
REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
WORK=$(mktemp -d)
PIDS=()

cleanup() {
  local pid
  for pid in ${PIDS[@]+"${PIDS[@]}"}; do kill -INT "$pid" 2> /dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

[ -x "$BIN" ] || { echo "找不到 $BIN，请先 cargo build --bin chatnexus"; exit 1; }

# Debian 的 chromium、chromedriver 与中文字体（截图里的中文要能看清；没有时安装）
if ! command -v chromium > /dev/null || ! command -v chromedriver > /dev/null || [ -z "$(fc-list :lang=zh 2> /dev/null)" ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver fonts-wqy-zenhei
fi
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check "selenium>=4.20,<5"

# shellcheck source=../support/common.sh
source "$ROOT/tests/support/common.sh"
read -r GATEWAY_PORT ADMIN_PORT MOCK_PORT < <(free_ports 3)
TOKEN_SHA=$(sha256_of "$TOKEN")
cat > "$WORK/chatnexus.yaml" << YAML
server:
  listen: "127.0.0.1:$GATEWAY_PORT"
  admin_listen: "127.0.0.1:$ADMIN_PORT"
  pid_file: "$WORK/gateway.pid"
  upgrade_sock: "$WORK/upgrade.sock"
admin: { token_sha256: "$TOKEN_SHA" }
auth: { keys: [ { name: bootstrap, sha256: "$TOKEN_SHA" } ] }
redis: { url: "$REDIS_URL", key_prefix: "chatnexus-admin-page-$$:" }
mock: { listen: "127.0.0.1:$MOCK_PORT" }
providers: [ { name: mock, kind: openai_compatible, base_url: "http://127.0.0.1:$MOCK_PORT/v1" } ]
models: [ { name: demo, targets: [ { provider: mock } ] } ]
pricing: [ { model: demo, input: 1000, output: 1000 } ]
YAML
chmod 600 "$WORK/chatnexus.yaml"
"$BIN" -c "$WORK/chatnexus.yaml" > "$WORK/gateway.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$ADMIN_PORT/admin"

ADMIN_URL="http://127.0.0.1:$ADMIN_PORT" GATEWAY_URL="http://127.0.0.1:$GATEWAY_PORT" \
  ADMIN_TOKEN="$TOKEN" SCREENSHOT="$TARGET_DIR/admin-page.png" \
  "$VENV/bin/python" -m unittest -v "$ROOT/tests/admin_page/test_admin_page.py" \
  || { echo "网关日志："; cat "$WORK/gateway.log"; exit 1; }
