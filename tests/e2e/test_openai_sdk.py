"""用官方 openai Python SDK 端到端验证网关：每种上游协议（OpenAI、Anthropic、Gemini、Azure）
的普通调用、流式调用、流式并行工具调用、图片输入与用量，以及错误被映射为正确的异常类；
要求签名的密钥经 httpx 钩子签名后可正常使用，未签名与重放被拒。

由 tests/e2e/run.sh 启动网关（内置模拟器说四种协议）后运行；网关地址与密钥经环境变量传入。
"""

import json
import os
import sys
import unittest

import httpx
import openai

# docs/examples/signed_client.py 是文档里的签名参考实现，这里直接拿来用
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "docs", "examples"))
from signed_client import httpx_signing_hook, sign_headers  # noqa: E402

BASE_URL = os.environ["CHATNEXUS_BASE_URL"]
API_KEY = os.environ["CHATNEXUS_API_KEY"]
MOCK_REPLY = "你好！我是 ChatNexus 内置的模拟上游，这条回复没有调用任何真实模型。"
MESSAGES = [{"role": "user", "content": "你好"}]
# 客户端可见的模型名 → 上游协议（见 run.sh 生成的配置）
MODELS = {"demo": "openai_compatible", "gpt": "openai", "claude": "anthropic", "gemini": "gemini", "azure": "azure"}
# 主密钥能看到的全部模型，含只给错误测试用的带故障模型（run.sh 从生成的配置里取出）
ALL_MODELS = os.environ["CHATNEXUS_MODEL_NAMES"].split(",")
# 1×1 像素的 PNG 图片
PIXEL_PNG = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
WEATHER_SCHEMA = {"type": "object", "properties": {"城市": {"type": "string"}}, "required": ["城市"]}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "查天气", "parameters": WEATHER_SCHEMA}},
    {"type": "function", "function": {"name": "get_time", "description": "查时间", "parameters": WEATHER_SCHEMA}},
]


class OpenAiSdkTest(unittest.TestCase):
    def setUp(self):
        self.client = openai.OpenAI(base_url=BASE_URL, api_key=API_KEY, max_retries=0)

    def test_普通调用_每种协议都返回模拟回复与用量(self):
        for model in MODELS:
            with self.subTest(模型=model):
                resp = self.client.chat.completions.create(model=model, messages=MESSAGES)
                self.assertEqual(resp.choices[0].message.content, MOCK_REPLY)
                self.assertEqual(resp.choices[0].finish_reason, "stop")
                usage = resp.usage
                self.assertGreater(usage.prompt_tokens, 0)
                self.assertEqual(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens)

    def test_流式调用_拼接后等于完整回复且末尾有用量(self):
        for model in MODELS:
            with self.subTest(模型=model):
                stream = self.client.chat.completions.create(
                    model=model, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
                )
                chunks = list(stream)
                text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
                self.assertEqual(text, MOCK_REPLY)
                self.assertEqual(len({c.id for c in chunks}), 1, "一个流的所有块 id 相同")
                self.assertEqual(chunks[-1].choices, [], "最后一块是用量块")
                self.assertIsNotNone(chunks[-1].usage)

    def test_流式并行工具调用_索引与参数正确(self):
        for model in MODELS:
            with self.subTest(模型=model):
                stream = self.client.chat.completions.create(model=model, messages=MESSAGES, tools=TOOLS, stream=True)
                calls, finish = {}, None
                for chunk in stream:
                    if not chunk.choices:
                        continue
                    finish = chunk.choices[0].finish_reason or finish
                    for call in chunk.choices[0].delta.tool_calls or []:
                        entry = calls.setdefault(call.index, {"id": None, "name": "", "arguments": ""})
                        entry["id"] = call.id or entry["id"]
                        entry["name"] += (call.function and call.function.name) or ""
                        entry["arguments"] += (call.function and call.function.arguments) or ""
                self.assertEqual(finish, "tool_calls")
                self.assertEqual(sorted(calls), [0, 1])
                self.assertEqual([calls[i]["name"] for i in (0, 1)], ["get_weather", "get_time"])
                self.assertEqual(len({calls[i]["id"] for i in (0, 1)}), 2, "两个调用的 id 不同")
                for i in (0, 1):
                    self.assertEqual(json.loads(calls[i]["arguments"]), {"城市": "巴黎"})
                self.round_trip(model, calls)

    def round_trip(self, model, calls):
        """把工具结果发回去：上游接受历史（Anthropic、Gemini 会校验配对），并回复文本。"""
        history = MESSAGES + [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": calls[i]["id"], "type": "function",
                     "function": {"name": calls[i]["name"], "arguments": calls[i]["arguments"]}}
                    for i in (0, 1)
                ],
            }
        ]
        history += [{"role": "tool", "tool_call_id": calls[i]["id"], "content": "晴，18 度"} for i in (0, 1)]
        resp = self.client.chat.completions.create(model=model, messages=history, tools=TOOLS)
        self.assertEqual(resp.choices[0].message.content, MOCK_REPLY)

    def test_图片输入_每种协议都接受(self):
        content = [{"type": "text", "text": "图里是什么？"}, {"type": "image_url", "image_url": {"url": PIXEL_PNG}}]
        for model in MODELS:
            with self.subTest(模型=model):
                resp = self.client.chat.completions.create(model=model, messages=[{"role": "user", "content": content}])
                self.assertEqual(resp.choices[0].message.content, MOCK_REPLY)

    def test_模型列表(self):
        ids = [m.id for m in self.client.models.list()]
        self.assertEqual(sorted(ids), sorted(ALL_MODELS))

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


