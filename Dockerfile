# syntax=docker/dockerfile:1
# opsdash: one static binary on a distroless base, run as non-root.
# Build:  docker build -t opsdash .
# Watch the host: see deploy/compose.yaml and docs/deploy.md.

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
USER nonroot:nonroot
EXPOSE 8080
# --server spells out the default. healthcheck runs with the server's
# environment and follows it: OPSDASH_LISTEN's port, and https accepting only
# the certificate in OPSDASH_TLS_CERT (self-signed or not); or OPSDASH_SERVER.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/opsdash", "healthcheck", "--server", "http://127.0.0.1:8080"]
ENTRYPOINT ["/usr/local/bin/opsdash"]
CMD ["serve"]
