"""用官方 openai Python SDK 端到端验证网关的 OpenAI Responses 接口（参考文档 §R1–§R6、§R9）：
每种上游（openai 透传；openai_compatible、anthropic、gemini、azure 经枢纽翻译）的普通调用、
原始事件流与 `responses.stream` 辅助、两个并行函数调用的往返、图片输入、翻译目标上
`previous_response_id` 与 Redis 会话、`responses.retrieve`，以及每种错误状态码被 SDK 映射为正确的
异常类、200 之后上游出错时事件流以唯一的 `response.failed` 结束。

由 tests/e2e/run.sh 启动网关（内置模拟器说四种协议，另有几个带故障的独立模拟器）后运行；
网关地址、各种客户端密钥与请求体上限经环境变量传入。
"""

import json
import os
import unittest

import openai

BASE_URL = os.environ["CHATNEXUS_BASE_URL"]
API_KEY = os.environ["CHATNEXUS_API_KEY"]
# 只允许使用 demo 模型的客户端密钥（403 用；它读不到别的密钥保存的回复）
RESTRICTED_KEY = os.environ["CHATNEXUS_RESTRICTED_KEY"]
# 每分钟只允许 1 个请求的客户端密钥（网关自己的 429 用；只给本文件用，别的测试不会先用掉额度）
LIMITED_KEY = os.environ["CHATNEXUS_RESPONSES_LIMITED_KEY"]
# 网关配置的 server.max_body_bytes（413 用）
MAX_BODY_BYTES = int(os.environ["CHATNEXUS_MAX_BODY_BYTES"])

MOCK_REPLY = "你好！我是 ChatNexus 内置的模拟上游，这条回复没有调用任何真实模型。"
# 模拟器配置的命中缓存 token 数（run.sh 的 mock.behavior.cached_tokens）
MOCK_CACHED_TOKENS = 2
QUESTION = "你好"
# 客户端可见的模型名 → 上游类型（见 run.sh 生成的配置）
MODELS = {"gpt": "openai", "demo": "openai_compatible", "claude": "anthropic", "gemini": "gemini", "azure": "azure"}
# 经枢纽翻译的模型（会话由网关保存在 Redis）
TRANSLATED = [m for m, kind in MODELS.items() if kind != "openai"]
# 带故障的模型（见 run.sh：各自指向一个带故障的独立模拟器，或一个不可用的上游）
FAIL_500_COMPAT = "fail500-compat"
FAIL_500_GPT = "fail500-gpt"
RATE_LIMITED_COMPAT = "ratelimited-compat"
RATE_LIMITED_GPT = "ratelimited-gpt"
UNAVAILABLE = "unavailable"
# 流式发出几块后在流中报错（error_after）或直接断开（drop_after）的上游
STREAM_ERROR_COMPAT = "streamerror-compat"
STREAM_ERROR_GPT = "streamerror-gpt"
STREAM_DROP_CLAUDE = "streamdrop-claude"
# 事件流的三种终止事件（参考文档 §R5：恰好一个）
TERMINALS = {"response.completed", "response.incomplete", "response.failed"}
# 1×1 像素的 PNG 图片
PIXEL_PNG = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
CITY_SCHEMA = {"type": "object", "properties": {"城市": {"type": "string"}}, "required": ["城市"]}
# Responses 的函数工具是扁平的：name、parameters 直接在工具对象上
TOOLS = [
    {"type": "function", "name": "get_weather", "description": "查天气", "parameters": CITY_SCHEMA},
    {"type": "function", "name": "get_time", "description": "查时间", "parameters": CITY_SCHEMA},
]
# 模拟器按参数 Schema 生成的示例参数
SAMPLE_ARGUMENTS = {"城市": "巴黎"}


def gateway(api_key=API_KEY):
    """不重试的 openai 客户端（`Authorization: Bearer`）。"""
    return openai.OpenAI(base_url=BASE_URL, api_key=api_key, max_retries=0)


def item_param(item):
    """把回复里的输出项写回下一轮的输入项：去掉值为 null 的字段（OpenAI 接受输出项原样作输入）。"""
    return item.model_dump(mode="json", exclude_none=True)


