#!/usr/bin/env python3
"""最小的 Anthropic Messages 桩服务器（只用标准库，只监听 127.0.0.1）。

用途：离线检查 tests/e2e/claude_code.sh 本身，并抓取 Claude Code 实际发出的请求。
用法：python3 anthropic_stub.py <日志文件> [端口文件]
  端口取空闲端口，启动后写入端口文件（缺省打印到标准输出）。
  每个请求的方法、路径、请求头、请求体按一行 JSON 追加写入日志文件。
"""

from urllib.parse import urlsplit

from stub_common import RecordingHandler, serve

# 桩服务器固定回答的文本；claude_code.sh 的自测按这个字符串检查
REPLY_TEXT = "你好，我是桩服务器。"
# 回答里报告的输出 token 数
OUTPUT_TOKENS = 9
# count_tokens 固定返回的输入 token 数
INPUT_TOKENS = 42
# 模型列表里列出的模型
MODELS = ["claude-sonnet-4-5", "demo"]


class StubHandler(RecordingHandler):
    """按路径分派 Anthropic 的请求（每个请求由 RecordingHandler 记录到日志文件）。"""

    def do_HEAD(self):
        self.record(b"")
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def do_GET(self):
        self.record(b"")
        if urlsplit(self.path).path == "/v1/models":
            data = [{"type": "model", "id": m, "display_name": m,
                     "created_at": "2025-01-01T00:00:00Z"} for m in MODELS]
            self.send_json(200, {"data": data, "has_more": False,
                                 "first_id": MODELS[0], "last_id": MODELS[-1]})
        else:
            self.send_json(404, {"type": "error", "error": {
                "type": "not_found_error", "message": "桩服务器没有这个路径"}})

    def do_POST(self):
        body = self.record(self.read_body())
        path = urlsplit(self.path).path
        if path == "/v1/messages/count_tokens":
            self.send_json(200, {"input_tokens": INPUT_TOKENS})
        elif path == "/v1/messages" and isinstance(body, dict):
            if body.get("stream"):
                self.send_stream(body)
            else:
                self.send_json(200, build_message(body))
        else:
            self.send_json(404, {"type": "error", "error": {
                "type": "not_found_error", "message": "桩服务器没有这个路径"}})

    def send_stream(self, body):
        """按 Anthropic 的 SSE 事件顺序发出一条完整回答，结束后关闭连接。"""
        start = build_message(body)
        start["content"] = []
        start["stop_reason"] = None
        start["usage"]["output_tokens"] = 1
        half = len(REPLY_TEXT) // 2
        events = [
            ("message_start", {"type": "message_start", "message": start}),
            ("content_block_start", {"type": "content_block_start", "index": 0,
                                     "content_block": {"type": "text", "text": ""}}),
            ("ping", {"type": "ping"}),
        ]
        # 文本分两段发，检查客户端会拼接增量
        for piece in (REPLY_TEXT[:half], REPLY_TEXT[half:]):
            events.append(("content_block_delta", {
                "type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": piece}}))
        events += [
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ("message_delta", {"type": "message_delta",
                               "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                               "usage": {"output_tokens": OUTPUT_TOKENS}}),
            ("message_stop", {"type": "message_stop"}),
        ]
        self.send_events(events)

def build_message(body):
    """按请求的模型名构造一条完整的非流式回答。"""
    return {
        "id": "msg_stub_0001", "type": "message", "role": "assistant",
        "model": body.get("model", "unknown"),
        "content": [{"type": "text", "text": REPLY_TEXT}],
        "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": OUTPUT_TOKENS,
                  "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
    }


if __name__ == "__main__":
    serve(StubHandler)
