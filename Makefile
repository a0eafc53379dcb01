# GreenOps — the single entry point. `make help` lists the targets.
CARGO ?= cargo
# Where cargo puts the binaries (CARGO_TARGET_DIR when set).
TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),target)
BIN := $(TARGET_DIR)/release
# `make run LISTEN=0.0.0.0:9850` (or GREENOPS_LISTEN) to be reachable from other machines; by
# default the demo listens on 127.0.0.1:9850 and `make serve` on the configured address.
LISTEN ?=
listen_flag = $(if $(LISTEN),--listen $(LISTEN))

.PHONY: help build release binaries run serve simulate run-postgres stop-postgres test lint fmt clean-data \
	bench-postgres bench-postgres-latency bench-sqlite bench-metrics agent-footprint mixin deb

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

build: ## debug build of every crate
	$(CARGO) build --workspace

release: ## optimised binaries in target/release (greenops, greenops-agent, greenops-bench)
	$(CARGO) build --release --workspace

binaries: ## release builds of the collector and the agent (./target/release/greenops, greenops-agent)
	$(CARGO) build --release -p greenops-collector -p greenops-agent

run: binaries ## zero-setup first run: collector on 127.0.0.1:9850, embedded SQLite (./data/demo.db), a simulated 25-machine office
	$(BIN)/greenops serve --demo $(listen_flag)

serve: binaries ## run the collector for real on the embedded default (./data/greenops.db), no simulation
	$(BIN)/greenops serve $(listen_flag)

simulate: binaries ## simulate MACHINES agents against a running collector (needs TOKEN=…)
	$(BIN)/greenops simulate --enrollment-token "$(TOKEN)" --machines $(or $(MACHINES),100) --speed $(or $(SPEED),60)

run-postgres: binaries ## run the collector on a persistent local PostgreSQL cluster in ./data/postgres
	@url=$$(scripts/dev-postgres.sh start) && \
	echo "Database: $$url" && \
	echo "Create an enrollment token with: $(BIN)/greenops enrollment-token create --database-url $$url" && \
	$(BIN)/greenops serve $(listen_flag) --database-url "$$url"

stop-postgres: ## stop the local development PostgreSQL cluster
	scripts/dev-postgres.sh stop

test: ## every test: unit, property, integration (real PostgreSQL, promtool, OTLP)
	$(CARGO) test --workspace

lint: ## formatting and clippy, as CI runs them
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## format the code
	$(CARGO) fmt --all

deb: binaries ## .deb packages of the collector and the agent in target/deb (packaging/deb/check.sh installs and tests them, as root)
	packaging/deb/build.sh

mixin: ## regenerate alerts/*.yml and dashboards/*.json from the jsonnet in mixin/ (commit the result)
	mixin/build.sh

MACHINES ?= 100000
DURATION ?= 20
# Empty: greenops-bench tries 32, 128 and 512 connections and keeps the fastest.
CONNECTIONS ?=
connections_flag = $(if $(CONNECTIONS),--connections $(CONNECTIONS))

bench-postgres: release ## durable ingest on PostgreSQL (dev cluster), max rate, vs the ceiling
	./target/release/greenops-bench --machines $(MACHINES) --duration $(DURATION) $(connections_flag) --database-url "$$(scripts/dev-postgres.sh start)"

bench-postgres-latency: release ## the same at a fixed RATE (open loop): latency percentiles
	./target/release/greenops-bench --machines $(MACHINES) --duration $(DURATION) $(connections_flag) --rate $(RATE) --database-url "$$(scripts/dev-postgres.sh start)"

bench-sqlite: release ## durable ingest on embedded SQLite, max rate, vs the ceiling
	./target/release/greenops-bench --machines $(MACHINES) --duration $(DURATION) $(connections_flag)

bench-metrics: release ## /metrics render time and size with 10k machines (MACHINES=100000 for the big one)
	./target/release/greenops-bench --machines $(or $(METRICS_MACHINES),10000) --duration 5 --connections 64 --levels 0 --no-ceiling

agent-footprint: ## agent memory, CPU per hour and binary size at default settings
	scripts/agent-footprint.sh

clean-data: stop-postgres ## delete local data (./data)
	rm -rf data
