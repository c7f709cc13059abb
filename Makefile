# locoad — `make help` lists the targets.
SHELL := /bin/bash
PY_BOOT ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
# --no-cache-dir: CI disks can be small and the CUDA torch build alone is ~5 GB in the venv;
# a cache copy of every wheel pip downloads (triton, ...) would only add to it.
PIP := $(PY) -m pip --no-cache-dir
STAMP := $(VENV)/.installed
ARGS ?=
# Where PYTHONDONTWRITEBYTECODE is set (the build machines), Python never writes the .pyc of what
# it imports and every process compiles ~5,000 modules again: import locoad.run 25 s instead of
# 10 s, in each CLI test and sweep job. The targets below let the first import write them.
unexport PYTHONDONTWRITEBYTECODE

.DEFAULT_GOAL := help
.PHONY: help install demo test test-all lint format sweep report benchmark clean

help: ## Show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

# Re-runs only when pyproject.toml or the Makefile changed (the stamp is newer otherwise).
# torch pinned: these wheels lie on the build machines' disk (see DEVELOPERS.md). uv installs in
# parallel and compiles no bytecode (the first import does): a fresh install takes ~40 s instead
# of pip's ~2 min. uv reads no pip configuration, so pip's index, extra indexes, find-links and
# constraints (where build machines point at their local wheels) are handed to it; pip does the
# install where uv fails.
PIPCONF = $$($(PIP) config get global.$(1) 2>/dev/null)
UV := UV_INDEX_URL="$(call PIPCONF,index-url)" UV_EXTRA_INDEX_URL="$(call PIPCONF,extra-index-url)" \
	UV_FIND_LINKS="$$(echo $(call PIPCONF,find-links) | tr ' ' ',')" UV_CONSTRAINT="$(call PIPCONF,constraint)" \
	UV_INDEX_STRATEGY=unsafe-best-match UV_NO_CACHE=1 $(VENV)/bin/uv pip install -q --python $(PY)
REQS := torch==2.14.1 torchvision==0.29.1 -e '.[dev,tune]'
$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PY_BOOT) -m venv $(VENV)
	$(PIP) install -q --upgrade pip uv
	$(UV) $(REQS) || $(PIP) install -q --no-compile $(REQS)
	# deaotpy without its deps: spatial-correlation-sampler does not build; it falls back to PyTorch.
	$(PIP) install -q --no-compile --no-deps 'deaotpy>=1.11'
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install locoad (no-op when up to date)

demo: $(STAMP) ## Generate synthetic LOCO-like data and run the offline pipeline end to end
	$(PY) -m locoad experiment=demo $(ARGS)

# Two xdist workers with one BLAS/OpenMP thread each: two multi-threaded pools on two cores
# oversubscribe them, and every small tensor op then waits for a descheduled thread.
TEST_ENV := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

test: $(STAMP) ## Run the test suite (slow tests excluded)
	$(TEST_ENV) $(PY) -m pytest -n 2 -m "not slow" $(ARGS)

test-all: $(STAMP) ## Run every test, slow ones included
	$(TEST_ENV) $(PY) -m pytest -n 2 $(ARGS)

lint: $(STAMP) ## Lint with ruff
	$(VENV)/bin/ruff check src tests benchmarks

format: $(STAMP) ## Format with ruff
	$(VENV)/bin/ruff format src tests benchmarks
	$(VENV)/bin/ruff check --fix src tests benchmarks

sweep: $(STAMP) ## Run an ablation multirun (EXP=aligner_x_features by default)
	$(PY) -m locoad -m experiment=$(or $(EXP),aligner_x_features) $(ARGS)

report: $(STAMP) ## Summarise sweeps: make report DIR=outputs/multiruns/<sweep>
	$(VENV)/bin/locoad-report $(or $(DIR),outputs/multiruns)

benchmark: $(STAMP) ## Run the CPU benchmarks (results in benchmarks/RESULTS.md)
	$(PY) benchmarks/run_all.py $(ARGS)

clean: ## Remove outputs, caches and the virtual environment
	rm -rf outputs/* multirun .cache .pytest_cache .ruff_cache wandb $(VENV)
	touch outputs/.gitkeep
