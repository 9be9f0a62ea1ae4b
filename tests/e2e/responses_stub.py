#!/usr/bin/env python3
"""最小的 OpenAI Responses 桩服务器（只用标准库，只监听 127.0.0.1）。

用途：离线检查 tests/e2e/codex.sh 本身，并抓取 Codex 命令行实际发出的请求。
用法：python3 responses_stub.py <日志文件> [端口文件]
  端口取空闲端口，启动后写入端口文件（缺省打印到标准输出）。
  每个请求的方法、路径、请求头、请求体按一行 JSON 追加写入日志文件。
注意：Codex 会执行模型要求的工具调用，所以桩服务器永远只回纯文本，绝不回工具调用。
"""

import time
from urllib.parse import urlsplit

from stub_common import RecordingHandler, serve

# 桩服务器固定回答的文本；codex.sh 的自测按这个字符串检查
REPLY_TEXT = "你好，我是 Responses 桩服务器。"
# 回答里报告的输入 token 数
INPUT_TOKENS = 42
# 回答里报告的输出 token 数
OUTPUT_TOKENS = 9
# 固定的响应 id 与消息项 id
RESPONSE_ID = "resp_stub_0001"
MESSAGE_ID = "msg_stub_0001"
# 模型列表里列出的模型
MODELS = ["gpt-5.3-codex", "demo"]


class StubHandler(RecordingHandler):
    """按路径分派 Responses 的请求（每个请求由 RecordingHandler 记录到日志文件）。"""

    def send_not_found(self):
        self.send_json(404, {"error": {"message": "桩服务器没有这个路径",
                                       "type": "invalid_request_error",
                                       "param": None, "code": "not_found"}})

    def do_GET(self):
        self.record(b"")
        if urlsplit(self.path).path == "/v1/models":
            data = [{"id": m, "object": "model", "created": 1735689600,
                     "owned_by": "chatnexus-stub"} for m in MODELS]
            self.send_json(200, {"object": "list", "data": data})
        else:
            self.send_not_found()

    def do_POST(self):
        body = self.record(self.read_body())
        if urlsplit(self.path).path == "/v1/responses" and isinstance(body, dict):
            if body.get("stream"):
                self.send_stream(body)
            else:
                self.send_json(200, build_response(body, "completed"))
        else:
            self.send_not_found()

    def send_stream(self, body):
        """按 Responses 的 SSE 事件顺序发出一条纯文本回答，结束后关闭连接。"""
        events = build_events(body)
        for number, event in enumerate(events):
            event["sequence_number"] = number
        self.send_events((event["type"], event) for event in events)

def build_events(body):
    """构造一条纯文本回答的全部流式事件（sequence_number 由调用方按顺序填）。"""
    start = build_response(body, "in_progress")
    item_open = {"id": MESSAGE_ID, "type": "message", "status": "in_progress",
                 "role": "assistant", "content": []}
    where = {"item_id": MESSAGE_ID, "output_index": 0, "content_index": 0}
    empty_part = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
    events = [
        {"type": "response.created", "response": start},
        {"type": "response.in_progress", "response": start},
        {"type": "response.output_item.added", "output_index": 0, "item": item_open},
        {"type": "response.content_part.added", **where, "part": empty_part},
    ]
    # 文本分两段发，检查客户端会拼接增量
    half = len(REPLY_TEXT) // 2
    for piece in (REPLY_TEXT[:half], REPLY_TEXT[half:]):
        events.append({"type": "response.output_text.delta", **where,
                       "delta": piece, "logprobs": []})
    done = build_response(body, "completed")
    events += [
        {"type": "response.output_text.done", **where, "text": REPLY_TEXT, "logprobs": []},
        {"type": "response.content_part.done", **where, "part": build_text_part()},
        {"type": "response.output_item.done", "output_index": 0,
         "item": done["output"][0]},
        {"type": "response.completed", "response": done},
    ]
    return events


def build_text_part():
    """完整的 output_text 内容片段。"""
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": REPLY_TEXT}


def build_response(body, status):
    """按请求构造响应对象；status 为 in_progress 时 output 为空、usage 为 null。"""
    finished = status == "completed"
    output = []
    usage = None
    if finished:
        output = [{"id": MESSAGE_ID, "type": "message", "status": "completed",
                   "role": "assistant", "content": [build_text_part()]}]
        usage = {"input_tokens": INPUT_TOKENS,
                 "input_tokens_details": {"cached_tokens": 0},
                 "output_tokens": OUTPUT_TOKENS,
                 "output_tokens_details": {"reasoning_tokens": 0},
                 "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS}
    return {
        "id": RESPONSE_ID, "object": "response", "created_at": int(time.time()),
        "status": status, "error": None, "incomplete_details": None,
        "instructions": body.get("instructions"), "model": body.get("model", "unknown"),
        "output": output, "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "tool_choice": body.get("tool_choice", "auto"), "tools": body.get("tools", []),
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "reasoning": body.get("reasoning"), "store": body.get("store", False),
        "temperature": 1.0, "top_p": 1.0, "truncation": "disabled",
        "usage": usage, "metadata": {},
    }


if __name__ == "__main__":
    serve(StubHandler)
