"""用官方 anthropic Python SDK 与 Claude Code 的模型发现请求验证网关的共用接口：
同一个 `/v1/models` 响应体两种 SDK 都能解析，`x-api-key` 与 `Authorization: Bearer` 都能鉴权。

由 tests/e2e/run.sh 启动网关后运行；网关根地址与密钥经环境变量传入。
"""

import os
import unittest

import anthropic
import httpx

ROOT_URL = os.environ["CHATNEXUS_ROOT_URL"]
API_KEY = os.environ["CHATNEXUS_API_KEY"]
# 客户端可见的全部模型名（run.sh 从生成的配置里取出）
MODELS = os.environ["CHATNEXUS_MODEL_NAMES"].split(",")


class AnthropicSdkTest(unittest.TestCase):
    def test_模型列表_anthropic_sdk_能解析(self):
        client = anthropic.Anthropic(base_url=ROOT_URL, api_key=API_KEY, max_retries=0)
        page = client.models.list(limit=1000)
        self.assertEqual(sorted(m.id for m in page.data), sorted(MODELS))
        self.assertEqual(page.data[0].display_name, page.data[0].id)
        self.assertFalse(page.has_more)

    def test_只带_x_api_key_的模型发现请求_通过鉴权(self):
        # Claude Code 的模型发现只发 x-api-key（ANTHROPIC_API_KEY 的情形）
        resp = httpx.get(f"{ROOT_URL}/v1/models?limit=1000", headers={"x-api-key": API_KEY})
        self.assertEqual(resp.status_code, 200, resp.text)
        body = resp.json()
        self.assertEqual(body["first_id"], body["data"][0]["id"])
        self.assertTrue(all(m["type"] == "model" for m in body["data"]))

    def test_错误的_x_api_key_抛出_AuthenticationError(self):
        client = anthropic.Anthropic(
            base_url=ROOT_URL, api_key="sk-wrong-key", max_retries=0,
            default_headers={"x-api-key": "sk-wrong-key"},
        )
        with self.assertRaises(anthropic.AuthenticationError):
            client.models.list()


if __name__ == "__main__":
    unittest.main(verbosity=2)
