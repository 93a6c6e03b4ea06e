# Every target installs what it needs into $(VENV) first, so a fresh clone needs
# nothing but Python 3.11+ and make.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# Test files run on this many workers (pytest-xdist); PYTEST_WORKERS=0 runs them in one process.
PYTEST_WORKERS ?= 2

.PHONY: test demo bench perf lint install clean docs

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test,bench]'
	@touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: $(STAMP) lint
	$(PY) -c "import mitmproxy.version, sys; print('python', sys.version.split()[0], '/ mitmproxy', mitmproxy.version.VERSION)"
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

demo: $(STAMP)
	$(PY) demo/run.py

bench: $(STAMP)
	$(PY) bench/run_all.py

# Issue 17's figures side by side in one run; rewrites their table in docs/benchmarks.md.
perf: $(STAMP)
	$(PY) bench/performance.py --write-docs

clean:
	rm -rf $(VENV) .venv-* .pytest_cache .ruff_cache .mypy_cache .hypothesis demo/out bench/results

docs: $(STAMP)
	$(PY) -m baton.proxy.cli.reference > docs/reference.md
