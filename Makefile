# GreenOps — the single entry point. `make help` lists the targets.
CARGO ?= cargo
LISTEN ?= 0.0.0.0:9850

.PHONY: help build release run serve simulate run-postgres stop-postgres test lint fmt clean-data

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

build: ## debug build of every crate
	$(CARGO) build --workspace

release: ## optimised binaries in target/release
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

clean-data: stop-postgres ## delete local data (./data)
	rm -rf data
