#!/usr/bin/env python3
"""ChatNexus 压测编排（由 bench/run.sh 调用，只访问 127.0.0.1）。

子命令：
  bench  同一次运行里对比 直连模拟器 / 裸 Pingora 透传 / nginx 透传 / ChatNexus（OpenAI 与 Anthropic 目标），
         非流式（wrk）与流式（examples/stream_load）各测一轮，打印 Markdown 表格与比值；
  hold   经 ChatNexus 同时保持大量打开的流，确认全部成功并报告网关的峰值 RSS；
  soak   以稳定负载持续压测，定期采样网关 RSS，报告增长；
  profile 用 callgrind 数裸 Pingora 与 ChatNexus 每个请求、每个流式块的用户态指令数（剖析用）。
参数全部来自环境变量，见 docs/performance.md。
"""

import copy
import datetime
import hashlib
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RELEASE = ROOT / "target" / "release"
GATEWAY_BIN = RELEASE / "chatnexus"
PASSTHROUGH_BIN = RELEASE / "examples" / "passthrough"
STREAM_LOAD_BIN = RELEASE / "examples" / "stream_load"
RESULTS_DIR = ROOT / "target" / "bench"

LOOPBACK = "127.0.0.1"
CHAT_PATH = "/v1/chat/completions"
MESSAGES_PATH = "/v1/messages"
# Messages 请求的 max_tokens（Anthropic 必填）
MESSAGES_MAX_TOKENS = 256
CLIENT_KEY = "sk-chatnexus-bench"
OPENAI_MODEL = "demo"
ANTHROPIC_MODEL = "claude"
PROMPT = "你好，请介绍一下你自己"
# 向量压测（bench/run.sh embeddings）：模型、一批的条数与每条的文本（不含引号：请求体写在 wrk 的单引号字符串里）
EMBEDDING_MODEL = "bench-embed"
# 上游模型名与客户端可见名相同（与聊天的 demo 一样不改名，两者的请求体都零拷贝转发）
EMBEDDING_UPSTREAM = EMBEDDING_MODEL
EMBEDDING_INPUTS = 100
EMBEDDING_TEXT = "检索增强生成先把文档切成片段，每个片段算出向量后存进索引，查询时按相似度取回最相关的几段。"
# UTF-8 里一个汉字的字节数（补齐聊天请求体到同样大小时用）
CJK_BYTES = 3
CLK_TCK = os.sysconf("SC_CLK_TCK")
PORT_WAIT_SECS = 15
STOP_WAIT_SECS = 5
WRK_TIMEOUT = "5s"
# 非流式压测时模拟器的分块数（只影响回复文本的切分，与缺省值相同）
NONSTREAM_CHUNKS = 8
# 每个流除内容块外另有的事件数：角色块、结束块、用量块、[DONE]
STREAM_EXTRA_EVENTS = 4
# 一个流在网关里占两个文件描述符（客户端与上游连接），另留给监听、epoll、日志等的余量
FDS_PER_STREAM = 2
FD_MARGIN = 64
MICROS = 1e6
# 压测配置里各层限流的上限：足够高，压测中从不触发拒绝，但每个请求仍完整地判定与计数
BENCH_LIMIT = 1_000_000_000
KIB = 1024

# 路径名（表格的行）
DIRECT = "直连模拟器"
PINGORA = "裸 Pingora 透传"
NGINX = "nginx 透传"
CHATNEXUS = "ChatNexus → OpenAI"
CHATNEXUS_ANTHROPIC = "ChatNexus → Anthropic（翻译）"
# Anthropic Messages 客户端：目标是 Anthropic 时透传，是 OpenAI 时经枢纽翻译（只在 profile 中测）
MESSAGES_NATIVE = "Messages → Anthropic（透传）"
MESSAGES_TRANSLATED = "Messages → OpenAI（翻译）"
MESSAGES_PATHS = (MESSAGES_NATIVE, MESSAGES_TRANSLATED)
# OpenAI Responses 客户端：目标是 OpenAI 时透传，是 Anthropic 时经枢纽翻译（只在 profile 中测）
RESPONSES_NATIVE = "Responses → OpenAI（透传）"
RESPONSES_TRANSLATED = "Responses → Anthropic（翻译）"
RESPONSES_PATHS = (RESPONSES_NATIVE, RESPONSES_TRANSLATED)
RESPONSES_PATH = "/v1/responses"
EMBEDDINGS_PATH = "/v1/embeddings"
ALL_PATHS = [DIRECT, PINGORA, NGINX, CHATNEXUS, CHATNEXUS_ANTHROPIC]


def env_list(name, default):
    """读取空格分隔的整数列表环境变量。"""
    return [int(x) for x in os.environ.get(name, default).split()]


def env_num(name, default):
    """读取数字环境变量。"""
    return float(os.environ.get(name, default))


class Settings:
    """全部可调参数；QUICK=1 时换成几秒钟跑完的缺省值。"""

    def __init__(self):
        quick = os.environ.get("QUICK") == "1"
        self.quick = quick
        self.ns_secs = env_num("NS_SECS", "2" if quick else "8")
        self.concurrency = env_list("CONCURRENCY", "16" if quick else "1 16 64 256")
        self.stream_secs = env_num("STREAM_SECS", "2" if quick else "5")
        self.stream_concurrency = env_list("STREAM_CONCURRENCY", "16" if quick else "1 16")
        self.stream_chunks = env_list("STREAM_CHUNKS", "10 200")
        self.chunk_delay_ms = int(env_num("STREAM_CHUNK_DELAY_MS", "0"))
        self.threads = int(env_num("GATEWAY_THREADS", "1"))
        self.pin = os.environ.get("PIN", "1") == "1"
        self.log_level = os.environ.get("GATEWAY_LOG", "info")
        self.extra_yaml = os.environ.get("GATEWAY_EXTRA_YAML", "")
        # 裸 Pingora 透传也用单线程运行时（网关的缺省）；缺省照议题的对照组，用 Pingora 的缺省（偷任务）
        self.passthrough_no_steal = os.environ.get("PASSTHROUGH_NO_STEAL") == "1"
        # 压测请求带的客户端密钥（keys 子命令换成虚拟密钥）
        self.client_key = CLIENT_KEY
        # 绑核：被测代理独占 CPU 1，模拟器与压测工具共享 CPU 0
        self.proxy_cpu = "1" if self.pin else ""
        self.side_cpu = "0" if self.pin else ""


def free_ports(count):
    """同时持有多个监听再一起释放，保证端口互不相同。"""
    socks = [socket.socket() for _ in range(count)]
    for s in socks:
        s.bind((LOOPBACK, 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def wait_port(port, proc):
    """等待端口可连接；进程提前退出或超时则报错。"""
    deadline = time.monotonic() + PORT_WAIT_SECS
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            sys.exit(f"{proc.name} 启动失败，日志见 {proc.log_path}")
        try:
            socket.create_connection((LOOPBACK, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{proc.name} 的端口 {port} 在 {PORT_WAIT_SECS} 秒内没有就绪")


def pinned(cpu, argv):
    """给命令加上 taskset 绑核（cpu 为空时不绑）。"""
    return (["taskset", "-c", cpu] if cpu else []) + [str(a) for a in argv]


class Proc:
    """本脚本启动的一个后台进程：只按它自己的 pid 停止，并能读取它的 CPU 时间与内存。"""

    def __init__(self, name, argv, cpu, workdir, env=None):
        self.name = name
        self.log_path = Path(workdir) / f"{name}.log"
        log = open(self.log_path, "wb")
        full_env = dict(os.environ, **(env or {}))
        self.popen = subprocess.Popen(
            pinned(cpu, argv), stdout=log, stderr=log, cwd=workdir, env=full_env
        )
        log.close()

    def cpu_seconds(self):
        """进程（含全部线程）累计的用户态加内核态 CPU 秒数。"""
        with open(f"/proc/{self.popen.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def memory_kib(self, field):
        """读取 /proc/PID/status 的内存字段（VmRSS 当前驻留、VmHWM 峰值驻留），单位 KiB。"""
        with open(f"/proc/{self.popen.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(STOP_WAIT_SECS)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def gateway_config(workdir, port, metrics_port, mock_port, settings):
    """生成 ChatNexus 配置：鉴权、本地限流、指标、OpenAI 与 Anthropic 两个目标（都指向模拟器）、价目表。"""
    digest = hashlib.sha256(CLIENT_KEY.encode()).hexdigest()
    base = f"http://{LOOPBACK}:{mock_port}"
    text = f"""server:
  listen: "{LOOPBACK}:{port}"
  threads: {settings.threads}
  metrics_listen: "{LOOPBACK}:{metrics_port}"
  pid_file: "{workdir}/chatnexus.pid"
  upgrade_sock: "{workdir}/chatnexus_upgrade.sock"
auth:
  keys: [ {{ name: bench, sha256: "{digest}" }} ]
providers:
  - {{ name: openai, kind: openai, base_url: "{base}", api_key_env: BENCH_OPENAI_KEY }}
  - {{ name: anthropic, kind: anthropic, base_url: "{base}", api_key_env: BENCH_ANTHROPIC_KEY }}
models:
  - {{ name: {OPENAI_MODEL}, targets: [ {{ provider: openai }} ] }}
  - {{ name: {ANTHROPIC_MODEL}, targets: [ {{ provider: anthropic, model: claude-bench }} ] }}
  - {{ name: {EMBEDDING_MODEL}, kind: embeddings, targets: [ {{ provider: openai, model: {EMBEDDING_UPSTREAM} }} ] }}
# 限流照常判定与计数（全局、密钥、IP 三层，请求数与 token），上限高到压测时不会拒绝
rate_limits:
  global: {{ requests: {BENCH_LIMIT}, tokens_per_minute: {BENCH_LIMIT} }}
  per_key: {{ requests: {BENCH_LIMIT}, tokens_per_minute: {BENCH_LIMIT} }}
  per_ip: {{ requests: {BENCH_LIMIT} }}
pricing:
  - {{ model: {OPENAI_MODEL}, input: 0.15, output: 0.60 }}
  - {{ model: claude-bench, input: 3, output: 15 }}
  - {{ model: {EMBEDDING_UPSTREAM}, input: 0.02, output: 0 }}
{settings.extra_yaml}
"""
    path = Path(workdir) / "chatnexus.yaml"
    path.write_text(text)
    return path


NGINX_CONF = """daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile {nofile};
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log error;
events {{ worker_connections {conns}; }}
http {{
  access_log {dir}/nginx-access.log;
  client_body_temp_path {dir}/nginx-body;
  proxy_temp_path {dir}/nginx-proxy;
  fastcgi_temp_path {dir}/nginx-fastcgi;
  uwsgi_temp_path {dir}/nginx-uwsgi;
  scgi_temp_path {dir}/nginx-scgi;
  keepalive_requests 100000000;
  upstream mock {{ server {host}:{mock_port}; keepalive 128; keepalive_requests 100000000; }}
  server {{
    listen {host}:{port};
    location / {{
      proxy_pass http://mock;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }}
  }}
}}
"""


class Stack:
    """一组进程：模拟器，以及它前面的裸 Pingora、nginx 与 ChatNexus。"""

    def __init__(self, settings, workdir, chunks, chunk_delay_ms=0, proxies=True):
        self.settings = settings
        self.workdir = workdir
        self.procs = {}
        self.urls = {}
        ports = free_ports(5)
        try:
            self.start_mock(ports[0], chunks, chunk_delay_ms)
            self.start_gateway(ports[1], ports[2], ports[0])
            if proxies:
                self.start_passthrough(ports[3], ports[0])
                self.start_nginx(ports[4], ports[0])
        except BaseException:
            # 启动到一半失败：停掉已经启动的进程再退出
            self.stop()
            raise

    def add(self, path, name, argv, port, cpu, env=None):
        proc = Proc(name, argv, cpu, self.workdir, env)
        self.procs[path] = proc
        wait_port(port, proc)
        self.urls[path] = f"http://{LOOPBACK}:{port}{CHAT_PATH}"

    def start_mock(self, port, chunks, delay):
        argv = [GATEWAY_BIN, "mock", "--listen", f"{LOOPBACK}:{port}", "--chunks", chunks]
        argv += ["--chunk-delay-ms", delay]
        self.add(DIRECT, "mock", argv, port, self.settings.side_cpu, {"RUST_LOG": "error"})

    def start_gateway(self, port, metrics_port, mock_port):
        conf = gateway_config(self.workdir, port, metrics_port, mock_port, self.settings)
        env = {
            "RUST_LOG": self.settings.log_level,
            "BENCH_OPENAI_KEY": "sk-bench-openai",
            "BENCH_ANTHROPIC_KEY": "sk-bench-anthropic",
        }
        cpu = self.settings.proxy_cpu
        self.add(CHATNEXUS, "chatnexus", [GATEWAY_BIN, "-c", conf], port, cpu, env)
        self.procs[CHATNEXUS_ANTHROPIC] = self.procs[CHATNEXUS]
        self.urls[CHATNEXUS_ANTHROPIC] = self.urls[CHATNEXUS]

    def start_passthrough(self, port, mock_port):
        argv = [PASSTHROUGH_BIN, "--listen", f"{LOOPBACK}:{port}"]
        argv += ["--upstream", f"{LOOPBACK}:{mock_port}", "--threads", self.settings.threads]
        if self.settings.passthrough_no_steal:
            argv.append("--no-work-stealing")
        self.add(PINGORA, "passthrough", argv, port, self.settings.proxy_cpu, {"RUST_LOG": "error"})

    def start_nginx(self, port, mock_port):
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        conf = NGINX_CONF.format(
            dir=self.workdir, host=LOOPBACK, port=port, mock_port=mock_port,
            nofile=nofile, conns=max(nofile // 2, 1024),
        )
        path = Path(self.workdir) / "nginx.conf"
        path.write_text(conf)
        argv = ["nginx", "-p", self.workdir, "-e", f"{self.workdir}/nginx-error.log", "-c", path]
        self.add(NGINX, "nginx", argv, port, self.settings.proxy_cpu)

    def paths(self):
        return [p for p in ALL_PATHS if p in self.procs]

    def stop(self):
        for proc in {id(p): p for p in self.procs.values()}.values():
            proc.stop()


def model_of(path):
    anthropic = (CHATNEXUS_ANTHROPIC, MESSAGES_NATIVE, RESPONSES_TRANSLATED)
    return ANTHROPIC_MODEL if path in anthropic else OPENAI_MODEL


def route_of(path):
    """被测路径的接口：Messages 客户端走 /v1/messages，Responses 客户端走 /v1/responses，其余走聊天接口。"""
    if path in MESSAGES_PATHS:
        return MESSAGES_PATH
    return RESPONSES_PATH if path in RESPONSES_PATHS else CHAT_PATH


WRK_LUA = """-- 由 bench/harness.py 生成：POST 聊天请求，结束时输出一行 JSON（时间单位微秒）
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
wrk.body = '{body}'
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {{"requests":%d,"duration_us":%d,"errors":%d,"non2xx":%d,"p50_us":%d,"p99_us":%d,"p999_us":%d}}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
"""


def wrk_script(workdir, model, dialect="chat", key=CLIENT_KEY):
    request = {"model": model, "messages": [{"role": "user", "content": PROMPT}]}
    if dialect == "messages":
        request["max_tokens"] = MESSAGES_MAX_TOKENS
    if dialect == "responses":
        request = {"model": model, "input": PROMPT}
    return wrk_body_script(workdir, f"{model}-{dialect}", request, key)


def wrk_body_script(workdir, name, request, key=CLIENT_KEY):
    """写一个 POST 给定请求体的 wrk 脚本（文件名按 name 与密钥区分）。"""
    body = json.dumps(request, ensure_ascii=False)
    path = Path(workdir) / f"wrk-{name}-{hashlib.sha256(key.encode()).hexdigest()[:8]}.lua"
    path.write_text(WRK_LUA.format(key=key, body=body))
    return path


def run_wrk(settings, url, script, conns, secs):
    """运行一次 wrk，返回 done() 打印的 JSON。"""
    threads = 1 if conns < 64 else 2
    argv = ["wrk", "-t", threads, "-c", conns, "-d", f"{secs:g}s", "--timeout", WRK_TIMEOUT]
    argv += ["-s", script, url]
    out = subprocess.run(pinned(settings.side_cpu, argv), capture_output=True, text=True)
    for line in out.stdout.splitlines():
        if line.startswith("BENCH "):
            return json.loads(line[len("BENCH "):])
    sys.exit(f"wrk 没有输出结果：{out.stdout}{out.stderr}")


def run_stream_load(settings, url, model, conns, extra):
    """运行一次流式压测客户端，返回它打印的 JSON。"""
    argv = [STREAM_LOAD_BIN, "--url", url, "--key", CLIENT_KEY, "--model", model]
    argv += ["--concurrency", conns] + extra
    out = subprocess.run(pinned(settings.side_cpu, argv), capture_output=True, text=True)
    try:
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        sys.exit(f"stream_load 没有输出结果：{out.stdout}{out.stderr}")


def with_cpu(proc, action):
    """执行一次压测，并给结果加上被测进程在此期间消耗的 CPU 秒数。"""
    before = proc.cpu_seconds()
    result = action()
    result["cpu_s"] = proc.cpu_seconds() - before
    return result


def median_result(rounds):
    """多轮结果逐字段取中位数（降低同机其他负载造成的噪声）。"""
    merged = {}
    for key, value in rounds[0].items():
        if isinstance(value, (int, float)):
            values = sorted(r[key] for r in rounds)
            merged[key] = values[len(values) // 2]
        else:
            merged[key] = value
    return merged


def progress(text):
    print(text, file=sys.stderr, flush=True)


def bench_nonstream(settings, workdir, rounds):
    """非流式：每个并发下依次压每条路径，重复 rounds 轮后取中位数。"""
    stack = Stack(settings, tempfile.mkdtemp(dir=workdir), NONSTREAM_CHUNKS)
    try:
        scripts = {m: wrk_script(stack.workdir, m) for m in (OPENAI_MODEL, ANTHROPIC_MODEL)}
        samples = {}
        for path in stack.paths():
            run_wrk(settings, stack.urls[path], scripts[model_of(path)], 16, 1)
        for _ in range(rounds):
            for conns in settings.concurrency:
                for path in stack.paths():
                    url, script = stack.urls[path], scripts[model_of(path)]
                    action = lambda: run_wrk(settings, url, script, conns, settings.ns_secs)
                    result = with_cpu(stack.procs[path], action)
                    samples.setdefault((path, conns), []).append(result)
                    progress(f"非流式 并发 {conns} {path}：{rps(result):.0f} 次/秒")
        return {key: median_result(value) for key, value in samples.items()}
    finally:
        stack.stop()


def bench_streams(settings, workdir, rounds):
    """流式：每种块数各起一组进程，每个并发下依次压每条路径。"""
    samples = {}
    for chunks in settings.stream_chunks:
        stack = Stack(settings, tempfile.mkdtemp(dir=workdir), chunks, settings.chunk_delay_ms)
        try:
            for _ in range(rounds):
                for conns in settings.stream_concurrency:
                    for path in stack.paths():
                        extra = ["--seconds", settings.stream_secs]
                        url, model = stack.urls[path], model_of(path)
                        action = lambda: run_stream_load(settings, url, model, conns, extra)
                        result = with_cpu(stack.procs[path], action)
                        samples.setdefault((path, chunks, conns), []).append(result)
                        progress(f"流式 {chunks} 块 并发 {conns} {path}：{result['ok']} 个流")
        finally:
            stack.stop()
    return {key: median_result(value) for key, value in samples.items()}


def rps(r):
    return r["requests"] / (r["duration_us"] / MICROS) if r["duration_us"] else 0.0


def ms(us):
    return f"{us / 1e3:.3f}"


def cpu_us_per(r, count_key):
    count = r[count_key]
    return r["cpu_s"] * MICROS / count if count else float("nan")


def print_nonstream(settings, results):
    print("\n### 非流式（wrk，每格 %g 秒）\n" % settings.ns_secs)
    print("| 并发 | 路径 | 吞吐（次/秒） | p50 ms | p99 ms | p99.9 ms | 错误 | 被测进程 CPU µs/请求 |")
    print("|---|---|---|---|---|---|---|---|")
    for conns in settings.concurrency:
        for path in ALL_PATHS:
            r = results.get((path, conns))
            if r:
                print(f"| {conns} | {path} | {rps(r):,.0f} | {ms(r['p50_us'])} | {ms(r['p99_us'])} | "
                      f"{ms(r['p999_us'])} | {r['errors']} | {cpu_us_per(r, 'requests'):.1f} |")
    print("\n| 并发 | ChatNexus ÷ 裸 Pingora（吞吐） | ChatNexus ÷ nginx（吞吐） | ChatNexus − 直连（p99 ms） "
          "| CPU/请求 ChatNexus ÷ 裸 Pingora | Anthropic 翻译 ÷ OpenAI（吞吐） |")
    print("|---|---|---|---|---|---|")
    for conns in settings.concurrency:
        cn, pg, ng, d, an = (results.get((p, conns)) for p in
                             (CHATNEXUS, PINGORA, NGINX, DIRECT, CHATNEXUS_ANTHROPIC))
        if not (cn and pg and ng and d and an):
            continue
        cpu_ratio = cpu_us_per(cn, "requests") / cpu_us_per(pg, "requests")
        print(f"| {conns} | {rps(cn) / rps(pg):.2f} | {rps(cn) / rps(ng):.2f} | "
              f"{(cn['p99_us'] - d['p99_us']) / 1e3:+.3f} | {cpu_ratio:.2f} | {rps(an) / rps(cn):.2f} |")


def print_streams(settings, results):
    print("\n### 流式（examples/stream_load，每格 %g 秒，块间延迟 %d ms）\n"
          % (settings.stream_secs, settings.chunk_delay_ms))
    print("| 块数 | 并发 | 路径 | 完成的流 | 错误 | 首字 p50 ms | 首字 p99 ms | 总时间 p50 ms | 总时间 p99 ms "
          "| 被测进程 CPU µs/流 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for chunks in settings.stream_chunks:
        for conns in settings.stream_concurrency:
            for path in ALL_PATHS:
                r = results.get((path, chunks, conns))
                if r:
                    print(f"| {chunks} | {conns} | {path} | {r['ok']} | {r['errors']} | "
                          f"{ms(r['ttft_p50_us'])} | {ms(r['ttft_p99_us'])} | {ms(r['total_p50_us'])} | "
                          f"{ms(r['total_p99_us'])} | {cpu_us_per(r, 'ok'):.1f} |")
    print_stream_overheads(settings, results)


def print_stream_overheads(settings, results):
    """首字时间的附加延迟，与每块开销（两种块数之差除以块数之差，流的固定开销相互抵消）。"""
    few, many = min(settings.stream_chunks), max(settings.stream_chunks)
    print(f"\n| 并发 | 路径 | 首字 p99 − 直连（ms，{few} 块 / {many} 块） | 每块附加时间 µs（总时间 p50） "
          "| 每块 CPU µs |")
    print("|---|---|---|---|---|")
    for conns in settings.stream_concurrency:
        for path in (PINGORA, NGINX, CHATNEXUS, CHATNEXUS_ANTHROPIC):
            rows = [results.get((p, c, conns)) for p in (path, DIRECT) for c in (few, many)]
            if not all(rows) or few == many:
                continue
            pf, pm, df, dm = rows
            extra_ttft = [(p["ttft_p99_us"] - d["ttft_p99_us"]) / 1e3 for p, d in ((pf, df), (pm, dm))]
            per_chunk_time = ((pm["total_p50_us"] - dm["total_p50_us"])
                              - (pf["total_p50_us"] - df["total_p50_us"])) / (many - few)
            per_chunk_cpu = (cpu_us_per(pm, "ok") - cpu_us_per(pf, "ok")) / (many - few)
            print(f"| {conns} | {path} | {extra_ttft[0]:+.3f} / {extra_ttft[1]:+.3f} | "
                  f"{per_chunk_time:+.2f} | {per_chunk_cpu:.2f} |")


def git_revision():
    out = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True)
    return out.stdout.strip() or "未知"


def print_header(settings, title):
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    load = os.getloadavg()
    print(f"## {title}\n")
    print(f"- 时间：{now}；提交：{git_revision()}；CPU 核数：{os.cpu_count()}；"
          f"开始时的系统负载：{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    layout = ("被测代理绑 CPU 1，模拟器与压测工具绑 CPU 0" if settings.pin else "不绑核")
    runtime = "单线程运行时" if settings.passthrough_no_steal else "Pingora 缺省（偷任务）"
    print(f"- 代理工作线程：{settings.threads}；{layout}；ChatNexus 日志级别：{settings.log_level}；"
          f"裸 Pingora 透传的运行时：{runtime}")


# /proc/stat 每个 CPU 行中 steal 字段的位置（cpuN user nice system idle iowait irq softirq steal …）
STAT_STEAL_FIELD = 8


def cpu_times():
    """每个 CPU 的（steal 节拍数, 总节拍数），来自 /proc/stat。"""
    times = {}
    with open("/proc/stat") as f:
        for line in f:
            name, *fields = line.split()
            if name.startswith("cpu") and name != "cpu":
                ticks = [int(x) for x in fields]
                times[name] = (ticks[STAT_STEAL_FIELD - 1], sum(ticks))
    return times


def steal_report(before):
    """从 before 到现在各 CPU 被宿主机拿走（steal）的时间比例：虚拟机上它直接压低吞吐，结果要结合它看。"""
    after = cpu_times()
    parts = []
    for name, (steal, total) in sorted(after.items()):
        old_steal, old_total = before.get(name, (steal, total))
        share = (steal - old_steal) / max(total - old_total, 1) * 100
        parts.append(f"{name.upper()} {share:.1f}%")
    return "运行期间各 CPU 被宿主机占用（steal）的时间：" + "，".join(parts)


def save(name, data):
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = RESULTS_DIR / f"{name}-{stamp}.json"
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1))
    progress(f"原始结果已保存到 {path}")


def cmd_bench(settings, workdir):
    rounds = int(env_num("ROUNDS", "1"))
    print_header(settings, "ChatNexus 压测（bench/run.sh）")
    before = cpu_times()
    nonstream = bench_nonstream(settings, workdir, rounds)
    streams = bench_streams(settings, workdir, rounds)
    print_nonstream(settings, nonstream)
    print_streams(settings, streams)
    load = os.getloadavg()
    print(f"\n结束时的系统负载：{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}；{steal_report(before)}")
    save("bench", {"nonstream": {f"{k[0]}|{k[1]}": v for k, v in nonstream.items()},
                   "streams": {f"{k[0]}|{k[1]}|{k[2]}": v for k, v in streams.items()}})
    errors = sum(r["errors"] for r in nonstream.values()) + sum(r["errors"] for r in streams.values())
    return 1 if errors else 0


def sample_rss_while(proc, child, interval):
    """子进程运行期间每隔 interval 秒采样一次网关的 RSS（KiB），返回 (秒, RSS) 列表。"""
    samples = []
    started = time.monotonic()
    while child.poll() is None:
        samples.append((time.monotonic() - started, proc.memory_kib("VmRSS")))
        time.sleep(interval)
    return samples


def stream_capacity(wanted):
    """网关每个流占两个文件描述符；进程的描述符上限不够时按上限缩减并说明。"""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    fit = (soft - FD_MARGIN) // FDS_PER_STREAM
    if wanted <= fit:
        return wanted, ""
    note = (f"本机进程的文件描述符上限是 {soft}（硬上限 {hard}，且没有 CAP_SYS_RESOURCE 无法提高），"
            f"网关每个流占 {FDS_PER_STREAM} 个（客户端连接 + 上游连接），最多只能同时保持 {fit} 个流，"
            f"因此测 {fit} 个而不是 {wanted} 个")
    return fit, note


def hold_streams(stack, path, streams, ramp):
    """经某条路径同时保持 streams 个流，返回 (客户端结果, 空闲 RSS KiB, 峰值 RSS KiB)。"""
    proc = stack.procs[path]
    idle_kib = proc.memory_kib("VmRSS")
    argv = [STREAM_LOAD_BIN, "--url", stack.urls[path], "--key", CLIENT_KEY, "--concurrency", streams,
            "--requests", streams, "--ramp-ms", ramp, "--threads", 2]
    client = subprocess.Popen([str(a) for a in argv], stdout=subprocess.PIPE, text=True)
    sample_rss_while(proc, client, 0.25)
    result = json.loads(client.stdout.read().strip().splitlines()[-1])
    return result, idle_kib, proc.memory_kib("VmHWM")


def cmd_hold(settings, workdir):
    """同时保持大量打开的流：全部成功、没有错误，报告网关峰值 RSS（同样条件下也测裸 Pingora 作对照）。"""
    streams, note = stream_capacity(int(env_num("HOLD_STREAMS", "10000")))
    chunks = int(env_num("HOLD_CHUNKS", "10"))
    delay = int(env_num("HOLD_CHUNK_DELAY_MS", "2000"))
    ramp = int(env_num("HOLD_RAMP_MS", "5000"))
    limit_mb = env_num("HOLD_RSS_LIMIT_MB", "300")
    print_header(settings, "并发流保持（bench/run.sh hold）")
    if note:
        print(f"- 注意：{note}")
    print(f"- 流：{streams} 个，每个 {chunks} 块、块间 {delay} ms，{ramp} ms 内逐步建立\n")
    print("| 路径 | 完成 | 错误 | 同时打开的峰值 | 空闲 RSS MiB | 峰值 RSS（VmHWM）MiB | 每个流 KiB |")
    print("|---|---|---|---|---|---|---|")
    stack = Stack(settings, tempfile.mkdtemp(dir=workdir), chunks, delay)
    outcome = {}
    try:
        for path in (CHATNEXUS, PINGORA):
            result, idle_kib, peak_kib = hold_streams(stack, path, streams, ramp)
            outcome[path] = (result, idle_kib, peak_kib)
            per_stream = (peak_kib - idle_kib) / max(result["peak_open"], 1)
            print(f"| {path} | {result['ok']} | {result['errors']} | {result['peak_open']} | "
                  f"{idle_kib / KIB:.1f} | {peak_kib / KIB:.1f} | {per_stream:.1f} |")
    finally:
        stack.stop()
    result, _, peak_kib = outcome[CHATNEXUS]
    passed = result["ok"] == streams and result["errors"] == 0 and peak_kib / KIB <= limit_mb
    print(f"\n- 目标（ChatNexus 全部成功、没有错误且峰值 RSS ≤ {limit_mb:g} MB）：{'达到' if passed else '未达到'}")
    save("hold", {"streams": streams, "note": note,
                  "outcome": {k: list(v) for k, v in outcome.items()}})
    return 0 if passed else 1


def cmd_soak(settings, workdir):
    """稳定负载下持续压测，定期采样网关 RSS；报告预热后到结束的增长。"""
    secs = env_num("SOAK_SECS", "600")
    interval = env_num("SOAK_SAMPLE_SECS", "10")
    warmup = env_num("SOAK_WARMUP_SECS", "60")
    limit = env_num("SOAK_GROWTH_LIMIT_PCT", "5")
    print_header(settings, "浸泡测试（bench/run.sh soak）")
    before = cpu_times()
    stack = Stack(settings, tempfile.mkdtemp(dir=workdir), 10, proxies=False)
    try:
        gateway, url = stack.procs[CHATNEXUS], stack.urls[CHATNEXUS]
        script = wrk_script(stack.workdir, OPENAI_MODEL)
        wrk_argv = ["wrk", "-t", 1, "-c", int(env_num("SOAK_CONNS", "16")), "-d", f"{secs:g}s",
                    "--timeout", WRK_TIMEOUT, "-s", script, url]
        stream_argv = [STREAM_LOAD_BIN, "--url", url, "--key", CLIENT_KEY, "--concurrency",
                       int(env_num("SOAK_STREAM_CONNS", "4")), "--seconds", secs]
        wrk = subprocess.Popen(pinned(settings.side_cpu, wrk_argv), stdout=subprocess.PIPE, text=True)
        streams = subprocess.Popen(pinned(settings.side_cpu, stream_argv), stdout=subprocess.PIPE,
                                   text=True)
        samples = sample_rss_while(gateway, wrk, interval)
        streams.wait()
        wrk_result = json.loads(next(l for l in wrk.stdout.read().splitlines()
                                     if l.startswith("BENCH "))[len("BENCH "):])
        stream_result = json.loads(streams.stdout.read().strip().splitlines()[-1])
    finally:
        stack.stop()
    print(f"- {steal_report(before)}")
    return report_soak(secs, warmup, limit, samples, wrk_result, stream_result)


def report_soak(secs, warmup, limit, samples, wrk_result, stream_result):
    after = [s for s in samples if s[0] >= warmup] or samples
    base, last = after[0][1], samples[-1][1]
    growth = (last - base) / base * 100
    print(f"- 负载：{secs:g} 秒；非流式 wrk {rps(wrk_result):,.0f} 次/秒（错误 {wrk_result['errors']}），"
          f"流式 {stream_result['ok']} 个流（错误 {stream_result['errors']}）")
    print(f"- 网关 RSS：第 {after[0][0]:.0f} 秒 {base / KIB:.1f} MiB → 结束 {last / KIB:.1f} MiB，"
          f"增长 {growth:+.2f}%；全程最大 {max(s[1] for s in samples) / KIB:.1f} MiB")
    print("- 采样（秒：MiB）：" + "，".join(f"{t:.0f}:{r / KIB:.1f}" for t, r in samples))
    errors = wrk_result["errors"] + stream_result["errors"]
    passed = growth <= limit and errors == 0
    print(f"- 目标（预热 {warmup:g} 秒后 RSS 增长 ≤ {limit:g}% 且没有错误）：{'达到' if passed else '未达到'}")
    save("soak", {"samples": samples, "wrk": wrk_result, "streams": stream_result})
    return 0 if passed else 1


CALLGRIND_START_SECS = 60
CALLGRIND_OUT = "callgrind.out"
CALLGRIND_TRIGGER = "Trigger: dump measure"


def callgrind_proxy(settings, workdir, mock_port, which):
    """在 callgrind 下启动被测代理（裸 Pingora 或 ChatNexus），返回 (进程, 端口)。"""
    port, metrics_port = free_ports(2)
    valgrind = ["valgrind", "--tool=callgrind", "--dump-instr=no",
                f"--callgrind-out-file={workdir}/{CALLGRIND_OUT}"]
    if which == PINGORA:
        argv = [PASSTHROUGH_BIN, "--listen", f"{LOOPBACK}:{port}", "--upstream", f"{LOOPBACK}:{mock_port}"]
        env = {"RUST_LOG": "error"}
    else:
        argv = [GATEWAY_BIN, "-c", gateway_config(workdir, port, metrics_port, mock_port, settings)]
        env = {"RUST_LOG": settings.log_level, "BENCH_OPENAI_KEY": "k", "BENCH_ANTHROPIC_KEY": "k"}
    proc = Proc("callgrind", valgrind + argv, "", workdir, env)
    deadline = time.monotonic() + CALLGRIND_START_SECS
    while time.monotonic() < deadline:
        try:
            socket.create_connection((LOOPBACK, port), timeout=1).close()
            return proc, port
        except OSError:
            time.sleep(0.5)
    proc.stop()
    sys.exit(f"callgrind 下的 {which} 在 {CALLGRIND_START_SECS} 秒内没有开始监听")


def instructions_per_request(settings, workdir, which, stream, chunks, secs, custom=None):
    """callgrind 下先预热，清零计数，压 secs 秒（并发 1），返回每个请求的（用户态指令数, 分配次数）。

    custom=(接口路径, 请求对象) 时非流式压测改发这个请求（向量压测用）。
    """
    workdir = tempfile.mkdtemp(dir=workdir)
    (mock_port,) = free_ports(1)
    mock = Proc("mock", [GATEWAY_BIN, "mock", "--listen", f"{LOOPBACK}:{mock_port}", "--chunks", chunks],
                "", workdir, {"RUST_LOG": "error"})
    wait_port(mock_port, mock)
    proc, port = callgrind_proxy(settings, workdir, mock_port, which)
    try:
        url, model = f"http://{LOOPBACK}:{port}{route_of(which)}", model_of(which)
        dialect = "messages" if which in MESSAGES_PATHS else "responses" if which in RESPONSES_PATHS else "chat"
        script = wrk_script(workdir, model, dialect, settings.client_key)
        if custom:
            route, request = custom
            url = f"http://{LOOPBACK}:{port}{route}"
            script = wrk_body_script(workdir, "custom", request, settings.client_key)
        def load(duration):
            if stream:
                extra = ["--seconds", duration] + ([f"--{dialect}"] if dialect != "chat" else [])
                return run_stream_load(settings, url, model, 1, extra)["ok"]
            return run_wrk(settings, url, script, 1, duration)["requests"]
        load(1)
        subprocess.run(["callgrind_control", "-z", str(proc.popen.pid)], capture_output=True)
        count = load(secs)
        subprocess.run(["callgrind_control", "-d", "measure", str(proc.popen.pid)], capture_output=True)
    finally:
        proc.stop()
        mock.stop()
    text = measure_dump(workdir)
    count = max(count, 1)
    return callgrind_total(text) / count, callgrind_allocations(text) / count


def measure_dump(workdir):
    """触发原因为 measure 的那次 callgrind 转储的全文。"""
    for path in Path(workdir).glob(CALLGRIND_OUT + "*"):
        text = path.read_text(errors="replace")
        if CALLGRIND_TRIGGER in text:
            return text
    sys.exit("没有找到 callgrind 的计数转储")


def callgrind_total(text):
    """转储里的指令总数。"""
    for line in text.splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    sys.exit("callgrind 转储里没有指令总数")


def is_allocation(name):
    """mimalloc 的分配入口（malloc、zalloc、calloc、realloc 及其对齐版本）。"""
    return name.startswith("mi_") and "alloc" in name and "free" not in name


def callgrind_allocations(text):
    """转储里分配的次数：调用方不在 mimalloc 内部的、对分配入口的调用次数之和（内部互相调用不重复计）。

    callgrind 的名字压缩：函数名第一次出现时写成 `(编号) 名字`，之后只写 `(编号)`。
    """
    names, caller, callee, total = {}, "", None, 0
    for line in text.splitlines():
        if line.startswith(("fn=", "cfn=")):
            key, rest = line.split("=", 1)
            ident, _, name = rest.partition(" ")
            if name:
                names[ident] = name
            if key == "fn":
                caller = names.get(ident, "")
            else:
                callee = names.get(ident, "")
        elif line.startswith("calls=") and callee is not None:
            if is_allocation(callee) and not caller.startswith("mi_"):
                total += int(line[len("calls="):].split()[0])
            callee = None
    return total


def cmd_profile(settings, workdir):
    """用 callgrind 数每个请求（与每个流式块）的用户态指令数：确定性，不受同机负载影响。"""
    secs = int(env_num("PROFILE_SECS", "5"))
    print_header(settings, "指令计数（bench/run.sh profile，valgrind --tool=callgrind，并发 1）")
    profiled = (PINGORA, CHATNEXUS, CHATNEXUS_ANTHROPIC) + MESSAGES_PATHS + RESPONSES_PATHS
    # PROFILE_ONLY=子串：只测名字含该子串的列（迭代优化时用；完整的对比表要全部列）
    only = os.environ.get("PROFILE_ONLY")
    if only:
        profiled = tuple(p for p in profiled if only in p)
    print("\n| 场景 | " + " | ".join(profiled) + " |")
    print("|---" * (len(profiled) + 1) + "|")
    rows = [("非流式，每个请求", False, NONSTREAM_CHUNKS)]
    rows += [(f"流式 {c} 块，每个流", True, c) for c in settings.stream_chunks]
    counts = {}
    for label, stream, chunks in rows:
        cells = []
        for which in profiled:
            value, _ = instructions_per_request(settings, workdir, which, stream, chunks, secs)
            counts[(which, stream, chunks)] = value
            cells.append(f"{value:,.0f}")
        print(f"| {label} | " + " | ".join(cells) + " |")
    few, many = min(settings.stream_chunks), max(settings.stream_chunks)
    if few != many:
        per_chunk = [(counts[(w, True, many)] - counts[(w, True, few)]) / (many - few)
                     for w in profiled]
        print("| 每个流式块（两种块数之差） | " + " | ".join(f"{v:,.0f}" for v in per_chunk) + " |")
    save("profile", {f"{k[0]}|{k[1]}|{k[2]}": v for k, v in counts.items()})
    return 0


def embedding_requests():
    """向量压测的几种请求：100 条的批量（浮点与 base64 两种编码，都是透传）与请求体同样大小的聊天请求。"""
    texts = [f"{EMBEDDING_TEXT}第{i}段" for i in range(EMBEDDING_INPUTS)]
    floats = {"model": EMBEDDING_MODEL, "input": texts}
    packed = dict(floats, encoding_format="base64")
    size = len(json.dumps(floats, ensure_ascii=False).encode())
    chat = {"model": OPENAI_MODEL, "messages": [{"role": "user", "content": ""}]}
    pad = size - len(json.dumps(chat, ensure_ascii=False).encode())
    chat["messages"][0]["content"] = "字" * (pad // CJK_BYTES) + "a" * (pad % CJK_BYTES)
    return [
        (f"向量透传，{EMBEDDING_INPUTS} 条，浮点", EMBEDDINGS_PATH, floats),
        (f"向量透传，{EMBEDDING_INPUTS} 条，base64", EMBEDDINGS_PATH, packed),
        ("聊天透传，同样大小的请求体", CHAT_PATH, chat),
    ]


def cmd_embeddings(settings, workdir):
    """100 条输入的向量透传与同样大小的聊天透传：callgrind 下每个请求的用户态指令数与分配次数。"""
    secs = int(env_num("PROFILE_SECS", "5"))
    print_header(settings, "向量接口（bench/run.sh embeddings，valgrind --tool=callgrind，并发 1）")
    print("\n| 请求 | 请求体字节 | 指令/请求 | 分配次数/请求 |")
    print("|---|---|---|---|")
    results = {}
    for label, route, request in embedding_requests():
        size = len(json.dumps(request, ensure_ascii=False).encode())
        instr, allocs = instructions_per_request(settings, workdir, CHATNEXUS, False, NONSTREAM_CHUNKS, secs,
                                                 custom=(route, request))
        results[label] = {"bytes": size, "instructions": instr, "allocations": allocs}
        print(f"| {label} | {size:,} | {instr:,.0f} | {allocs:.0f} |")
    save("embeddings", results)
    return 0


# 响应缓存压测（bench/run.sh cache）：同一个请求反复命中，local 与 Redis 两种后端，对照直连模拟器与不开缓存的透传
CACHE_HIT_LOCAL = "缓存命中（local）"
CACHE_HIT_REDIS = "缓存命中（Redis）"
# 配了 Redis 时限流也走 Redis（每个请求一次准入、一次结算）：Redis 后端的命中要与同样配了 Redis 的透传比
CHATNEXUS_REDIS = "ChatNexus → OpenAI（Redis 限流）"
CACHE_PATHS = (DIRECT, CHATNEXUS, CACHE_HIT_LOCAL, CHATNEXUS_REDIS, CACHE_HIT_REDIS)
CACHE_CONCURRENCY = int(env_num("CACHE_CONCURRENCY", "16"))
# Redis 用本机的（键前缀按进程号区分，不碰别人的键）
CACHE_REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")
CACHE_TTL_SECONDS = 3600
# 每条路径的（是否配 Redis, 缓存后端；None 表示不开缓存）
CACHE_VARIANTS = {
    CHATNEXUS: (False, None),
    CACHE_HIT_LOCAL: (False, "local"),
    CHATNEXUS_REDIS: (True, None),
    CACHE_HIT_REDIS: (True, "redis"),
}


def cache_settings(settings, path):
    """按路径在压测配置后面加上 redis 段与缓存段（mode always：压测请求没有 temperature；缓存全部模型）。"""
    redis, backend = CACHE_VARIANTS[path]
    variant = copy.copy(settings)
    lines = [settings.extra_yaml]
    if redis:
        prefix = f"chatnexus-bench-{os.getpid()}-{len(path)}"
        lines.append(f'redis: {{ url: "{CACHE_REDIS_URL}", key_prefix: "{prefix}" }}')
    if backend:
        lines.append(f"cache: {{ backend: {backend}, mode: always, ttl_seconds: {CACHE_TTL_SECONDS} }}")
    variant.extra_yaml = "\n".join(lines)
    return variant


def cache_stacks(settings, workdir):
    """每条路径一组进程（第一组另带直连模拟器）；返回 路径 → (地址, 被测进程)。"""
    stacks, targets = [], {}
    for path in CACHE_VARIANTS:
        variant = cache_settings(settings, path)
        stack = Stack(variant, tempfile.mkdtemp(dir=workdir), NONSTREAM_CHUNKS, proxies=False)
        stacks.append(stack)
        if not targets:
            targets[DIRECT] = (stack.urls[DIRECT], stack.procs[DIRECT])
        targets[path] = (stack.urls[CHATNEXUS], stack.procs[CHATNEXUS])
    return stacks, targets


def bench_cache(settings, workdir, rounds):
    """每条路径先压一秒（缓存因此存下回复），再压 rounds 轮取中位数。"""
    stacks, targets = cache_stacks(settings, workdir)
    try:
        script = wrk_script(workdir, OPENAI_MODEL)
        samples = {}
        for url, _ in targets.values():
            run_wrk(settings, url, script, CACHE_CONCURRENCY, 1)
        for _ in range(rounds):
            for path, (url, proc) in targets.items():
                action = lambda: run_wrk(settings, url, script, CACHE_CONCURRENCY, settings.ns_secs)
                samples.setdefault(path, []).append(with_cpu(proc, action))
                progress(f"缓存压测 {path}：{rps(samples[path][-1]):.0f} 次/秒")
        return {path: median_result(value) for path, value in samples.items()}
    finally:
        for stack in stacks:
            stack.stop()


def cmd_cache(settings, workdir):
    """缓存命中的吞吐与延迟（对照直连与透传），以及 callgrind 下每个请求的指令数与分配次数。"""
    rounds = int(env_num("ROUNDS", "3"))
    print_header(settings, f"响应缓存命中（bench/run.sh cache，并发 {CACHE_CONCURRENCY}）")
    results = bench_cache(settings, workdir, rounds)
    direct = results[DIRECT]
    print("\n| 路径 | 请求/秒 | p50（毫秒） | p99（毫秒） | p99 比直连多（毫秒） | 被测进程 CPU（微秒/请求） |")
    print("|---|---|---|---|---|---|")
    for path in CACHE_PATHS:
        r = results[path]
        extra = ms(r["p99_us"] - direct["p99_us"]) if path != DIRECT else "—"
        print(f"| {path} | {rps(r):,.0f} | {ms(r['p50_us'])} | {ms(r['p99_us'])} | {extra} | "
              f"{cpu_us_per(r, 'requests'):.1f} |")
    secs = int(env_num("PROFILE_SECS", "5"))
    print("\n| 路径（callgrind，并发 1） | 指令/请求 | 分配次数/请求 |")
    print("|---|---|---|")
    for path in CACHE_VARIANTS:
        variant = cache_settings(settings, path)
        instr, allocs = instructions_per_request(variant, workdir, CHATNEXUS, False, NONSTREAM_CHUNKS, secs)
        results[path]["instructions"], results[path]["allocations"] = instr, allocs
        print(f"| {path} | {instr:,.0f} | {allocs:.1f} |")
    save("cache", results)
    return 0


# 虚拟密钥与预算的压测（bench/run.sh keys）：同一个配了 Redis 的网关，配置文件里的密钥对虚拟密钥 + 每日预算
VIRTUAL_KEY = "sk-cnx-bench-virtual-key"
VIRTUAL_KEY_NAME = "bench-virtual"
KEYS_PREFIX = f"chatnexus-bench-keys-{os.getpid()}:"
# 预算足够大：压测中从不拒绝，但每个请求照常预留与结算
VIRTUAL_BUDGET_USD = 1e9
CONFIG_KEY_PATH = "配置文件的密钥（Redis 限流）"
VIRTUAL_KEY_PATH = "虚拟密钥 + 每日预算（Redis 限流）"


def redis_cli(*args):
    """对本机 Redis 执行一条命令，返回输出文本。"""
    host, port = CACHE_REDIS_URL.removeprefix("redis://").split(":")
    out = subprocess.run(["redis-cli", "-h", host, "-p", port.rstrip("/"), *args],
                         capture_output=True, text=True, check=True)
    return out.stdout


def seed_virtual_key():
    """直接在 Redis 里写入一个带每日预算的虚拟密钥（与管理接口写入的记录相同），网关启动时读到它。"""
    record = {"name": VIRTUAL_KEY_NAME, "sha256": hashlib.sha256(VIRTUAL_KEY.encode()).hexdigest(),
              "budgets": {"daily_usd": VIRTUAL_BUDGET_USD}, "created_unix": 0}
    redis_cli("HSET", KEYS_PREFIX + "{vkeys}:records", VIRTUAL_KEY_NAME, json.dumps(record))
    redis_cli("INCR", KEYS_PREFIX + "{vkeys}:version")


def redis_calls():
    """Redis 自启动以来执行过的（全部命令数, 脚本调用数）：INFO commandstats 各命令 calls 之和（脚本里的命令也计在各自名下），
    以及 EVALSHA 与 EVAL 的次数（每个脚本调用是客户端发出的一条命令）。"""
    total = scripts = 0
    for line in redis_cli("INFO", "commandstats").splitlines():
        if line.startswith("cmdstat_"):
            calls = int(line.split("calls=")[1].split(",")[0])
            total += calls
            if line.startswith(("cmdstat_evalsha:", "cmdstat_eval:")):
                scripts += calls
    return total, scripts


def keys_settings(settings, key):
    """配了 Redis 的压测配置（限流与预算都走 Redis），请求带 `key`。"""
    variant = copy.copy(settings)
    variant.extra_yaml = "\n".join([settings.extra_yaml,
                                    f'redis: {{ url: "{CACHE_REDIS_URL}", key_prefix: "{KEYS_PREFIX}" }}'])
    variant.client_key = key
    return variant


def cmd_keys(settings, workdir):
    """每个请求的吞吐、延迟、Redis 命令数与 callgrind 指令数：配置文件的密钥对虚拟密钥 + 每日预算。"""
    seed_virtual_key()
    rounds = int(env_num("ROUNDS", "3"))
    print_header(settings, f"虚拟密钥与预算（bench/run.sh keys，并发 {CACHE_CONCURRENCY}）")
    stack = Stack(keys_settings(settings, CLIENT_KEY), tempfile.mkdtemp(dir=workdir), NONSTREAM_CHUNKS, proxies=False)
    results = {}
    try:
        url, proc = stack.urls[CHATNEXUS], stack.procs[CHATNEXUS]
        for path, key in ((CONFIG_KEY_PATH, CLIENT_KEY), (VIRTUAL_KEY_PATH, VIRTUAL_KEY)):
            script = wrk_script(workdir, OPENAI_MODEL, "chat", key)
            run_wrk(settings, url, script, CACHE_CONCURRENCY, 1)
            samples = []
            for _ in range(rounds):
                before = redis_calls()
                result = with_cpu(proc, lambda: run_wrk(settings, url, script, CACHE_CONCURRENCY, settings.ns_secs))
                after = redis_calls()
                result["redis_calls"] = (after[0] - before[0]) / max(result["requests"], 1)
                result["redis_scripts"] = (after[1] - before[1]) / max(result["requests"], 1)
                samples.append(result)
            results[path] = median_result(samples)
    finally:
        stack.stop()
    print("\n| 密钥 | 请求/秒 | p50（毫秒） | p99（毫秒） | 被测进程 CPU（微秒/请求） | Redis 脚本调用/请求 | Redis 命令/请求（含脚本内） | 指令/请求（callgrind，并发 1） |")
    print("|---|---|---|---|---|---|---|---|")
    secs = int(env_num("PROFILE_SECS", "5"))
    for path, key in ((CONFIG_KEY_PATH, CLIENT_KEY), (VIRTUAL_KEY_PATH, VIRTUAL_KEY)):
        r = results[path]
        r["instructions"], _ = instructions_per_request(keys_settings(settings, key), workdir, CHATNEXUS,
                                                        False, NONSTREAM_CHUNKS, secs)
        print(f"| {path} | {rps(r):,.0f} | {ms(r['p50_us'])} | {ms(r['p99_us'])} | "
              f"{cpu_us_per(r, 'requests'):.1f} | {r['redis_scripts']:.2f} | {r['redis_calls']:.2f} | {r['instructions']:,.0f} |")
    save("keys", results)
    return 0


COMMANDS = {"bench": cmd_bench, "hold": cmd_hold, "soak": cmd_soak, "profile": cmd_profile,
            "cache": cmd_cache, "keys": cmd_keys, "embeddings": cmd_embeddings}


def main():
    name = sys.argv[1] if len(sys.argv) > 1 else "bench"
    if name not in COMMANDS:
        sys.exit(f"未知子命令 {name}，可用：{'、'.join(COMMANDS)}")
    settings = Settings()
    with tempfile.TemporaryDirectory(prefix="chatnexus-bench-") as workdir:
        sys.exit(COMMANDS[name](settings, workdir))


if __name__ == "__main__":
    main()
