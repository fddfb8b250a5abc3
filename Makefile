# sse_sim: the two set-up commands are `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
export MPLBACKEND ?= Agg

.PHONY: run test install install-test bench lab lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Stamps: the package is (re)installed only when pyproject.toml changed since the last install,
# so `make run` starts at once the second time.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test,notebook]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test
	bash scripts/ensure-redis-server.sh
	bash scripts/ensure-chromium.sh

## Run the default scenario on the embedded default; outputs under out/baseline.
run: install
	$(BIN)/sse-sim run data/scenarios/baseline.yaml --out out/baseline

## Install what the tests need (Python packages, redis-server) and run the whole suite.
test: install-test
	TQDM_DISABLE=1 PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(BIN)/python -m pytest

bench: install-test
	$(BIN)/python bench/bench_engine.py
	$(BIN)/python bench/bench_platform.py
	$(BIN)/python bench/bench_events.py
	$(BIN)/python bench/bench_gateway.py
	$(BIN)/python bench/bench_gateway_10k.py
	$(BIN)/python bench/bench_validate.py

# Jupyter refuses to start as root without --allow-root; containers and CI machines run as root.
ALLOW_ROOT := $(shell [ "$$(id -u)" = 0 ] && echo --allow-root)

$(VENV)/.installed-lab: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[notebook]'
	touch $@ $(VENV)/.installed

## JupyterLab on notebooks/; LAB_ARGS adds options, e.g. LAB_ARGS="--no-browser --port 8899".
lab: $(VENV)/.installed-lab
	$(BIN)/jupyter lab $(ALLOW_ROOT) $(LAB_ARGS) notebooks/

lint: install-test
	$(BIN)/ruff check sse_sim tests bench

clean:
	rm -rf $(VENV) out .pytest_cache
