#!/usr/bin/env bash
# 响应缓存的热重载与过期：真实的网关进程与模拟上游，配置改了之后 `chatnexus reload`。
#   1. 没有 cache 段：回复不带 x-chatnexus-cache；
#   2. 热重载打开缓存（过期 2 秒）：未命中 → 命中 → 过期后再次未命中；
#   3. 热重载关掉缓存：又不带 x-chatnexus-cache。
# 只使用 127.0.0.1。用法：bash tests/deploy/cache_reload.sh （需要已构建的 target/debug/chatnexus）
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN="$ROOT/target/debug/chatnexus"
KEY="sk-chatnexus-cache-reload"
WORK=$(mktemp -d)
PIDS=()
TTL_SECONDS=2

cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# shellcheck source=../support/common.sh
source "$ROOT/tests/support/common.sh"
read -r GATEWAY_PORT MOCK_PORT < <(free_ports 2)
HASH=$(sha256_of "$KEY")

# 写配置：参数为 cache 段（一行 YAML），没有参数时不写 cache 段
write_config() {
  {
    echo "server: { listen: \"127.0.0.1:$GATEWAY_PORT\", pid_file: \"$WORK/gateway.pid\" }"
    echo "auth: { keys: [ { name: cache, sha256: \"$HASH\" } ] }"
    echo "providers: [ { name: mock, kind: openai_compatible, base_url: \"http://127.0.0.1:$MOCK_PORT\" } ]"
    echo "models: [ { name: demo, targets: [ { provider: mock } ] } ]"
    if [ $# -gt 0 ]; then echo "$1"; fi
  } > "$WORK/chatnexus.yaml.tmp"
  chmod 600 "$WORK/chatnexus.yaml.tmp"
  mv "$WORK/chatnexus.yaml.tmp" "$WORK/chatnexus.yaml"
}

# 发一个确定性的请求，打印 x-chatnexus-cache 的值（没有这个头时打印“无”）
cache_result() {
  local value
  value=$(curl -sf -o /dev/null -D - "http://127.0.0.1:$GATEWAY_PORT/v1/chat/completions" \
    -H "Authorization: Bearer $KEY" -H 'content-type: application/json' \
    -d '{"model":"demo","temperature":0,"messages":[{"role":"user","content":"热重载缓存标记"}]}' \
    | tr -d '\r' | awk -F': ' 'tolower($1) == "x-chatnexus-cache" {print $2}')
  echo "${value:-无}"
}

# 断言下一个请求的缓存结果
expect() {
  local got
  got=$(cache_result)
  [ "$got" = "$1" ] || { echo "期望缓存结果 $1，实际 $got（$2）" >&2; exit 1; }
}

# 写配置并热重载，等新配置生效
reload_with() {
  write_config "$@"
  "$BIN" reload -c "$WORK/chatnexus.yaml"
  sleep 1
}

"$BIN" mock --listen "127.0.0.1:$MOCK_PORT" > "$WORK/mock.log" 2>&1 &
PIDS+=($!)
write_config
"$BIN" -c "$WORK/chatnexus.yaml" > "$WORK/gateway.log" 2>&1 &
PIDS+=($!)
wait_port "$MOCK_PORT"
wait_port "$GATEWAY_PORT"

expect 无 "没有 cache 段时不用缓存"
reload_with "cache: { backend: local, ttl_seconds: $TTL_SECONDS }"
expect miss "热重载打开缓存后的第一次"
expect hit "第二次命中"
sleep $((TTL_SECONDS + 1))
expect miss "过期之后不再命中"
expect hit "过期后重新存下"
reload_with
expect 无 "热重载关掉缓存"
echo "缓存热重载与过期：通过"
