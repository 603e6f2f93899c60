# tuneloop — every target creates the virtualenv and installs what it needs on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# torch: the CPU wheel pinned first, so no extra below pulls a CUDA build.
TORCH  := torch==2.13.0
EXTRAS := dev,hosted,lora,selfplay,gcp,reports,chat
PYTEST := $(PY) -m pytest -p no:cacheprovider -p no:bqemulator --durations=15
# Two xdist workers: most of the suite waits on kfp.local task subprocesses and the emulators, so two
# workers on 2 cores take the default run from ~13 to ~9 minutes. XDIST= runs in one process.
XDIST  ?= -n 2

.PHONY: setup demo test test-all compile lint bench bench-formatter bench-export bench-lora bench-lora-chat bench-selfplay clean chromium

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
	$(PYTEST) $(XDIST) -q -m "not slow and not gpu" tests

test-all: setup
	$(PYTEST) $(XDIST) -q tests

compile: setup
	$(PY) -m compile

lint: setup lint-dockerfiles
	$(VENV)/bin/ruff check .
	$(PY) -m compile --check

# Benchmarks write their results (with the machine noted) to bench/RESULTS-*.md; commit them.
bench: bench-formatter bench-export bench-lora bench-lora-chat bench-selfplay

bench-formatter: setup
	$(PY) bench/bench_formatter.py --out bench/RESULTS-formatter.md

# export-dataset and tuneloop load at 100k, 400k and 1.6M rows: wall time, rows/s, peak RSS (several minutes)
bench-export: setup
	$(PY) bench/bench_export.py --out bench/RESULTS-export.md

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

# Headless Chromium for the slow report tests (tests/local/test_reports.py): Debian's package.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
chromium:
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }
	chromium --version

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

# Images (docs/google-cloud.md#4-images): IMAGE_REPOSITORY names the repository (default
# $TUNELOOP_IMAGE_REPOSITORY); the tag is tuneloop/version.py's version. After the push, the digests go to
# IMAGE_LOCK, which `tuneloop compile|submit|schedule create --image-lock` pins templates to.
IMAGE_REPOSITORY ?= $(TUNELOOP_IMAGE_REPOSITORY)
IMAGE_LOCK ?= build/images.lock.json
IMAGE_KINDS := base trainer-gpu selfplay-cpu
IMAGE_REF = $(PY) -m tuneloop.images ref $(1) --image-repository "$(IMAGE_REPOSITORY)"
NEED_REPOSITORY = @test -n "$(IMAGE_REPOSITORY)" || { echo "set IMAGE_REPOSITORY=REGION-docker.pkg.dev/PROJECT/REPO (or TUNELOOP_IMAGE_REPOSITORY)"; exit 2; }

images: setup lint-dockerfiles
	$(NEED_REPOSITORY)
	@command -v docker >/dev/null 2>&1 || { echo "make images needs a Docker engine (docker build/push); none found"; exit 1; }
	set -e; for kind in $(IMAGE_KINDS); do \
	  ref=$$($(call IMAGE_REF,$$kind)); \
	  docker build -f containers/$$kind/Dockerfile -t "$$ref" . && docker push "$$ref"; \
	done
	$(PY) -m tuneloop.images lock --image-repository "$(IMAGE_REPOSITORY)" --out $(IMAGE_LOCK) \
	  $$(for kind in $(IMAGE_KINDS); do \
	    ref=$$($(call IMAGE_REF,$$kind)); \
	    echo "$$kind=$$(docker inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "$$ref" | grep -m1 "^$(IMAGE_REPOSITORY)/tuneloop-$$kind@")"; \
	  done)

lint-dockerfiles: setup
	$(VENV)/bin/hadolint --config containers/hadolint.yaml containers/*/Dockerfile

# The Cloud Functions' source folder (main.py + requirements.txt + the package wheel) for
# `gcloud functions deploy ... --source build/function` (docs/google-cloud.md). One folder, one main.py
# exporting both entry points: on_dataset_finalized (GCS upload trigger) and on_game_result_created
# (Firestore game ingest); each function is deployed from it with its own --entry-point.
# The templates the upload trigger submits are compiled with the same images (build/templates/, pinned by
# IMAGE_LOCK when `make images` wrote one): upload build/templates/tune-and-promote.yaml.
function-source: setup
	@test -n "$(IMAGE_REPOSITORY)$(wildcard $(IMAGE_LOCK))" || { echo "set IMAGE_REPOSITORY=REGION-docker.pkg.dev/PROJECT/REPO (or run make images first): the template the function submits names these images"; exit 2; }
	rm -rf build/function build/templates && mkdir -p build/function
	$(PY) -m pip wheel -q --no-deps --disable-pip-version-check -w build/function .
	printf 'from tuneloop.triggers.gcs_upload import on_dataset_finalized  # noqa: F401\n' > build/function/main.py
	printf 'from tuneloop.triggers.firestore_ingest import on_game_result_created  # noqa: F401\n' >> build/function/main.py
	cd build/function && printf '%s[gcp]\n' ./tuneloop-*.whl > requirements.txt && cat requirements.txt
	$(VENV)/bin/tuneloop compile --out build/templates --image-repository "$(IMAGE_REPOSITORY)" \
	  $(if $(wildcard $(IMAGE_LOCK)),--image-lock $(IMAGE_LOCK))
