# The token node, the projector and the example resource server in one image (build context:
# the repository root). docker-compose.yml picks the binary with `command`.
FROM rust:1-bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends cmake libcurl4-openssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p tokend -p tokend-projector -p tokend-resource-server

FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates libcurl4 curl \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/tokend /src/target/release/projector /src/target/release/resource-server /usr/local/bin/
RUN mkdir /keys /secrets && chown nobody /keys /secrets
USER nobody
CMD ["tokend"]
