"""用官方 anthropic Python SDK 端到端验证网关的 Anthropic Messages 接口（参考文档 §M5、§M6、§M7）：
每种上游（anthropic 透传；openai、openai_compatible、azure、gemini 经枢纽翻译）的普通调用、
`messages.stream`、两个并行工具的往返、图片输入、count_tokens，以及每种错误状态码被 SDK
映射为正确的异常类。

由 tests/e2e/run.sh 启动网关（内置模拟器说四种协议，另有几个带故障的独立模拟器）后运行；
网关根地址、各种客户端密钥与请求体上限经环境变量传入。
"""

import os
import unittest

import anthropic

ROOT_URL = os.environ["CHATNEXUS_ROOT_URL"]
API_KEY = os.environ["CHATNEXUS_API_KEY"]
# 只允许使用 demo 模型的客户端密钥（403 用）
RESTRICTED_KEY = os.environ["CHATNEXUS_RESTRICTED_KEY"]
# 每分钟只允许 1 个请求的客户端密钥（网关自己的 429 用）
LIMITED_KEY = os.environ["CHATNEXUS_LIMITED_KEY"]
# 网关配置的 server.max_body_bytes（413 用）
MAX_BODY_BYTES = int(os.environ["CHATNEXUS_MAX_BODY_BYTES"])

MOCK_REPLY = "你好！我是 ChatNexus 内置的模拟上游，这条回复没有调用任何真实模型。"
# 模拟器配置的命中缓存 token 数（run.sh 的 mock.behavior.cached_tokens）
MOCK_CACHED_TOKENS = 2
MESSAGES = [{"role": "user", "content": "你好"}]
MAX_TOKENS = 256
# 客户端可见的模型名 → 上游类型（见 run.sh 生成的配置）
MODELS = {"claude": "anthropic", "demo": "openai_compatible", "gpt": "openai", "gemini": "gemini", "azure": "azure"}
# 没有计数接口、count_tokens 由网关本地估算的模型（Gemini 有 countTokens）
ESTIMATED = [m for m, kind in MODELS.items() if kind not in ("anthropic", "gemini")]
# 带故障的模型（见 run.sh：各自指向一个带 --fault-status 的独立模拟器，或一个不可用的上游）
FAIL_500_COMPAT = "fail500-compat"
FAIL_500_CLAUDE = "fail500-claude"
OVERLOADED_CLAUDE = "overloaded-claude"
RATE_LIMITED_COMPAT = "ratelimited-compat"
UNAVAILABLE = "unavailable"
# 本地估算 count_tokens 时网关加的响应头
ESTIMATED_HEADER = "x-chatnexus-token-count"
# 1×1 像素的 PNG 图片（base64）
PIXEL_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
CITY_SCHEMA = {"type": "object", "properties": {"城市": {"type": "string"}}, "required": ["城市"]}
TOOLS = [
    {"name": "get_weather", "description": "查天气", "input_schema": CITY_SCHEMA},
    {"name": "get_time", "description": "查时间", "input_schema": CITY_SCHEMA},
]
# 模拟器按参数 Schema 生成的示例参数
SAMPLE_INPUT = {"城市": "巴黎"}


def block_param(block):
    """把回复里的内容块写回请求参数：只取请求允许的字段（回复对象还可能带别的字段）。"""
    if block.type == "tool_use":
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
    return {"type": "text", "text": block.text}


def gateway(**kwargs):
    """不重试的 anthropic 客户端；缺省用 `api_key=`（SDK 发 `Authorization: Bearer`）。"""
    kwargs.setdefault("api_key", API_KEY)
    return anthropic.Anthropic(base_url=ROOT_URL, max_retries=0, **kwargs)


