#!/usr/bin/env bash
# 可复现压测（只用 127.0.0.1）：以 release 模式构建，再由 bench/harness.py 编排。
# 用法：
#   bash bench/run.sh          # 直连 / 裸 Pingora / nginx / ChatNexus 的非流式与流式对比（约 5 分钟）
#   QUICK=1 bash bench/run.sh  # 几秒钟的快速模式，迭代时用
#   bash bench/run.sh hold     # 经 ChatNexus 同时保持一万个流，报告峰值 RSS
#   bash bench/run.sh soak     # 10 分钟浸泡（SOAK_SECS 可调），报告 RSS 增长
#   bash bench/run.sh profile  # callgrind 指令计数：每个请求、每个流式块，裸 Pingora 对 ChatNexus
#   bash bench/run.sh cache    # 响应缓存命中（local 与本机 Redis）对照直连与透传：吞吐、p99、指令数与分配次数
#   bash bench/run.sh keys     # 虚拟密钥 + 美元预算对照配置文件的密钥（都走 Redis 限流）：吞吐、Redis 命令数、指令数
#   bash bench/run.sh embeddings # 100 条输入的向量透传对照同样大小的聊天透传：每个请求的指令数与分配次数
# 全部参数见 docs/performance.md。
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$PATH:/usr/sbin"

# 压测工具与对照组：wrk、nginx（轻量版）；构建 Pingora 需要 cmake
need=()
command -v wrk > /dev/null || need+=(wrk)
command -v nginx > /dev/null || need+=(nginx-light)
command -v cmake > /dev/null || need+=(cmake)
case "${1:-bench}" in
  profile | cache | keys | embeddings) command -v valgrind > /dev/null || need+=(valgrind) ;;
esac
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi

(cd "$ROOT" && cargo build --release --quiet --bin chatnexus --example passthrough --example stream_load)

# 大量并发流需要很多文件描述符：软上限提到硬上限
ulimit -n "$(ulimit -Hn)"
exec python3 "$ROOT/bench/harness.py" "${1:-bench}"
