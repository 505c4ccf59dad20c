# Everything runs inside .venv, which `make` builds from requirements.lock on first use.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
CONFIG ?= configs/default.yaml
WORKDIR ?= workdir
ARGS ?=

.PHONY: run test lint format tensorboard clean bench-serve bench-train bench-data

$(VENV)/.installed: setup.py requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip==26.3"
	$(PY) -m pip install --quiet -c requirements.lock -e ".[dev]"
	touch $@

run: $(VENV)/.installed
	$(PY) run_pipeline.py --config $(CONFIG) --workdir $(WORKDIR) $(ARGS)

test: $(VENV)/.installed
	$(PY) -m pytest -q tests

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.installed
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

tensorboard: $(VENV)/.installed
	$(VENV)/bin/tensorboard --logdir $(WORKDIR)/artifacts --host 127.0.0.1 --port 6006

clean:
	rm -rf $(WORKDIR)

# Benchmarks: not part of `make test`; they write benchmarks/results/*.json (git-ignored).
bench-serve: $(VENV)/.installed
	$(PY) benchmarks/serve.py

bench-train: $(VENV)/.installed
	$(PY) benchmarks/train.py

bench-data: $(VENV)/.installed
	$(PY) benchmarks/data.py
