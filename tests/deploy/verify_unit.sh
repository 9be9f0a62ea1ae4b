#!/usr/bin/env bash
# 用 systemd-analyze verify 检查 systemd 单元文件；可执行文件路径替换为刚构建的二进制（检查要求它存在）。
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

if ! command -v systemd-analyze > /dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd
fi
sed "s#/usr/local/bin/chatnexus#$ROOT/target/debug/chatnexus#g" "$ROOT/systemd/chatnexus.service" > "$WORK/chatnexus.service"
systemd-analyze verify "$WORK/chatnexus.service"
echo "systemd 单元检查通过"
