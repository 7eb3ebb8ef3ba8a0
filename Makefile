# leviathan — run "make help" for the targets.
SHELL := /bin/bash
export PATH := $(PATH):/usr/local/go/bin
GO ?= go
BIN := bin/leviathan

.PHONY: help deps deps-test build test bench lint demo clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-9s %s\n", $$1, $$2}'

deps: ## install the Debian packages leviathan needs to run (idempotent; root)
	@scripts/deps.sh

deps-test: ## also install what the tests and benchmarks need (idempotent; root)
	@scripts/deps.sh test

build: ## build bin/leviathan
	$(GO) build -o $(BIN) ./cmd/leviathan

test: deps-test ## vet, format check and every test, with the race detector and a Docker engine, then the API's tests again on an etcd store (root)
	$(GO) vet ./...
	@test -z "$$(gofmt -l .)" || { echo "gofmt would change:"; gofmt -l .; exit 1; }
	scripts/with-dockerd.sh $(GO) test -race -count=1 -timeout 20m ./...
	LEVIATHAN_TEST_STORE=etcd scripts/with-dockerd.sh $(GO) test -race -count=1 -timeout 20m ./rest/

bench: deps-test ## CEN/CIN speed against one ip process per operation; monitor fan-out latency; relay against socat; capture against tcpdump; CPool launch and Docker rejoin, with a Docker engine; a CEN of 300 members on 3 hosts against 1 (root)
	$(GO) run ./bench
	$(GO) run ./bench/monitor
	$(GO) run ./bench/relay
	$(GO) run ./bench/capture
	scripts/with-dockerd.sh $(GO) run ./bench/cpool
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./bench/multihost

lint: ## gofmt, go vet, staticcheck and a tidy go.mod
	@test -z "$$(gofmt -l .)" || { echo "gofmt would change:"; gofmt -l .; exit 1; }
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@latest ./...
	@cp go.mod /tmp/leviathan-go.mod.bak; cp go.sum /tmp/leviathan-go.sum.bak; $(GO) mod tidy; \
	  if ! git diff --quiet go.mod go.sum; then echo "go mod tidy changes go.mod/go.sum"; \
	  cp /tmp/leviathan-go.mod.bak go.mod; cp /tmp/leviathan-go.sum.bak go.sum; exit 1; fi

demo: deps build ## start leviathan, make the README example, show it, clean up (root)
	@scripts/demo.sh

clean: ## remove build output
	rm -rf bin
