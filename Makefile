# The README's two commands: `make demo` and `make test`. Each sets up everything it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Every install comes from uv.lock (hashes for every package, runtime and dev), through a
# pinned uv kept in .run/uv: a fresh clone installs the same versions next month as today.
UV_VERSION := 0.13.9
UV := .run/uv/bin/uv
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml uv.lock | cksum | cut -d' ' -f1)

.PHONY: demo test lint typecheck unit integration chaos bench bench-quick audit redis venv clean run run-dev test-tools chromium upgrade-deps

# A redis-server started for the demo (none answered) is stopped when the demo ends.
demo: $(STAMP)
	VENV=$(VENV) ./scripts/with-redis.sh $(BIN)/tango-resend demo

test: $(STAMP) redis test-tools lint typecheck
	$(BIN)/python -m pytest

# What the tests need beyond Python: Debian's chromium (the console's browser tests drive it
# through Playwright; no test downloads a browser) and promtool (checks the alert rules).
# CI runs as root on Debian, so apt-get works as it is.
test-tools: chromium $(BIN)/promtool

chromium:
	@test -x /usr/bin/chromium || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium; }

# Only the binary of Debian's prometheus package: unpacked, never installed, so its
# maintainer scripts cannot start (or leave running) a Prometheus server.
$(BIN)/promtool: | $(STAMP)
	rm -rf .run/promtool && mkdir -p .run/promtool
	cd .run/promtool && { apt-get download prometheus 2>/dev/null || \
		{ apt-get update -qq && apt-get download prometheus; }; }
	dpkg-deb -x .run/promtool/prometheus_*.deb .run/promtool/root
	install -m 0755 .run/promtool/root/usr/bin/promtool $@
	rm -rf .run/promtool

lint: $(STAMP)
	$(BIN)/ruff check worker tasks tests bench
	$(BIN)/ruff format --check worker tasks tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP) redis
	$(BIN)/python -m pytest tests/unit tests/sandbox

integration: $(STAMP) redis
	$(BIN)/python -m pytest tests/integration

chaos: $(STAMP) redis
	$(BIN)/python -m pytest -m chaos tests/chaos

# Benchmarks (bench/README.md): write bench/results/latest.{json,md} and the plots.
bench: $(STAMP) redis
	$(BIN)/python -m bench

bench-quick: $(STAMP) redis
	$(BIN)/python -m bench --quick

# Known vulnerabilities in the installed dependencies. Needs a vulnerability database on the
# network (not reachable from our CI machines); --strict so an unreachable one fails loudly.
audit: $(STAMP)
	$(BIN)/python -m pip install -q pip-audit
	$(BIN)/pip-audit --strict --skip-editable

# The Procfile's processes together (honcho), with the settings in .env; variables set in the
# shell win over .env (scripts/run_procfile.py says which), and .venv/bin is put on PATH.
run: $(STAMP) redis
	@test -f .env || { echo "no .env: cp .env.example .env and edit it (or: make run-dev)"; exit 2; }
	$(BIN)/python scripts/run_procfile.py --procfile Procfile --env-file .env

# The same plus the bundled sandbox as Tango (Procfile.dev), with .env or else .env.example's
# local defaults; the receiver listens on http://localhost:8000 with a local webhook secret kept
# in .run/dev-webhook-secret unless WEBHOOK_SECRET is set.
run-dev: $(STAMP) redis
	$(BIN)/python scripts/run_procfile.py --dev --procfile Procfile.dev \
		--env-file $(if $(wildcard .env),.env,.env.example)

redis: $(STAMP)
	VENV=$(VENV) ./scripts/ensure-redis.sh

venv: $(STAMP)

$(UV):
	rm -rf .run/uv && $(PYTHON) -m venv .run/uv
	.run/uv/bin/python -m pip install -q 'uv==$(UV_VERSION)'

# --locked: a uv.lock that no longer matches pyproject.toml is an error, never re-resolved
# on the quiet. --python: the machine's python3, so uv never downloads an interpreter.
$(STAMP): pyproject.toml uv.lock | $(UV)
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --locked --extra dev --python $(PYTHON) --quiet
	rm -f $(VENV)/.installed-* && touch $@

# Newer releases of everything within pyproject.toml's ranges, then the checks that guard our
# use of other packages' internals (kombu's Redis transport, redis-py's connections, typing).
# Run it before a release, or when a dependency publishes a fix we need; commit uv.lock if the
# checks pass.
upgrade-deps: | $(UV)
	$(UV) lock --upgrade --python $(PYTHON)
	$(MAKE) $(STAMP) redis
	$(BIN)/mypy
	$(BIN)/python -m pytest tests/unit/test_broker_transport.py tests/integration/test_resend_flow.py
	$(BIN)/python -m pytest -m chaos tests/chaos

clean:
	rm -rf $(VENV) .run .mypy_cache .ruff_cache .pytest_cache *.egg-info
