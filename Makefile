# The two commands a newcomer runs: `make demo` and `make test`.
# Both set up .venv on first use (pinned by constraints.txt) and are no-ops to re-run.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: test demo bench lint servers

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

# The tests start their own redis-server, Redis Cluster and prometheus on free ports, and make
# network namespaces with ip; install what the machine lacks.
# Debian's prometheus package may enable its own service (on :9090): the
# tests never use it, so whether it starts does not matter.
servers:
	@command -v redis-server >/dev/null 2>&1 || { \
		echo "installing redis-server (needed by the tests)"; \
		apt-get update -qq && apt-get install -y -qq redis-server; }
	@command -v redis-cli >/dev/null 2>&1 || { \
		echo "installing redis-tools (redis-cli joins the tests' Redis Cluster)"; \
		apt-get update -qq && apt-get install -y -qq redis-tools; }
	@command -v ip >/dev/null 2>&1 || { \
		echo "installing iproute2 (tests/hosts.py makes network namespaces for its hosts)"; \
		apt-get update -qq && apt-get install -y -qq iproute2; }
	@command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || { \
		echo "installing prometheus (tests/test_metrics.py scrapes the exporter with it)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq --no-install-recommends prometheus; }

test: $(STAMP) servers
	$(PY) -m pytest $(PYTEST_ARGS)

demo: $(STAMP)
	$(PY) flows/demo.py

bench: $(STAMP) servers
	$(PY) bench/store.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .
