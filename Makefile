# Two commands on a fresh machine: `make demo` and `make test`. Each creates the virtual
# environment .venv on first use and reinstalls into it whenever pyproject.toml changes.

PYTHON ?= python3
# The CPU build of torch, installed first, so `pip install -e .` does not pull a multi-GB CUDA build.
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
# Exists once .venv holds everything pyproject.toml asks for; older than pyproject.toml: reinstall.
STAMP := $(VENV)/.installed

.PHONY: demo test lint

demo: $(STAMP)
	$(BIN)/errorentropy demo

test: lint
	$(BIN)/python -m pytest -n 2 -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/mypy

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)
