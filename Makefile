# tuneloop — every target creates the virtualenv and installs what it needs on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# torch: the CPU wheel pinned first, so no extra below pulls a CUDA build.
TORCH  := torch==2.13.0
EXTRAS := dev,hosted,lora,selfplay,gcp
PYTEST := $(PY) -m pytest -p no:cacheprovider -p no:bqemulator --durations=15

.PHONY: setup demo test test-all compile lint bench bench-formatter bench-lora bench-lora-chat bench-selfplay clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check "$(TORCH)"
	$(PY) -m pip install -q --disable-pip-version-check --constraint containers/constraints.txt -e ".[$(EXTRAS)]"
	touch $(STAMP)

demo: setup
	$(PY) -m tuneloop.demo --out demo-output

test: setup
	$(VENV)/bin/ruff check .
	$(PYTEST) -q -m "not slow and not gpu" tests

test-all: setup
	$(PYTEST) -q tests

compile: setup
	$(PY) -m compile

lint: setup lint-dockerfiles
	$(VENV)/bin/ruff check .
	$(PY) -m compile --check

# Benchmarks write their results (with the machine noted) to bench/RESULTS-*.md; commit them.
bench: bench-formatter bench-lora bench-lora-chat bench-selfplay

bench-formatter: setup
	$(PY) bench/bench_formatter.py --out bench/RESULTS-formatter.md

bench-lora: setup
	$(PY) bench/bench_lora.py --repeats 3 --results bench/RESULTS-lora.md

# Multi-turn chats, a tiny CPU size (~7 min on 2 cores); its own section of RESULTS-lora.md.
bench-lora-chat: setup
	$(PY) bench/bench_lora.py --data chat --preset test --pretrain-steps 200 --steps 12 --batch 4 \
		--seq-len 256 --train-examples 400 --repeats 2 --results bench/RESULTS-lora.md

bench-selfplay: setup
	$(PY) bench/bench_selfplay.py --out bench/RESULTS-selfplay.md

clean:
	rm -rf $(VENV) demo-output .pytest_cache

# -- Google Cloud (docs/google-cloud.md) ------------------------------------------------------------
# BigQuery stand-in for the tests: bqemulator needs DuckDB 1.5.5 and its spatial extension, while the
# project pins another DuckDB, so it gets its own virtualenv. The extension comes from the PyPI wheel
# duckdb-extension-spatial and is placed where DuckDB looks ($HOME/.duckdb/extensions/<ver>/<platform>,
# with HOME=.venv-bq/home when the tests start the emulator): nothing is downloaded at run time.
BQ_VENV  := .venv-bq
BQ_STAMP := $(BQ_VENV)/.installed
BQ_PKGS  := bqemulator==1.4.0 duckdb==1.5.5 duckdb-extension-spatial==1.5.5 numpy==2.4.6

.PHONY: bq-emulator images lint-dockerfiles function-source

test test-all: bq-emulator

bq-emulator: $(BQ_STAMP)

$(BQ_STAMP):
	test -x $(BQ_VENV)/bin/python || $(PYTHON) -m venv $(BQ_VENV)
	echo '*' > $(BQ_VENV)/.gitignore  # keep the emulator's venv out of git (as Python 3.13's venv does)
	$(BQ_VENV)/bin/python -m pip install -q --disable-pip-version-check $(BQ_PKGS)
	$(BQ_VENV)/bin/python -c "import duckdb, duckdb_extension_spatial as s, pathlib, shutil; \
	src = next(pathlib.Path(s.__file__).parent.rglob('spatial.duckdb_extension')); \
	plat = duckdb.execute('PRAGMA platform').fetchone()[0]; \
	dst = pathlib.Path('$(BQ_VENV)/home/.duckdb/extensions') / ('v' + duckdb.__version__) / plat; \
	dst.mkdir(parents=True, exist_ok=True); shutil.copy(src, dst / src.name); print('spatial ->', dst)"
	touch $(BQ_STAMP)

# Images: tags follow the package version (tuneloop/version.py), read by components/images.py.
IMAGE_CMD = $(PY) -c "from tuneloop.components import images; print(images.$(1))"

images: setup lint-dockerfiles
	@command -v docker >/dev/null 2>&1 || { echo "make images needs a Docker engine (docker build/push); none found"; exit 1; }
	docker build -f containers/base/Dockerfile -t "$$($(call IMAGE_CMD,BASE_IMAGE))" .
	docker build -f containers/trainer-gpu/Dockerfile -t "$$($(call IMAGE_CMD,GPU_IMAGE))" .
	docker build -f containers/selfplay-cpu/Dockerfile -t "$$($(call IMAGE_CMD,SELFPLAY_IMAGE))" .
	docker push "$$($(call IMAGE_CMD,BASE_IMAGE))"
	docker push "$$($(call IMAGE_CMD,GPU_IMAGE))"
	docker push "$$($(call IMAGE_CMD,SELFPLAY_IMAGE))"

lint-dockerfiles: setup
	$(VENV)/bin/hadolint --config containers/hadolint.yaml containers/*/Dockerfile

# The Cloud Function's source folder (main.py + requirements.txt + the package wheel) for
# `gcloud functions deploy ... --source build/function` (docs/google-cloud.md).
function-source: setup
	rm -rf build/function && mkdir -p build/function
	$(PY) -m pip wheel -q --no-deps --disable-pip-version-check -w build/function .
	printf 'from tuneloop.triggers.gcs_upload import on_dataset_finalized  # noqa: F401\n' > build/function/main.py
	cd build/function && printf '%s[gcp]\n' ./tuneloop-*.whl > requirements.txt && cat requirements.txt
