#!/usr/bin/env bash
# 用 curl + openssl 发送一个签名的聊天请求（规范串见 docs/security.md）。
# 用法：CHATNEXUS_BASE_URL=http://127.0.0.1:8080 CHATNEXUS_API_KEY=sk-cnx-… \
#       CHATNEXUS_SIGNING_SECRET=cnxs-… bash signed_request.sh
set -euo pipefail

BASE=${CHATNEXUS_BASE_URL:-http://127.0.0.1:8080}
MODEL=${CHATNEXUS_MODEL:-demo}
REQUEST_PATH=/v1/chat/completions
BODY="{\"model\":\"$MODEL\",\"messages\":[{\"role\":\"user\",\"content\":\"你好\"}]}"

TS=$(date +%s)                         # Unix 秒，与网关相差不能超过 ±300 秒
NONCE=$(openssl rand -hex 16)          # 32 个字符，每个请求一个新的
BODY_SHA=$(printf '%s' "$BODY" | sha256sum | cut -d' ' -f1)
CANONICAL=$(printf 'CHATNEXUS-HMAC-SHA256\nPOST\n%s\n%s\n%s\n%s' "$REQUEST_PATH" "$TS" "$NONCE" "$BODY_SHA")
SIGNATURE=$(printf '%s' "$CANONICAL" | openssl dgst -sha256 -hmac "$CHATNEXUS_SIGNING_SECRET" | sed 's/^.*= //')

# --data-binary 原样发送请求体：签名覆盖的正是这些字节
curl -sS --fail-with-body "$BASE$REQUEST_PATH" \
  -H "Authorization: Bearer $CHATNEXUS_API_KEY" \
  -H 'Content-Type: application/json' \
  -H "X-ChatNexus-Timestamp: $TS" \
  -H "X-ChatNexus-Nonce: $NONCE" \
  -H "X-ChatNexus-Signature: $SIGNATURE" \
  --data-binary "$BODY"
echo
