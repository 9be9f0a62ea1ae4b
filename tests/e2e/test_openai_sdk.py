"""用官方 openai Python SDK 端到端验证网关：普通调用、流式调用、错误被映射为正确的异常类。

由 tests/e2e/run.sh 启动网关后运行；网关地址与密钥经环境变量传入。
"""

import os
import unittest

import openai

BASE_URL = os.environ["CHATNEXUS_BASE_URL"]
API_KEY = os.environ["CHATNEXUS_API_KEY"]
MOCK_REPLY = "你好！我是 ChatNexus 内置的模拟上游，这条回复没有调用任何真实模型。"
MESSAGES = [{"role": "user", "content": "你好"}]


class OpenAiSdkTest(unittest.TestCase):
    def setUp(self):
        self.client = openai.OpenAI(base_url=BASE_URL, api_key=API_KEY, max_retries=0)

    def test_普通调用_返回模拟回复与用量(self):
        resp = self.client.chat.completions.create(model="demo", messages=MESSAGES)
        self.assertEqual(resp.choices[0].message.content, MOCK_REPLY)
        self.assertEqual(resp.choices[0].finish_reason, "stop")
        self.assertEqual(resp.usage.total_tokens, resp.usage.prompt_tokens + resp.usage.completion_tokens)

    def test_流式调用_拼接后等于完整回复(self):
        stream = self.client.chat.completions.create(model="demo", messages=MESSAGES, stream=True)
        parts = [c.choices[0].delta.content or "" for c in stream if c.choices]
        self.assertEqual("".join(parts), MOCK_REPLY)

    def test_模型列表(self):
        ids = [m.id for m in self.client.models.list()]
        self.assertIn("demo", ids)

    def test_错误密钥_抛出_AuthenticationError(self):
        bad = openai.OpenAI(base_url=BASE_URL, api_key="sk-wrong-key", max_retries=0)
        with self.assertRaises(openai.AuthenticationError) as ctx:
            bad.chat.completions.create(model="demo", messages=MESSAGES)
        self.assertEqual(ctx.exception.code, "invalid_api_key")

    def test_未知模型_抛出_NotFoundError(self):
        with self.assertRaises(openai.NotFoundError) as ctx:
            self.client.chat.completions.create(model="不存在的模型", messages=MESSAGES)
        self.assertEqual(ctx.exception.code, "model_not_found")

    def test_空消息_抛出_BadRequestError(self):
        with self.assertRaises(openai.BadRequestError) as ctx:
            self.client.chat.completions.create(model="demo", messages=[])
        self.assertEqual(ctx.exception.param, "messages")


if __name__ == "__main__":
    unittest.main(verbosity=2)
