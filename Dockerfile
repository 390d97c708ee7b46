# syntax=docker/dockerfile:1
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/liveforum ./cmd/liveforum \
 && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/liveforum-bench ./cmd/liveforum-bench

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/liveforum /out/liveforum-bench /usr/local/bin/
USER nonroot:nonroot
EXPOSE 8080 7881/udp
ENV LIVEFORUM_ADDR=:8080
ENTRYPOINT ["/usr/local/bin/liveforum"]
CMD ["serve"]
