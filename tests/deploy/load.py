"""零停机测试的负载：持续发送非流式请求与长流（200 块 × 20 毫秒），统计失败与被截断的流。

用法：python3 load.py 端口 密钥 停止文件 结果文件
停止文件出现后各工作线程做完手上的请求就退出，结果以 JSON 写入结果文件。
每个请求新建连接：平滑升级时旧进程会关闭空闲的长连接，复用恰好被关闭的连接属于客户端应重试的情形
（官方 SDK 会自动重试），不计入网关的失败。
"""

import http.client
import json
import os
import sys
import threading
import time

NON_STREAM_WORKERS = 4
STREAM_WORKERS = 4
STREAM_CHUNKS = 200
REQUEST_TIMEOUT_SECONDS = 60
PAUSE_SECONDS = 0.02


class Tally:
    """线程安全的计数。"""

    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {"ok": 0, "streams_ok": 0, "failed": 0, "truncated": 0}
        self.errors = []

    def add(self, key, error=None):
        with self.lock:
            self.counts[key] += 1
            if error and len(self.errors) < 20:
                self.errors.append(error)


def post(port, key, body):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_SECONDS)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json", "Connection": "close"}
    conn.request("POST", "/v1/chat/completions", body=json.dumps(body), headers=headers)
    return conn, conn.getresponse()


def one_plain(port, key, tally):
    body = {"model": "demo", "messages": [{"role": "user", "content": "你好"}]}
    conn, resp = post(port, key, body)
    data = resp.read()
    conn.close()
    if resp.status == 200 and json.loads(data)["choices"][0]["message"]["content"]:
        tally.add("ok")
    else:
        tally.add("failed", f"非流式 {resp.status}: {data[:200]!r}")


def one_stream(port, key, tally):
    body = {"model": "demo", "stream": True, "messages": [{"role": "user", "content": "讲个长故事"}]}
    conn, resp = post(port, key, body)
    if resp.status != 200:
        tally.add("failed", f"流 {resp.status}: {resp.read()[:200]!r}")
        return
    events = [e for e in resp.read().decode("utf-8").split("\n\n") if e.startswith("data: ")]
    conn.close()
    contents = sum(1 for e in events if '"content":"' in e and '"role"' not in e)
    if events and events[-1] == "data: [DONE]" and contents == STREAM_CHUNKS:
        tally.add("streams_ok")
    else:
        tally.add("truncated", f"流被截断：{len(events)} 个事件，{contents} 个内容块，最后：{events[-1:]!r}")


def worker(fn, port, key, stop_file, tally):
    while not os.path.exists(stop_file):
        try:
            fn(port, key, tally)
        except Exception as e:  # 任何异常都记为失败，不能静默丢失
            tally.add("failed", f"{fn.__name__}: {type(e).__name__}: {e}")
        time.sleep(PAUSE_SECONDS)


def main():
    port, key, stop_file, result_file = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    tally = Tally()
    jobs = [one_plain] * NON_STREAM_WORKERS + [one_stream] * STREAM_WORKERS
    threads = [threading.Thread(target=worker, args=(fn, port, key, stop_file, tally)) for fn in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with open(result_file, "w", encoding="utf-8") as f:
        json.dump({**tally.counts, "errors": tally.errors}, f, ensure_ascii=False)


if __name__ == "__main__":
    main()
