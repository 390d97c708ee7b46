# liveforum — `make test` installs what the tests need where it can, then runs every test with -race.
GO ?= go
PKGS := ./...

.PHONY: test deps vet check fuzz bench run build clean

test: deps vet
	$(GO) test -race -count=1 $(PKGS)

# deps installs what the test suite needs on a fresh Debian machine (run as root; others get told):
# chromium for the browser tests in ./web, redis-server for the Redis broker tests in ./broker,
# simple-whip-client (command whip-client) for the WHIP encoder test in ./web.
deps:
	@scripts/install-test-deps.sh chromium redis-server simple-whip-client:whip-client

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet $(PKGS)

# check: staticcheck and govulncheck (offline database when ../shared/vulndb exists).
check: vet
	@scripts/check.sh

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeClient$$' -fuzztime 60s ./protocol
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeServer$$' -fuzztime 60s ./protocol
	$(GO) test -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime 60s ./auth
	$(GO) test -run '^$$' -fuzz '^FuzzSessionDescription$$' -fuzztime 60s ./signaling
	$(GO) test -run '^$$' -fuzz '^FuzzIsKeyframe$$' -fuzztime 60s ./signaling
	$(GO) test -run '^$$' -fuzz '^FuzzServerHello$$' -fuzztime 60s ./internal/dtlssrtp

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./server ./rooms ./protocol

run:
	$(GO) run ./cmd/liveforum

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/liveforum ./cmd/liveforum
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/liveforum-bench ./cmd/liveforum-bench

clean:
	rm -rf bin
