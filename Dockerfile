# Build the manager binary: a static binary, built once per source change.
FROM golang:1.26 AS builder
ARG TARGETOS
ARG TARGETARCH
# Stamped into the binary (internal/version) by make docker-build; empty means not stamped. The
# build context has no .git, so the toolchain cannot record the commit itself.
ARG VERSION
ARG REVISION
ARG BUILD_DATE
WORKDIR /workspace
# Dependencies first, so that a source change reuses the module download layer.
COPY go.mod go.sum ./
RUN go mod download
COPY main.go main.go
COPY api/ api/
COPY controllers/ controllers/
COPY internal/ internal/
RUN CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} go build -trimpath \
    -ldflags "-s -w -X github.com/seed-a720dd5e/clusterstack-operator/internal/version.version=${VERSION} -X github.com/seed-a720dd5e/clusterstack-operator/internal/version.revision=${REVISION} -X github.com/seed-a720dd5e/clusterstack-operator/internal/version.buildDate=${BUILD_DATE}" \
    -o manager .

# A distroless runtime as a non-root user: no shell, no package manager.
FROM gcr.io/distroless/static:nonroot
WORKDIR /
COPY --from=builder /workspace/manager .
USER 65532:65532
ENTRYPOINT ["/manager"]