class MessagesCallTest(unittest.TestCase):
    """每种上游的正常调用：文本、流式、工具往返、图片、count_tokens。"""

    def setUp(self):
        self.client = gateway()

    def test_普通调用_每种上游都返回文本_end_turn_与用量(self):
        for model in MODELS:
            with self.subTest(模型=model):
                msg = self.client.messages.create(model=model, max_tokens=MAX_TOKENS, messages=MESSAGES)
                self.assertEqual(msg.type, "message")
                self.assertEqual(msg.role, "assistant")
                self.assertEqual([b.type for b in msg.content], ["text"])
                self.assertEqual(msg.content[0].text, MOCK_REPLY)
                self.assertEqual(msg.stop_reason, "end_turn")
                self.assertIsNone(msg.stop_sequence)
                self.assertGreater(msg.usage.input_tokens, 0)
                self.assertGreater(msg.usage.output_tokens, 0)
                self.assertEqual(msg.usage.cache_read_input_tokens, MOCK_CACHED_TOKENS, "命中缓存的 token 要按 Anthropic 语义报告")

    def test_流式_text_stream_拼接等于完整回复_最终消息完整(self):
        for model in MODELS:
            with self.subTest(模型=model):
                with self.client.messages.stream(model=model, max_tokens=MAX_TOKENS, messages=MESSAGES) as stream:
                    text = "".join(stream.text_stream)
                    final = stream.get_final_message()
                self.assertEqual(text, MOCK_REPLY)
                self.assertEqual([b.type for b in final.content], ["text"])
                self.assertEqual(final.content[0].text, MOCK_REPLY)
                self.assertEqual(final.stop_reason, "end_turn")
                self.assertGreater(final.usage.input_tokens, 0)
                self.assertGreater(final.usage.output_tokens, 0)

    def test_auth_token_与_x_api_key_头_都能调用(self):
        # auth_token= 与 api_key= 在 SDK 里都发 Bearer；只带 x-api-key 头是 Claude Code 的 ANTHROPIC_API_KEY 用法
        clients = {
            "auth_token": gateway(api_key=None, auth_token=API_KEY),
            "x-api-key": gateway(api_key=None, default_headers={"x-api-key": API_KEY}),
        }
        for name, client in clients.items():
            with self.subTest(鉴权=name):
                msg = client.messages.create(model="claude", max_tokens=MAX_TOKENS, messages=MESSAGES)
                self.assertEqual(msg.content[0].text, MOCK_REPLY)

    def test_两个并行工具_往返后回答文本(self):
        for model in MODELS:
            with self.subTest(模型=model):
                first = self.client.messages.create(
                    model=model, max_tokens=MAX_TOKENS, messages=MESSAGES, tools=TOOLS
                )
                self.assertEqual(first.stop_reason, "tool_use")
                calls = [b for b in first.content if b.type == "tool_use"]
                self.assert_two_calls(calls)
                second = self.client.messages.create(
                    model=model, max_tokens=MAX_TOKENS, tools=TOOLS, messages=self.history(first.content, calls)
                )
                self.assertEqual(second.stop_reason, "end_turn")
                self.assertEqual([b.type for b in second.content], ["text"])
                self.assertEqual(second.content[0].text, MOCK_REPLY)

    def test_流式_两个并行工具_最终消息有两个_tool_use_且能往返(self):
        for model in MODELS:
            with self.subTest(模型=model):
                with self.client.messages.stream(
                    model=model, max_tokens=MAX_TOKENS, messages=MESSAGES, tools=TOOLS
                ) as stream:
                    first = stream.get_final_message()
                self.assertEqual(first.stop_reason, "tool_use")
                calls = [b for b in first.content if b.type == "tool_use"]
                self.assert_two_calls(calls)
                with self.client.messages.stream(
                    model=model, max_tokens=MAX_TOKENS, tools=TOOLS, messages=self.history(first.content, calls)
                ) as stream:
                    text = "".join(stream.text_stream)
                    second = stream.get_final_message()
                self.assertEqual(text, MOCK_REPLY)
                self.assertEqual(second.stop_reason, "end_turn")

    def assert_two_calls(self, calls):
        """模拟器并行调用两个工具：名称依次、id 互不相同、参数是示例参数。"""
        self.assertEqual([c.name for c in calls], ["get_weather", "get_time"])
        self.assertEqual(len({c.id for c in calls}), 2, "两个调用的 id 必须不同")
        for call in calls:
            self.assertEqual(call.input, SAMPLE_INPUT)

    @staticmethod
    def history(assistant_content, calls):
        """第二轮的对话：原问题、助手的工具调用、一个用户轮里两个工具的结果。"""
        results = [
            {"type": "tool_result", "tool_use_id": call.id, "content": f"{call.name} 的结果：晴，18 度"}
            for call in calls
        ]
        return MESSAGES + [
            {"role": "assistant", "content": [block_param(block) for block in assistant_content]},
            {"role": "user", "content": results},
        ]

    def test_图片块_每种上游都接受(self):
        content = [
            {"type": "text", "text": "图里是什么？"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PIXEL_PNG}},
        ]
        for model in MODELS:
            with self.subTest(模型=model):
                msg = self.client.messages.create(
                    model=model, max_tokens=MAX_TOKENS, messages=[{"role": "user", "content": content}]
                )
                self.assertEqual(msg.content[0].text, MOCK_REPLY)

    def test_count_tokens_anthropic_目标转发给上游_没有估算头(self):
        raw = self.client.messages.with_raw_response.count_tokens(model="claude", messages=MESSAGES)
        self.assertNotIn(ESTIMATED_HEADER, raw.headers, "Anthropic 目标的计数来自上游，不是估算")
        self.assertGreater(raw.parse().input_tokens, 0)

    def test_count_tokens_gemini_目标问它的计数接口_没有估算头_且计入系统提示与工具(self):
        raw = self.client.messages.with_raw_response.count_tokens(model="gemini", messages=MESSAGES)
        self.assertNotIn(ESTIMATED_HEADER, raw.headers, "对话内容由 Gemini 的 countTokens 计数")
        bare = raw.parse().input_tokens
        self.assertGreater(bare, 0)
        full = self.client.messages.count_tokens(
            model="gemini", messages=MESSAGES, tools=TOOLS, system="你是一个查天气和时间的助手，回答要简短。"
        ).input_tokens
        self.assertGreater(full, bare, "系统提示与工具定义要另行估算并加上")

    def test_count_tokens_没有计数接口的目标本地估算_带估算头_且计入系统提示与工具(self):
        for model in ESTIMATED:
            with self.subTest(模型=model):
                raw = self.client.messages.with_raw_response.count_tokens(model=model, messages=MESSAGES)
                self.assertEqual(raw.headers.get(ESTIMATED_HEADER), "estimated")
                bare = raw.parse().input_tokens
                self.assertGreater(bare, 0)
                full = self.client.messages.count_tokens(
                    model=model, messages=MESSAGES, tools=TOOLS, system="你是一个查天气和时间的助手，回答要简短。"
                ).input_tokens
                self.assertGreater(full, bare, "估算必须计入系统提示与工具定义")


