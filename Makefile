# sse_sim: the two set-up commands are `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
export MPLBACKEND ?= Agg

.PHONY: run test install install-test bench lab lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/python -m pip install -q -e .

install-test: $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test,notebook]'
	bash scripts/ensure-redis-server.sh

## Run the default scenario on the embedded default; outputs under out/baseline.
run: install
	$(BIN)/sse-sim run data/scenarios/baseline.yaml --out out/baseline

## Install what the tests need (Python packages, redis-server) and run the whole suite.
test: install-test
	TQDM_DISABLE=1 PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(BIN)/python -m pytest

bench: install-test
	$(BIN)/python bench/bench_engine.py
	$(BIN)/python bench/bench_events.py
	$(BIN)/python bench/bench_gateway.py

lab: install
	$(BIN)/python -m pip install -q -e '.[notebook]'
	$(BIN)/jupyter lab notebooks/

lint: install-test
	$(BIN)/ruff check sse_sim tests bench

clean:
	rm -rf $(VENV) out .pytest_cache
