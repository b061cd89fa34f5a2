# wxlogin — `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

BIND        ?= 127.0.0.1:8888
MOCK_BIND   ?= 127.0.0.1:9999
DATABASE_URL ?= sqlite://wxlogin.db
# The message push token both sides use offline (public: never a real one).
PUSH_TOKEN  ?= mockwechatpushtoken

.PHONY: help run build test test-client client-deps bench drill fuzz fmt lint clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

build: ## Build release binaries (wxlogin and mock-wechat)
	cargo build --release -p wxlogin -p mock-wechat

run: build ## Start mock-wechat and wxlogin (SQLite) wired together; Ctrl-C stops both
	@set -euo pipefail; \
	MOCK_WECHAT_BIND=$(MOCK_BIND) MOCK_WECHAT_UNIONID=1 \
	MOCK_WECHAT_PUSH_URL=http://$(BIND)/wechat/push MOCK_WECHAT_PUSH_TOKEN=$(PUSH_TOKEN) \
	./target/release/mock-wechat & mock=$$!; \
	trap 'kill $$mock 2>/dev/null; wait $$mock 2>/dev/null' EXIT; \
	for i in $$(seq 50); do curl -sf http://$(MOCK_BIND)/healthz >/dev/null && break; sleep 0.1; done; \
	echo; \
	echo "  mock-wechat on http://$(MOCK_BIND); wxlogin on http://$(BIND)"; \
	echo "  log in (in another terminal):"; \
	echo "    curl -s -d \"code=\$$(curl -s 'http://$(MOCK_BIND)/mock/code?user=alice')\" http://$(BIND)/api/wxuser"; \
	echo; \
	WXLOGIN_BIND=$(BIND) WECHAT_API_BASE=http://$(MOCK_BIND) \
	WXLOGIN_PUBLIC_URL=http://$(BIND) WECHAT_PUSH_TOKEN=$(PUSH_TOKEN) \
	WECHAT_APPID=wx1234567890abcdef WECHAT_SECRET=0123456789abcdef0123456789abcdef \
	DATABASE_URL=$(DATABASE_URL) ./target/release/wxlogin

test: ## Run every test: Rust suites, then the mini-program client tests (MariaDB at WXLOGIN_TEST_MYSQL_URL, default mysql://root@127.0.0.1:3306)
	cargo test --workspace
	cargo test -p tiny_http --lib
	cargo build --workspace
	$(MAKE) --no-print-directory client-deps
	node --test --test-reporter=spec tests/client/

client-deps: ## Install the client tests' one npm dependency (jose, pinned in tests/client/package-lock.json)
	@test -d tests/client/node_modules/jose || npm ci --prefix tests/client --no-audit --no-fund

# BENCH_PEER: a command starting another server that speaks our login API (e.g.
# /work/shared/peers/axum-login/run.sh; build it first), measured after wxlogin in the same run.
# The 1,024-connection row needs more open files than the usual 1,024: the bench raises its own
# soft limit with prlimit and warns when the hard limit is too low (then `ulimit -n 16384`).
BENCH_PEER ?=
bench: build ## Benchmark wxlogin on MariaDB, table in target/bench/last-run.md (~2 min; BENCH_PEER=CMD adds a peer side by side, ~3 min; BENCH_ARGS='--quick')
	cargo build --release -p wxlogin-tools --bin wxlogin-bench
	./target/release/wxlogin-bench $(if $(strip $(BENCH_PEER)),--peer '$(BENCH_PEER)') $(BENCH_ARGS)

drill: build ## Fault drill on loopback: stops/restarts the local MariaDB, slows/stops WeChat, attacks nginx and wxlogin's port (~1.5 min, root; DRILL_ARGS='--only open-port')
	cargo build --release -p wxlogin-tools --bin wxlogin-drill
	./target/release/wxlogin-drill $(DRILL_ARGS)

test-client: client-deps ## Run only the mini-program client tests (Node)
	cargo build --workspace
	node --test --test-reporter=spec tests/client/

FUZZ_SECONDS ?= 30
fuzz: ## Fuzz every parser for FUZZ_SECONDS (30) each; installs cargo-fuzz if missing
	command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	cd fuzz && for target in $$(cargo fuzz list); do \
		RUSTC_BOOTSTRAP=1 cargo fuzz run $$target -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done

fmt: ## Format the code
	cargo fmt --all

lint: ## Check formatting, clippy and rustdoc with warnings as errors
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace

clean: ## Remove build output and the default SQLite database
	cargo clean
	rm -f wxlogin.db wxlogin.db-wal wxlogin.db-shm
