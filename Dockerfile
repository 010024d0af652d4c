# syntax=docker/dockerfile:1
# opsdash: one static binary on a distroless base, run as non-root.
# Build (docs/deploy.md#in-a-container):
#   docker build -t opsdash --build-arg VERSION=1.2.0 --build-arg COMMIT=$(git rev-parse --short HEAD) \
#     --build-arg DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ) .
# Watch the host: see deploy/compose.yaml and docs/deploy.md.
# Lint: go test -run TestDockerfileLint ./cmd/opsdash (BuildKit's checks).
#
# build compiles the static binary, with the version, commit and date in it.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
ARG DATE=unknown
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT} -X main.date=${DATE}" \
      -o /out/opsdash ./cmd/opsdash

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
ARG COMMIT=unknown
LABEL org.opencontainers.image.title="opsdash" \
      org.opencontainers.image.description="Live operations dashboard: host metrics over WebSockets, SSE and HTTP" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/opsdash /usr/local/bin/opsdash
# distroless' nonroot, by number: Kubernetes' runAsNonRoot can check a uid,
# not a name.
USER 65532:65532
EXPOSE 8080
# serve writes where it listens to this file and healthcheck reads it, so
# the check finds the server whether its port came from OPSDASH_LISTEN or
# from `serve --listen :9090` on the command line (and pins its --tls-cert).
# A read-only root needs a tmpfs on /tmp (deploy/compose.yaml has one).
ENV OPSDASH_ADDR_FILE=/tmp/opsdash.addr
# No --server here: an explicit --server is asked as given and would beat
# the address file, OPSDASH_LISTEN and OPSDASH_SERVER.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/opsdash", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/opsdash"]
CMD ["serve"]