class SignedClientTest(unittest.TestCase):
    """要求签名的客户端密钥：SDK 经 httpx 请求钩子签名（docs/security.md 的用法）。"""

    KEY = os.environ["CHATNEXUS_SIGNED_KEY"]
    SECRET = os.environ["CHATNEXUS_SIGNING_SECRET"]

    def signed_client(self):
        http_client = httpx.Client(event_hooks={"request": [httpx_signing_hook(self.SECRET)]})
        self.addCleanup(http_client.close)
        return openai.OpenAI(base_url=BASE_URL, api_key=self.KEY, max_retries=0, http_client=http_client)

    def test_签名的_SDK_调用_普通与流式都成功(self):
        client = self.signed_client()
        resp = client.chat.completions.create(model="demo", messages=MESSAGES)
        self.assertEqual(resp.choices[0].message.content, MOCK_REPLY)
        stream = client.chat.completions.create(model="claude", messages=MESSAGES, stream=True)
        self.assertEqual("".join(c.choices[0].delta.content or "" for c in stream if c.choices), MOCK_REPLY)
        self.assertEqual(sorted(m.id for m in client.models.list()), sorted(ALL_MODELS))

    def test_未签名_抛出_AuthenticationError(self):
        unsigned = openai.OpenAI(base_url=BASE_URL, api_key=self.KEY, max_retries=0)
        with self.assertRaises(openai.AuthenticationError) as ctx:
            unsigned.chat.completions.create(model="demo", messages=MESSAGES)
        self.assertEqual(ctx.exception.code, "signature_required")

    def test_重放_第二次被拒(self):
        body = json.dumps({"model": "demo", "messages": MESSAGES}).encode()
        path = httpx.URL(BASE_URL).raw_path.decode().rstrip("/") + "/chat/completions"
        headers = {"Authorization": f"Bearer {self.KEY}", "Content-Type": "application/json"}
        headers.update(sign_headers(self.SECRET, "POST", path, body))
        url = BASE_URL.rstrip("/") + "/chat/completions"
        first = httpx.post(url, content=body, headers=headers)
        self.assertEqual(first.status_code, 200, first.text)
        again = httpx.post(url, content=body, headers=headers)
        self.assertEqual(again.status_code, 401)
        self.assertEqual(again.json()["error"]["code"], "replayed_request")
        self.assertIn("重放请求", again.json()["error"]["message"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