def raw_events(client, **kwargs):
    """以 `stream=True` 调用并收集全部原始事件。"""
    with client.responses.create(stream=True, **kwargs) as stream:
        return list(stream)


class ResponsesCallTest(unittest.TestCase):
    """每种上游的正常调用：文本、原始事件流、流辅助、工具往返、图片。"""

    def setUp(self):
        self.client = gateway()

    def assert_text_response(self, resp, model):
        """一个完整的文本回复：状态、文本、输出项与整数用量。"""
        self.assertEqual(resp.object, "response")
        self.assertEqual(resp.status, "completed")
        if model in TRANSLATED:
            # 透传时回复原样来自上游，模型名是上游的（如 gpt-4o-mini）；翻译时网关回显客户端请求的名字
            self.assertEqual(resp.model, model, "翻译的回复里模型名是客户端请求的名字")
        self.assertEqual(resp.output_text, MOCK_REPLY)
        messages = [item for item in resp.output if item.type == "message"]
        self.assertEqual(len(messages), 1, "恰好一个消息输出项")
        self.assertEqual(messages[0].role, "assistant")
        self.assertEqual(messages[0].status, "completed")
        usage = resp.usage
        for value in (usage.input_tokens, usage.output_tokens, usage.total_tokens):
            self.assertIsInstance(value, int)
        self.assertGreater(usage.input_tokens, 0)
        self.assertGreater(usage.output_tokens, 0)
        self.assertEqual(usage.total_tokens, usage.input_tokens + usage.output_tokens)
        self.assertEqual(usage.input_tokens_details.cached_tokens, MOCK_CACHED_TOKENS, "命中缓存的 token 要报告")
        self.assertIsInstance(usage.output_tokens_details.reasoning_tokens, int)

    def test_普通调用_每种上游都返回文本_completed_与整数用量(self):
        for model in MODELS:
            with self.subTest(模型=model):
                resp = self.client.responses.create(model=model, input=QUESTION)
                self.assert_text_response(resp, model)
                self.assertTrue(resp.id.startswith("resp_"), f"响应 id 应以 resp_ 开头：{resp.id}")

    def test_instructions_与消息数组输入_每种上游都接受(self):
        for model in MODELS:
            with self.subTest(模型=model):
                resp = self.client.responses.create(
                    model=model,
                    instructions="你是一个简短回答的助手。",
                    input=[{"type": "message", "role": "user", "content": [{"type": "input_text", "text": QUESTION}]}],
                )
                self.assertEqual(resp.output_text, MOCK_REPLY)
                self.assertEqual(resp.instructions, "你是一个简短回答的助手。", "instructions 要回显")

    def assert_event_law(self, events):
        """事件流的规律：created 在先、序号严格递增、恰好一个终止事件且在最后。"""
        types = [e.type for e in events]
        self.assertEqual(types[0], "response.created", f"第一个事件必须是 response.created：{types[:3]}")
        numbers = [e.sequence_number for e in events]
        self.assertTrue(all(a < b for a, b in zip(numbers, numbers[1:])), f"sequence_number 必须严格递增：{numbers}")
        self.assertEqual(numbers, list(range(len(numbers))), "sequence_number 从 0 起连续")
        terminals = [t for t in types if t in TERMINALS]
        self.assertEqual(len(terminals), 1, f"恰好一个终止事件：{types}")
        self.assertEqual(types[-1], terminals[0], "终止事件是最后一个事件")
        ids = {e.response.id for e in events if hasattr(e, "response")}
        self.assertEqual(len(ids), 1, "生命周期事件的 response.id 相同")

    def test_原始事件流_符合事件规律_增量拼接等于完整回复(self):
        for model in MODELS:
            with self.subTest(模型=model):
                events = raw_events(self.client, model=model, input=QUESTION)
                self.assert_event_law(events)
                types = [e.type for e in events]
                self.assertEqual(types[-1], "response.completed")
                text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
                self.assertEqual(text, MOCK_REPLY)
                done = [e.text for e in events if e.type == "response.output_text.done"]
                self.assertEqual(done, [MOCK_REPLY])
                # 每个输出项先 added 后 done，索引一致
                added = [e.output_index for e in events if e.type == "response.output_item.added"]
                finished = [e.output_index for e in events if e.type == "response.output_item.done"]
                self.assertEqual(added, finished)
                self.assertEqual(added, list(range(len(added))), "输出项索引从 0 起连续")
                final = events[-1].response
                self.assertEqual(final.status, "completed")
                self.assertEqual(final.output_text, MOCK_REPLY, "completed 必须带完整的 output")
                self.assertGreater(final.usage.input_tokens, 0, "completed 必须带用量")
                self.assertGreater(final.usage.output_tokens, 0)

    def test_流辅助_文本增量与最终回复完整(self):
        for model in MODELS:
            with self.subTest(模型=model):
                with self.client.responses.stream(model=model, input=QUESTION) as stream:
                    text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
                    final = stream.get_final_response()
                self.assertEqual(text, MOCK_REPLY)
                self.assert_text_response(final, model)

    def assert_two_calls(self, response):
        """模拟器并行调用两个函数：名称依次、call_id 互不相同、参数是示例参数；返回这两个调用。"""
        calls = [item for item in response.output if item.type == "function_call"]
        self.assertEqual([c.name for c in calls], ["get_weather", "get_time"])
        self.assertEqual(len({c.call_id for c in calls}), 2, "两个调用的 call_id 必须不同")
        for call in calls:
            self.assertEqual(json.loads(call.arguments), SAMPLE_ARGUMENTS)
        return calls

    @staticmethod
    def next_input(first, calls):
        """第二轮的输入：原问题、上一轮的全部输出项、两个函数调用的结果。"""
        outputs = [
            {"type": "function_call_output", "call_id": call.call_id, "output": f"{call.name} 的结果：晴，18 度"}
            for call in calls
        ]
        return [{"role": "user", "content": QUESTION}] + [item_param(item) for item in first.output] + outputs

    def test_两个并行函数调用_往返后回答文本(self):
        for model in MODELS:
            with self.subTest(模型=model):
                first = self.client.responses.create(model=model, input=QUESTION, tools=TOOLS)
                self.assertEqual(first.status, "completed")
                calls = self.assert_two_calls(first)
                second = self.client.responses.create(model=model, tools=TOOLS, input=self.next_input(first, calls))
                self.assertEqual(second.status, "completed")
                self.assertEqual(second.output_text, MOCK_REPLY)
                self.assertEqual([i for i in second.output if i.type == "function_call"], [])

    def test_流式_两个并行函数调用_参数增量完整_且能往返(self):
        for model in MODELS:
            with self.subTest(模型=model):
                with self.client.responses.stream(model=model, input=QUESTION, tools=TOOLS) as stream:
                    events = list(stream)
                    first = stream.get_final_response()
                calls = self.assert_two_calls(first)
                arguments = {}
                for e in events:
                    if e.type == "response.function_call_arguments.delta":
                        arguments[e.item_id] = arguments.get(e.item_id, "") + e.delta
                done = {e.item_id: e.arguments for e in events if e.type == "response.function_call_arguments.done"}
                self.assertEqual(len(done), 2, "每个调用一个 function_call_arguments.done")
                self.assertEqual(arguments, done, "参数增量拼接等于 done 里的完整参数")
                with self.client.responses.stream(
                    model=model, tools=TOOLS, input=self.next_input(first, calls)
                ) as stream:
                    text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
                    second = stream.get_final_response()
                self.assertEqual(text, MOCK_REPLY)
                self.assertEqual(second.output_text, MOCK_REPLY)

    def test_图片输入_data_url_每种上游都接受(self):
        content = [
            {"type": "input_text", "text": "图里是什么？"},
            {"type": "input_image", "image_url": PIXEL_PNG, "detail": "auto"},
        ]
        for model in MODELS:
            with self.subTest(模型=model):
                resp = self.client.responses.create(model=model, input=[{"role": "user", "content": content}])
                self.assertEqual(resp.output_text, MOCK_REPLY)


