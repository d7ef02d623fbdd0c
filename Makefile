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

# The tests start their own redis-server on a free port; install it when the machine has none.
servers:
	@command -v redis-server >/dev/null 2>&1 || { \
		echo "installing redis-server (needed by the tests)"; \
		apt-get update -qq && apt-get install -y -qq redis-server; }

test: $(STAMP) servers
	$(PY) -m pytest $(PYTEST_ARGS)

demo: $(STAMP)
	$(PY) flows/demo.py

bench: $(STAMP) servers
	$(PY) bench/store.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .
