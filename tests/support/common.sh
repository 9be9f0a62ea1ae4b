# 测试脚本公用的小函数（用 source 引入，不单独运行）：取空闲端口、算密钥摘要、等端口或 HTTP 服务起来。

# 同时持有 N 个监听再一起释放，保证这些端口互不相同；打印 N 个端口号
free_ports() {
  python3 -c 'import socket, sys; ss=[socket.socket() for _ in range(int(sys.argv[1]))]; [s.bind(("127.0.0.1", 0)) for s in ss]; print(*[s.getsockname()[1] for s in ss])' "$1"
}

# 字符串的 SHA-256（十六进制），配置里的密钥摘要用它
sha256_of() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }

# 等到地址上的 HTTP 服务能应答（任何状态码都算），最多 10 秒
wait_http() {
  for _ in $(seq 1 100); do
    if curl -s -o /dev/null "$1"; then return 0; fi
    sleep 0.1
  done
  echo "等不到 $1 启动"
  return 1
}

# 等到本机端口能连上，最多 10 秒
wait_port() {
  for _ in $(seq 1 100); do (echo > "/dev/tcp/127.0.0.1/$1") 2> /dev/null && return 0; sleep 0.1; done
  echo "端口 $1 没有就绪" >&2
  return 1
}