class ResponsesSessionTest(unittest.TestCase):
    """翻译目标上的会话：previous_response_id 展开保存的上一轮、retrieve 读回、按密钥隔离。"""

    FOLLOW_UP = "请再详细说一遍"

    def setUp(self):
        self.client = gateway()

    def test_previous_response_id_上游看到上一轮_回复回显该_id(self):
        for model in TRANSLATED:
            with self.subTest(模型=model):
                first = self.client.responses.create(model=model, input=QUESTION)
                fresh = self.client.responses.create(model=model, input=self.FOLLOW_UP, store=False)
                second = self.client.responses.create(
                    model=model, input=self.FOLLOW_UP, previous_response_id=first.id
                )
                self.assertEqual(second.output_text, MOCK_REPLY)
                self.assertEqual(second.previous_response_id, first.id)
                self.assertNotEqual(second.id, first.id)
                # 模拟器按请求体长度估算输入 token：展开了上一轮的请求一定更长
                self.assertGreater(
                    second.usage.input_tokens, fresh.usage.input_tokens, "上游应看到上一轮的输入与输出"
                )

    def test_previous_response_id_链式三轮_每轮都展开全部历史(self):
        first = self.client.responses.create(model="claude", input=QUESTION)
        second = self.client.responses.create(model="claude", input=self.FOLLOW_UP, previous_response_id=first.id)
        third = self.client.responses.create(model="claude", input=self.FOLLOW_UP, previous_response_id=second.id)
        self.assertEqual(third.output_text, MOCK_REPLY)
        self.assertGreater(third.usage.input_tokens, second.usage.input_tokens, "第三轮带着前两轮")

    def test_retrieve_读回保存的回复(self):
        for model in TRANSLATED:
            with self.subTest(模型=model):
                created = self.client.responses.create(model=model, input=QUESTION)
                stored = self.client.responses.retrieve(created.id)
                self.assertEqual(stored.id, created.id)
                self.assertEqual(stored.status, "completed")
                self.assertEqual(stored.output_text, MOCK_REPLY)
                self.assertEqual(stored.model, model)

    def test_流式回复也被保存_能读回_能接续(self):
        for model in ("demo", "claude"):
            with self.subTest(模型=model):
                with self.client.responses.stream(model=model, input=QUESTION) as stream:
                    final = stream.get_final_response()
                stored = self.client.responses.retrieve(final.id)
                self.assertEqual(stored.output_text, MOCK_REPLY)
                events = raw_events(self.client, model=model, input=self.FOLLOW_UP, previous_response_id=final.id)
                self.assertEqual(events[-1].type, "response.completed")
                self.assertEqual(events[-1].response.previous_response_id, final.id)

    def test_store_false_不保存_retrieve_抛出_NotFoundError(self):
        created = self.client.responses.create(model="demo", input=QUESTION, store=False)
        with self.assertRaises(openai.NotFoundError) as ctx:
            self.client.responses.retrieve(created.id)
        self.assertEqual(ctx.exception.status_code, 404)
        with self.assertRaises(openai.BadRequestError) as ctx:
            self.client.responses.create(model="demo", input=self.FOLLOW_UP, previous_response_id=created.id)
        self.assertEqual(ctx.exception.code, "previous_response_not_found")

    def test_别的密钥读不到也接续不了保存的回复(self):
        created = self.client.responses.create(model="demo", input=QUESTION)
        other = gateway(RESTRICTED_KEY)
        with self.assertRaises(openai.NotFoundError) as ctx:
            other.responses.retrieve(created.id)
        self.assertEqual(ctx.exception.status_code, 404)
        with self.assertRaises(openai.BadRequestError) as ctx:
            other.responses.create(model="demo", input=self.FOLLOW_UP, previous_response_id=created.id)
        self.assertEqual(ctx.exception.code, "previous_response_not_found")
        # 保存者自己仍能读回
        self.assertEqual(self.client.responses.retrieve(created.id).id, created.id)

    def test_未知的_previous_response_id_抛出_BadRequestError(self):
        for model in TRANSLATED:
            for stream in (False, True):
                with self.subTest(模型=model, 流式=stream):
                    with self.assertRaises(openai.BadRequestError) as ctx:
                        self.client.responses.create(
                            model=model, input=QUESTION, previous_response_id="resp_不存在的回复", stream=stream
                        )
                    exc = ctx.exception
                    self.assertEqual(exc.status_code, 400)
                    self.assertEqual(exc.code, "previous_response_not_found")
                    self.assertEqual(exc.param, "previous_response_id")

    def test_retrieve_未知_id_抛出_NotFoundError(self):
        with self.assertRaises(openai.NotFoundError) as ctx:
            self.client.responses.retrieve("resp_不存在的回复")
        self.assertEqual(ctx.exception.status_code, 404)


