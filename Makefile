# The README's two commands: `make demo` and `make test`. Both create or reuse .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo demo-core test lint typecheck unit venv bench bench-masking clean browser

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check uv
	$(VENV)/bin/uv pip install --quiet --compile-bytecode --python $(PY) -e ".[all,dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/airflow/run_demo.py

# the core alone, through `lgpd-tasks exec`, without an orchestrator
demo-core: $(STAMP)
	$(PY) examples/core/walkthrough.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy src dagster_integration airflow_plugin

unit: $(STAMP)
	$(PY) -m pytest

# The browser test drives Debian's Chromium; install it once where we may (root, apt).
browser:
	@if { [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; } && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -q && apt-get install -y -q chromium chromium-driver; \
	fi

test: lint typecheck browser unit

bench: $(STAMP)
	$(PY) benchmarks/guard.py
	$(PY) benchmarks/credentials.py
	$(PY) benchmarks/airflow_overhead.py
	$(PY) benchmarks/dagster_overhead.py

# Needs the bench extra (Presidio, spaCy); the default venv and `make test` do not.
bench-masking: $(STAMP)
	$(VENV)/bin/uv pip install --quiet --compile-bytecode --python $(PY) -e ".[all,dev,bench]"
	$(PY) benchmarks/masking.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .demo
