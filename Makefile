# Two commands do all the set-up on a fresh machine:
#   make run    the service on the embedded SQLite default (keys and policy created on first run)
#   make test   every test, ruff and mypy (PostgreSQL tests use a throwaway database)
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: run test lint bench protos

$(BIN)/suanli: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

run: $(BIN)/suanli
	$(BIN)/suanli serve

lint: $(BIN)/suanli
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m api.protos --check

test: lint
	$(BIN)/pytest

bench: $(BIN)/suanli
	$(BIN)/python -m benchmarks

protos: $(BIN)/suanli
	$(BIN)/python -m api.protos
