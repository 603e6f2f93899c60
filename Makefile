# tuneloop — every target creates the virtualenv and installs what it needs on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# torch: the CPU wheel pinned first, so no extra below pulls a CUDA build.
TORCH  := torch==2.13.0
EXTRAS := dev,lora,selfplay
PYTEST := $(PY) -m pytest -p no:cacheprovider -p no:bqemulator

.PHONY: setup demo test test-all compile lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check "$(TORCH)"
	$(PY) -m pip install -q --disable-pip-version-check -e ".[$(EXTRAS)]"
	touch $(STAMP)

demo: setup
	$(PY) -m tuneloop.demo --out demo-output

test: setup
	$(PYTEST) -q -m "not slow and not gpu" tests

test-all: setup
	$(PYTEST) -q tests

compile: setup
	$(PY) -m compile

lint: setup
	$(VENV)/bin/ruff check .
	$(PY) -m compile --check

bench: setup
	$(PY) bench/bench_formatter.py --out bench/RESULTS-formatter.md

clean:
	rm -rf $(VENV) demo-output .pytest_cache
