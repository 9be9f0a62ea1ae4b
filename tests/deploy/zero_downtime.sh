#!/usr/bin/env bash
# 零停机测试：在持续负载（非流式请求 + 200 块 × 20 毫秒的长流）下
#   1. 连续三次热重载配置（每次新增一个模型，随后确认它已生效）；
#   2. 做一次 Pingora 平滑升级（新进程 -u 接管监听套接字，旧进程收到 SIGQUIT 后处理完进行中的流再退出）。
# 要求：零失败请求、零截断的流，升级后新配置仍然生效。只使用 127.0.0.1。
# 用法：bash tests/deploy/zero_downtime.sh （需要已构建的 target/debug/chatnexus）
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN="$ROOT/target/debug/chatnexus"
KEY="sk-chatnexus-deploy"
WORK=$(mktemp -d)
PIDS=()
GRACE_SECONDS=12

cleanup() {
  touch "$WORK/stop"
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# shellcheck source=../support/common.sh
source "$ROOT/tests/support/common.sh"
read -r GATEWAY_PORT MOCK_PORT < <(free_ports 2)
HASH=$(sha256_of "$KEY")

# 写配置：基础模型 demo，外加参数给出的额外模型
write_config() {
  {
    echo "server: { listen: \"127.0.0.1:$GATEWAY_PORT\", pid_file: \"$WORK/gateway.pid\", upgrade_sock: \"$WORK/upgrade.sock\", grace_period_seconds: $GRACE_SECONDS }"
    echo "auth: { keys: [ { name: deploy, sha256: \"$HASH\" } ] }"
    echo "providers: [ { name: mock, kind: openai_compatible, base_url: \"http://127.0.0.1:$MOCK_PORT\" } ]"
    echo "models:"
    for name in demo "$@"; do echo "  - { name: $name, targets: [ { provider: mock } ] }"; done
  } > "$WORK/chatnexus.yaml.tmp"
  mv "$WORK/chatnexus.yaml.tmp" "$WORK/chatnexus.yaml"
}

# 断言 /v1/models 中有某个模型
expect_model() {
  curl -sf "http://127.0.0.1:$GATEWAY_PORT/v1/models" -H "Authorization: Bearer $KEY" | grep -q "\"id\":\"$1\"" \
    || { echo "模型 $1 没有生效" >&2; exit 1; }
}

"$BIN" mock --listen "127.0.0.1:$MOCK_PORT" --chunks 200 --chunk-delay-ms 20 > "$WORK/mock.log" 2>&1 &
PIDS+=($!)
write_config
"$BIN" -c "$WORK/chatnexus.yaml" > "$WORK/old.log" 2>&1 &
OLD_PID=$!
PIDS+=("$OLD_PID")
wait_port "$MOCK_PORT"
wait_port "$GATEWAY_PORT"

python3 "$ROOT/tests/deploy/load.py" "$GATEWAY_PORT" "$KEY" "$WORK/stop" "$WORK/result.json" &
LOAD_PID=$!
sleep 2

for round in 1 2 3; do
  models=()
  for i in $(seq 1 "$round"); do models+=("v$i"); done
  write_config "${models[@]}"
  "$BIN" reload -c "$WORK/chatnexus.yaml"
  sleep 1
  expect_model "v$round"
  echo "第 $round 次热重载生效"
done

# 平滑升级：新进程先启动并等待接管，旧进程收到 SIGQUIT 后把监听套接字交给它
"$BIN" -u -c "$WORK/chatnexus.yaml" > "$WORK/new.log" 2>&1 &
NEW_PID=$!
PIDS+=("$NEW_PID")
sleep 1
kill -QUIT "$OLD_PID"
for _ in $(seq 1 $((GRACE_SECONDS * 10 + 200))); do kill -0 "$OLD_PID" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$OLD_PID" 2>/dev/null; then echo "旧进程没有在宽限期后退出" >&2; exit 1; fi
kill -0 "$NEW_PID" || { echo "新进程没有在运行" >&2; cat "$WORK/new.log"; exit 1; }
echo "平滑升级完成：旧进程 $OLD_PID 已退出，新进程 $NEW_PID 接管"
sleep 2
expect_model v3

touch "$WORK/stop"
wait "$LOAD_PID"
python3 - "$WORK/result.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1], encoding="utf-8"))
print(f"负载结果：非流式成功 {r['ok']}，完整的流 {r['streams_ok']}，失败 {r['failed']}，截断 {r['truncated']}")
for e in r["errors"]:
    print("  ", e)
assert r["ok"] > 0 and r["streams_ok"] > 0, "负载没有真正跑起来"
assert r["failed"] == 0 and r["truncated"] == 0, "零停机要求零失败、零截断"
PY
