# GreenOps — the single entry point. `make help` lists the targets.
CARGO ?= cargo
LISTEN ?= 0.0.0.0:9850

.PHONY: help build release run serve simulate run-postgres stop-postgres test lint fmt clean-data \
	bench-postgres bench-postgres-latency bench-sqlite bench-metrics agent-footprint mixin

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

build: ## debug build of every crate
	$(CARGO) build --workspace

release: ## optimised binaries in target/release (greenops, greenops-agent, greenops-bench)
	$(CARGO) build --release --workspace

run: ## zero-setup first run: collector on embedded SQLite (./data) plus a simulated 25-machine office
	$(CARGO) run --release -p greenops-collector -- serve --demo --listen $(LISTEN)

serve: ## run the collector for real on the embedded default (./data/greenops.db), no simulation
	$(CARGO) run --release -p greenops-collector -- serve --listen $(LISTEN)

simulate: ## simulate MACHINES agents against a running collector (needs TOKEN=…)
	$(CARGO) run --release -p greenops-collector -- simulate --enrollment-token "$(TOKEN)" --machines $(or $(MACHINES),100) --speed $(or $(SPEED),60)

run-postgres: ## run the collector on a persistent local PostgreSQL cluster in ./data/postgres
	@url=$$(scripts/dev-postgres.sh start) && \
	echo "Database: $$url" && \
	echo "Create an enrollment token with: cargo run --release -p greenops-collector -- enrollment-token create --database-url $$url" && \
	$(CARGO) run --release -p greenops-collector -- serve --listen $(LISTEN) --database-url "$$url"

stop-postgres: ## stop the local development PostgreSQL cluster
	scripts/dev-postgres.sh stop

test: ## every test: unit, property, integration (real PostgreSQL, promtool, OTLP)
	$(CARGO) test --workspace

lint: ## formatting and clippy, as CI runs them
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## format the code
	$(CARGO) fmt --all

mixin: ## regenerate alerts/*.yml and dashboards/*.json from the jsonnet in mixin/ (commit the result)
	mixin/build.sh

MACHINES ?= 100000
DURATION ?= 20
CONNECTIONS ?= 256

bench-postgres: release ## durable ingest on PostgreSQL (dev cluster), max rate, vs the ceiling
	./target/release/greenops-bench --machines $(MACHINES) --duration $(DURATION) --connections $(CONNECTIONS) --database-url "$$(scripts/dev-postgres.sh start)"

bench-postgres-latency: release ## the same at a fixed RATE (open loop): latency percentiles
	./target/release/greenops-bench --machines $(MACHINES) --duration $(DURATION) --connections $(CONNECTIONS) --rate $(RATE) --database-url "$$(scripts/dev-postgres.sh start)"

bench-sqlite: release ## durable ingest on embedded SQLite, max rate, vs the ceiling
	./target/release/greenops-bench --machines $(MACHINES) --duration $(DURATION) --connections $(CONNECTIONS)

bench-metrics: release ## /metrics render time and size with 10k machines (MACHINES=100000 for the big one)
	./target/release/greenops-bench --machines $(or $(METRICS_MACHINES),10000) --duration 5 --connections 64 --no-ceiling

agent-footprint: ## agent memory, CPU per hour and binary size at default settings
	scripts/agent-footprint.sh

clean-data: stop-postgres ## delete local data (./data)
	rm -rf data