class MessagesErrorTest(unittest.TestCase):
    """每种错误状态码：响应体是 Anthropic 形状，SDK 抛出对应的异常类。"""

    def setUp(self):
        self.client = gateway()

    def assert_gateway_error(self, exc, status, error_type):
        """网关自己写的错误：状态码、Anthropic 形状的响应体（含 request_id）。"""
        self.assertEqual(exc.status_code, status)
        self.assertEqual(exc.body["type"], "error")
        self.assertEqual(exc.body["error"]["type"], error_type)
        self.assertTrue(exc.body["error"]["message"], "错误消息不能为空")
        self.assertTrue(exc.body["request_id"], "响应体要带 request_id")

    def test_400_字段类型错误_抛出_BadRequestError(self):
        # stop_sequences 应是数组；SDK 不在本地校验类型，原样发出（max_tokens 不行：SDK 要用它算超时）
        for model in ("claude", "demo"):
            with self.subTest(模型=model):
                with self.assertRaises(anthropic.BadRequestError) as ctx:
                    self.client.messages.create(
                        model=model, max_tokens=MAX_TOKENS, messages=MESSAGES, stop_sequences="停"
                    )
                self.assert_gateway_error(ctx.exception, 400, "invalid_request_error")
                self.assertIn("stop_sequences", ctx.exception.body["error"]["message"])

    def test_网关错误_带_request_id_响应头_SDK_能读到(self):
        # anthropic SDK 的 e.request_id 只取响应头 request-id（参考文档 §M2：网关的错误也要设这个头）
        with self.assertRaises(anthropic.NotFoundError) as ctx:
            self.client.messages.create(model="不存在的模型", max_tokens=MAX_TOKENS, messages=MESSAGES)
        self.assertEqual(ctx.exception.request_id, ctx.exception.body["request_id"])

    def test_401_错误密钥_api_key_与_auth_token_都抛出_AuthenticationError(self):
        bad = {"api_key": gateway(api_key="sk-wrong-key"), "auth_token": gateway(api_key=None, auth_token="sk-wrong-key")}
        for name, client in bad.items():
            with self.subTest(鉴权=name):
                with self.assertRaises(anthropic.AuthenticationError) as ctx:
                    client.messages.create(model="claude", max_tokens=MAX_TOKENS, messages=MESSAGES)
                self.assert_gateway_error(ctx.exception, 401, "authentication_error")

    def test_403_受限密钥用别的模型_抛出_PermissionDeniedError(self):
        client = gateway(api_key=RESTRICTED_KEY)
        with self.assertRaises(anthropic.PermissionDeniedError) as ctx:
            client.messages.create(model="claude", max_tokens=MAX_TOKENS, messages=MESSAGES)
        self.assert_gateway_error(ctx.exception, 403, "permission_error")
        # 同一个密钥用允许的模型正常
        msg = client.messages.create(model="demo", max_tokens=MAX_TOKENS, messages=MESSAGES)
        self.assertEqual(msg.content[0].text, MOCK_REPLY)

    def test_404_未知模型_抛出_NotFoundError(self):
        with self.assertRaises(anthropic.NotFoundError) as ctx:
            self.client.messages.create(model="不存在的模型", max_tokens=MAX_TOKENS, messages=MESSAGES)
        self.assert_gateway_error(ctx.exception, 404, "not_found_error")

    def test_404_count_tokens_未知模型_抛出_NotFoundError(self):
        with self.assertRaises(anthropic.NotFoundError) as ctx:
            self.client.messages.count_tokens(model="不存在的模型", messages=MESSAGES)
        self.assert_gateway_error(ctx.exception, 404, "not_found_error")

    def test_413_请求体超过上限_抛出_RequestTooLargeError(self):
        huge = [{"role": "user", "content": "长" * MAX_BODY_BYTES}]
        with self.assertRaises(anthropic.RequestTooLargeError) as ctx:
            self.client.messages.create(model="claude", max_tokens=MAX_TOKENS, messages=huge)
        self.assertIsInstance(ctx.exception, anthropic.ContentTooLargeError)
        self.assert_gateway_error(ctx.exception, 413, "request_too_large")

    def test_429_密钥超过请求数上限_抛出_RateLimitError_带_retry_after(self):
        client = gateway(api_key=LIMITED_KEY)
        msg = client.messages.create(model="demo", max_tokens=MAX_TOKENS, messages=MESSAGES)
        self.assertEqual(msg.content[0].text, MOCK_REPLY, "上限内的第一个请求正常")
        with self.assertRaises(anthropic.RateLimitError) as ctx:
            client.messages.create(model="demo", max_tokens=MAX_TOKENS, messages=MESSAGES)
        self.assert_gateway_error(ctx.exception, 429, "rate_limit_error")
        self.assertGreater(int(ctx.exception.response.headers["retry-after"]), 0)

    def test_429_上游限流_抛出_RateLimitError_带_retry_after(self):
        with self.assertRaises(anthropic.RateLimitError) as ctx:
            self.client.messages.create(model=RATE_LIMITED_COMPAT, max_tokens=MAX_TOKENS, messages=MESSAGES)
        self.assert_gateway_error(ctx.exception, 429, "rate_limit_error")
        self.assertGreater(int(ctx.exception.response.headers["retry-after"]), 0)

    def test_500_翻译目标上游故障_抛出_InternalServerError(self):
        with self.assertRaises(anthropic.InternalServerError) as ctx:
            self.client.messages.create(model=FAIL_500_COMPAT, max_tokens=MAX_TOKENS, messages=MESSAGES)
        exc = ctx.exception
        self.assertIs(type(exc), anthropic.InternalServerError, "不能是 OverloadedError 等子类")
        self.assertEqual(exc.status_code, 500)
        self.assertEqual(exc.body["type"], "error")
        self.assertEqual(exc.body["error"]["type"], "api_error")
        self.assertTrue(exc.body["request_id"])

    def test_500_透传目标上游故障_原样转发上游错误体(self):
        with self.assertRaises(anthropic.InternalServerError) as ctx:
            self.client.messages.create(model=FAIL_500_CLAUDE, max_tokens=MAX_TOKENS, messages=MESSAGES)
        exc = ctx.exception
        self.assertIs(type(exc), anthropic.InternalServerError)
        self.assertEqual(exc.status_code, 500)
        self.assertEqual(exc.body["error"], {"type": "api_error", "message": "模拟的上游故障（500）"})
        self.assertTrue(exc.body["request_id"].startswith("req_mock_"), "request_id 是上游给的")

    def test_529_透传目标上游过载_抛出_OverloadedError(self):
        with self.assertRaises(anthropic.OverloadedError) as ctx:
            self.client.messages.create(model=OVERLOADED_CLAUDE, max_tokens=MAX_TOKENS, messages=MESSAGES)
        exc = ctx.exception
        self.assertEqual(exc.status_code, 529)
        self.assertEqual(exc.body["error"], {"type": "overloaded_error", "message": "模拟的上游故障（529）"})

    def test_529_没有可用上游_网关写成_OverloadedError(self):
        for stream in (False, True):
            with self.subTest(流式=stream):
                with self.assertRaises(anthropic.OverloadedError) as ctx:
                    self.client.messages.create(
                        model=UNAVAILABLE, max_tokens=MAX_TOKENS, messages=MESSAGES, stream=stream
                    )
                self.assert_gateway_error(ctx.exception, 529, "overloaded_error")


if __name__ == "__main__":
    unittest.main(verbosity=2)
