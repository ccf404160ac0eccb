# Two commands do all the set-up on a fresh machine:
#   make run    the service on the embedded SQLite default (keys and policy created on first run)
#   make test   every test, ruff and mypy (PostgreSQL tests use a throwaway database)
# Every dependency, the build backend and the gRPC code generator included, is installed at
# the exact version and hash in requirements.lock; `make lock` refreshes it from pyproject.toml.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: run test lint bench protos lock chaos

$(BIN)/suanli: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes --no-deps -r requirements.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
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

chaos: $(BIN)/suanli
	$(BIN)/pytest -m chaos

bench: $(BIN)/suanli
	$(BIN)/python -m benchmarks

protos: $(BIN)/suanli
	$(BIN)/python -m api.protos

lock: $(BIN)/suanli
	$(BIN)/uv pip compile pyproject.toml requirements-build.in --extra dev --universal \
	  --python-version 3.11 --generate-hashes --quiet -o requirements.lock
