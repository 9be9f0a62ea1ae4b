#!/usr/bin/env bash
# 运行全部测试：Rust 单元测试、集成测试、文档测试，以及官方 OpenAI SDK 端到端测试。
# 在全新的 Debian 机器上也能运行：缺少的系统依赖会自动安装。
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

# Pingora 依赖的 zlib-ng 需要 cmake；端到端测试需要 curl 与 python3-venv
need=()
command -v cmake > /dev/null || need+=(cmake)
command -v curl > /dev/null || need+=(curl)
python3 -c 'import venv, ensurepip' 2> /dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi

LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
cargo test --all-targets 2>&1 | tee -a "$LOG"
cargo test --doc 2>&1 | tee -a "$LOG"
bash tests/e2e/run.sh 2>&1 | tee -a "$LOG"
bash tests/deploy/verify_unit.sh
bash tests/deploy/zero_downtime.sh

# 汇总：cargo 的各个测试目标加上 Python 端到端测试
rust_passed=$(grep -oE '[0-9]+ passed' "$LOG" | awk '{s += $1} END {print s + 0}')
rust_failed=$(grep -oE '[0-9]+ failed' "$LOG" | awk '{s += $1} END {print s + 0}')
py_ran=$(grep -oE '^Ran [0-9]+ tests?' "$LOG" | awk '{s += $2} END {print s + 0}')
echo "$((rust_passed + py_ran)) passed, ${rust_failed} failed"
