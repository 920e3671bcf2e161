# Everything runs from a local virtualenv (.venv) built on first use, so a fresh machine
# needs only python3 (>= 3.11) and make. The editable install is redone only when
# pyproject.toml changes (tracked by a stamp file inside .venv).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

# Extra arguments, e.g. `make demo ARGS="--speed 20 --agents 8"`
ARGS ?=

.PHONY: all demo test lint bench check-config clean

all: test

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit("python >= 3.11 is required, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --disable-pip-version-check -q -e '.[dev,harness]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/acdctl demo $(ARGS)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python bench/run.py $(ARGS)

check-config: $(STAMP)
	$(BIN)/acdctl check-config --config examples/acd.toml

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