class ResponsesErrorTest(unittest.TestCase):
    """每种错误状态码：响应体是 OpenAI 错误信封，SDK 抛出对应的异常类；200 之后的错误在事件流里。"""

    def setUp(self):
        self.client = gateway()

    def assert_envelope(self, exc, status, error_type):
        """OpenAI 错误信封：状态码、type、非空消息（SDK 把 `error` 里的对象放在 exc.body）。"""
        self.assertEqual(exc.status_code, status)
        self.assertIsInstance(exc.body, dict, f"错误体应是 JSON 对象：{exc.body!r}")
        self.assertEqual(exc.body.get("type"), error_type)
        self.assertTrue(exc.body.get("message"), "错误消息不能为空")

    def test_400_input_类型错误_抛出_BadRequestError(self):
        # input 应是字符串或条目数组；SDK 不在本地校验类型，原样发出
        for model in MODELS:
            for stream in (False, True):
                with self.subTest(模型=model, 流式=stream):
                    with self.assertRaises(openai.BadRequestError) as ctx:
                        self.client.responses.create(model=model, input=12345, stream=stream)
                    self.assert_envelope(ctx.exception, 400, "invalid_request_error")
                    self.assertEqual(ctx.exception.param, "input")

    def test_401_错误密钥_抛出_AuthenticationError(self):
        for stream in (False, True):
            with self.subTest(流式=stream):
                with self.assertRaises(openai.AuthenticationError) as ctx:
                    gateway("sk-wrong-key").responses.create(model="gpt", input=QUESTION, stream=stream)
                self.assertEqual(ctx.exception.status_code, 401)
                self.assertEqual(ctx.exception.code, "invalid_api_key")

    def test_403_受限密钥用别的模型_抛出_PermissionDeniedError(self):
        client = gateway(RESTRICTED_KEY)
        for model in ("gpt", "claude"):
            with self.subTest(模型=model):
                with self.assertRaises(openai.PermissionDeniedError) as ctx:
                    client.responses.create(model=model, input=QUESTION)
                self.assertEqual(ctx.exception.status_code, 403)
                self.assertEqual(ctx.exception.code, "model_not_allowed")
        # 同一个密钥用允许的模型正常
        self.assertEqual(client.responses.create(model="demo", input=QUESTION).output_text, MOCK_REPLY)

    def test_404_未知模型_抛出_NotFoundError(self):
        for stream in (False, True):
            with self.subTest(流式=stream):
                with self.assertRaises(openai.NotFoundError) as ctx:
                    self.client.responses.create(model="不存在的模型", input=QUESTION, stream=stream)
                self.assert_envelope(ctx.exception, 404, "invalid_request_error")
                self.assertEqual(ctx.exception.code, "model_not_found")

    def test_413_请求体超过上限_抛出_APIStatusError(self):
        # openai SDK 没有 413 专用的异常类，抛出基类 APIStatusError
        with self.assertRaises(openai.APIStatusError) as ctx:
            self.client.responses.create(model="gpt", input="长" * MAX_BODY_BYTES)
        self.assertEqual(ctx.exception.status_code, 413)
        self.assertEqual(ctx.exception.code, "request_too_large")

    def test_429_密钥超过请求数上限_抛出_RateLimitError_带_retry_after(self):
        client = gateway(LIMITED_KEY)
        self.assertEqual(client.responses.create(model="demo", input=QUESTION).output_text, MOCK_REPLY)
        with self.assertRaises(openai.RateLimitError) as ctx:
            client.responses.create(model="demo", input=QUESTION)
        exc = ctx.exception
        self.assertEqual(exc.status_code, 429)
        # 与 OpenAI 一致：type 是超限的维度（requests 或 tokens），code 是 rate_limit_exceeded
        self.assertIn(exc.body.get("type"), ("requests", "tokens"))
        self.assertEqual(exc.code, "rate_limit_exceeded")
        self.assertTrue(exc.body.get("message"), "错误消息不能为空")
        self.assertGreater(int(ctx.exception.response.headers["retry-after"]), 0)

    def test_429_上游限流_翻译与透传都抛出_RateLimitError_带_retry_after(self):
        for model in (RATE_LIMITED_COMPAT, RATE_LIMITED_GPT):
            with self.subTest(模型=model):
                with self.assertRaises(openai.RateLimitError) as ctx:
                    self.client.responses.create(model=model, input=QUESTION)
                self.assertEqual(ctx.exception.status_code, 429)
                self.assertTrue(ctx.exception.message)
                self.assertGreater(int(ctx.exception.response.headers["retry-after"]), 0)

    def test_500_翻译目标上游故障_抛出_InternalServerError(self):
        for stream in (False, True):
            with self.subTest(流式=stream):
                with self.assertRaises(openai.InternalServerError) as ctx:
                    self.client.responses.create(model=FAIL_500_COMPAT, input=QUESTION, stream=stream)
                self.assertEqual(ctx.exception.status_code, 500)
                self.assertTrue(ctx.exception.body.get("message"), "错误消息不能为空")

    def test_500_透传目标上游故障_原样转发上游错误体(self):
        with self.assertRaises(openai.InternalServerError) as ctx:
            self.client.responses.create(model=FAIL_500_GPT, input=QUESTION)
        self.assertEqual(ctx.exception.status_code, 500)
        self.assertEqual(ctx.exception.body.get("message"), "模拟的上游故障（500）")

    def test_503_没有可用上游_抛出_InternalServerError(self):
        for stream in (False, True):
            with self.subTest(流式=stream):
                with self.assertRaises(openai.InternalServerError) as ctx:
                    self.client.responses.create(model=UNAVAILABLE, input=QUESTION, stream=stream)
                self.assertEqual(ctx.exception.status_code, 503)
                self.assertTrue(ctx.exception.body.get("message"), "错误消息不能为空")

    def assert_single_failed(self, events):
        """200 之后出错：created 在先、序号递增，最后恰好一个 response.failed（带错误码与消息），没有别的终止事件。"""
        types = [e.type for e in events]
        self.assertEqual(types[0], "response.created")
        numbers = [e.sequence_number for e in events]
        self.assertTrue(all(a < b for a, b in zip(numbers, numbers[1:])), f"sequence_number 必须严格递增：{numbers}")
        self.assertEqual(numbers, list(range(len(numbers))), "sequence_number 从 0 起连续")
        self.assertEqual([t for t in types if t in TERMINALS], ["response.failed"], f"恰好一个 response.failed：{types}")
        self.assertEqual(types[-1], "response.failed")
        failed = events[-1].response
        self.assertEqual(failed.status, "failed")
        self.assertTrue(failed.error.code, "response.failed 要带错误码")
        self.assertTrue(failed.error.message, "response.failed 要带错误消息")

    def test_流中上游报错_翻译目标以唯一的_response_failed_结束(self):
        for model in (STREAM_ERROR_COMPAT, STREAM_DROP_CLAUDE):
            with self.subTest(模型=model):
                events = raw_events(self.client, model=model, input=QUESTION)
                self.assert_single_failed(events)
        # OpenAI 兼容的模拟器在报错之前已发出两个文本增量，它们照样转给客户端
        events = raw_events(self.client, model=STREAM_ERROR_COMPAT, input=QUESTION)
        deltas = [e for e in events if e.type == "response.output_text.delta"]
        self.assertGreater(len(deltas), 0, "出错之前的增量已经发给客户端")

    def test_流中上游报错_透传目标转发上游自己的_response_failed(self):
        events = raw_events(self.client, model=STREAM_ERROR_GPT, input=QUESTION)
        self.assert_single_failed(events)

    def test_流中上游报错_流辅助的_get_final_response_报错(self):
        # SDK 对没有 response.completed 的流在 get_final_response() 时抛出 RuntimeError（参考文档 §R5）
        with self.client.responses.stream(model=STREAM_ERROR_COMPAT, input=QUESTION) as stream:
            types = [e.type for e in stream]
            self.assertEqual(types[-1], "response.failed")
            with self.assertRaises(RuntimeError):
                stream.get_final_response()


if __name__ == "__main__":
    unittest.main(verbosity=2)
