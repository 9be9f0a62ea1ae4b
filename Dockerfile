# 多阶段构建：第一阶段编译，第二阶段只带二进制与默认配置，以非 root 用户运行。
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
    && useradd --system --no-create-home --shell /usr/sbin/nologin chatnexus
COPY --from=build /src/target/release/chatnexus /usr/local/bin/chatnexus
COPY conf /etc/chatnexus
USER chatnexus
EXPOSE 8080
# 容器里需要监听所有地址：运行时挂载自己的配置（server.listen: "0.0.0.0:8080"）
ENTRYPOINT ["/usr/local/bin/chatnexus"]
CMD ["-c", "/etc/chatnexus/chatnexus.yaml"]
