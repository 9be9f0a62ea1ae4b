"""端到端桩服务器公用：记录请求的 HTTP 处理器骨架与启动逻辑（只用标准库，只监听 127.0.0.1）。

anthropic_stub.py 与 responses_stub.py 从这里继承 RecordingHandler，只写自己协议的路径分派与回答。
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class RecordingHandler(BaseHTTPRequestHandler):
    """把每个请求记录到日志文件，并提供写 JSON 与 SSE 回答的方法。"""

    protocol_version = "HTTP/1.1"
    log_path = ""

    def log_message(self, *_args):
        # 关掉默认的 stderr 访问日志，请求已写进日志文件
        pass

    def record(self, body):
        """把一个请求按一行 JSON 追加到日志文件；返回解析后的请求体。"""
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = body.decode("utf-8", "replace")
        entry = {"method": self.command, "path": self.path,
                 "headers": dict(self.headers.items()), "body": parsed}
        with open(self.log_path, "a", encoding="utf-8") as log:
            log.write(json.dumps(entry, ensure_ascii=False) + "\n")
        return parsed

    def read_body(self):
        """读出请求体（没有时为空字节串）。"""
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def send_json(self, status, payload):
        """以给定状态码发出一个 JSON 回答。"""
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def send_events(self, events):
        """发出一个 SSE 事件流：events 为 (事件名, data 对象) 的序列；结束后关闭连接。"""
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("connection", "close")
        self.end_headers()
        for name, data in events:
            chunk = f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"
            self.wfile.write(chunk.encode("utf-8"))
            self.wfile.flush()
        self.close_connection = True


def serve(handler):
    """按命令行参数启动桩服务器：python3 <桩>.py <日志文件> [端口文件]。

    端口取空闲端口，启动后写入端口文件（缺省打印到标准输出）；一直运行到被终止。
    """
    handler.log_path = sys.argv[1]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    port = str(server.server_address[1])
    if len(sys.argv) > 2:
        with open(sys.argv[2], "w", encoding="utf-8") as out:
            out.write(port)
    else:
        print(port, flush=True)
    server.serve_forever()
