# syntax=docker/dockerfile:1
# dcs-operator as a static binary on distroless: `docker build -t dcs-operator .`
# The chart (charts/dcs-operator) runs it as 65532 with a read-only root filesystem.

FROM rust:1-bookworm AS builder
# musl-tools gives musl-gcc, the C compiler aws-lc-rs (the TLS crypto) is built
# with for a static binary; cmake covers aws-lc-sys versions that build with it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools cmake \
    && rm -rf /var/lib/apt/lists/*
RUN rustup target add x86_64-unknown-linux-musl
ENV CC_x86_64_unknown_linux_musl=musl-gcc
WORKDIR /src
# The whole tree (minus .dockerignore): Cargo.toml names the test targets too.
COPY . .
RUN cargo build --release --locked --target x86_64-unknown-linux-musl --bin dcs-operator

# Static: no libc needed. The nonroot variant's user is 65532.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=builder /src/target/x86_64-unknown-linux-musl/release/dcs-operator /dcs-operator
USER 65532:65532
ENTRYPOINT ["/dcs-operator"]
CMD ["run"]
