"""ChatNexus 请求签名的 Python 参考实现（只用标准库），以及接入官方 OpenAI SDK 的 httpx 钩子。

规范串（字段间用 \\n 连接，末尾没有换行）：

    CHATNEXUS-HMAC-SHA256
    <方法>
    <请求行里的路径与查询串，原样>
    <X-ChatNexus-Timestamp>
    <X-ChatNexus-Nonce>
    <请求体 SHA-256 的小写十六进制>

X-ChatNexus-Signature = hex(HMAC-SHA256(签名密钥的 UTF-8 字节, 规范串))。详见 docs/security.md。

直接运行即发送一个签名的聊天请求：
    CHATNEXUS_BASE_URL=http://127.0.0.1:8080 CHATNEXUS_API_KEY=sk-cnx-… \\
    CHATNEXUS_SIGNING_SECRET=cnxs-… python3 signed_client.py
"""

import hashlib
import hmac
import json
import os
import secrets
import time
import urllib.request

ALGORITHM = "CHATNEXUS-HMAC-SHA256"


def sign_headers(secret, method, path_and_query, body, timestamp=None, nonce=None):
    """返回三个签名请求头。body 必须是实际发送的字节（一个字节都不能差）。"""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    nonce = nonce or secrets.token_urlsafe(24)  # 32 个 URL 安全字符，每个请求一个新的
    canonical = "\n".join(
        [ALGORITHM, method, path_and_query, ts, nonce, hashlib.sha256(body).hexdigest()]
    )
    signature = hmac.new(secret.encode("utf-8"), canonical.encode("utf-8"), hashlib.sha256).hexdigest()
    return {
        "X-ChatNexus-Timestamp": ts,
        "X-ChatNexus-Nonce": nonce,
        "X-ChatNexus-Signature": signature,
    }


def httpx_signing_hook(secret):
    """给官方 OpenAI SDK 用的 httpx 请求钩子：每次发送（包括 SDK 的自动重试）都重新签名。

        import httpx, openai
        client = openai.OpenAI(base_url=..., api_key=...,
                               http_client=httpx.Client(event_hooks={"request": [httpx_signing_hook(secret)]}))
    """

    def hook(request):
        body = request.read()
        path_and_query = request.url.raw_path.decode("ascii")  # 路径含查询串，与请求行一致
        request.headers.update(sign_headers(secret, request.method, path_and_query, body))

    return hook


def main():
    base_url = os.environ.get("CHATNEXUS_BASE_URL", "http://127.0.0.1:8080").rstrip("/")
    api_key = os.environ["CHATNEXUS_API_KEY"]
    secret = os.environ["CHATNEXUS_SIGNING_SECRET"]
    model = os.environ.get("CHATNEXUS_MODEL", "demo")
    path = "/v1/chat/completions"
    body = json.dumps(
        {"model": model, "messages": [{"role": "user", "content": "你好"}]}, ensure_ascii=False
    ).encode("utf-8")
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    headers.update(sign_headers(secret, "POST", path, body))
    request = urllib.request.Request(base_url + path, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=30) as resp:
        reply = json.load(resp)
    print(reply["choices"][0]["message"]["content"])


if __name__ == "__main__":
    main()
