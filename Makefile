# Every target installs first if needed, so each works as the first command on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint demo schemas bench bench-quick clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q

lint: $(STAMP)
	$(BIN)/ruff check reconciler tests bench examples
	$(BIN)/ruff format --check reconciler tests bench examples
	$(BIN)/mypy reconciler tests bench
	$(BIN)/lint-imports

demo: $(STAMP)
	BIN=$(BIN) sh scripts/demo.sh

schemas: $(STAMP)
	$(BIN)/reconciler schema --out specs --provider insights --provider pachyderm

bench: $(STAMP)
	$(BIN)/python bench/run.py --sizes 1000,10000
	$(BIN)/python bench/load.py --documents 10000 --files 500

bench-quick: $(STAMP)
	$(BIN)/python bench/run.py --sizes 1000 --out bench/out/quick.json
	$(BIN)/python bench/load.py --documents 1000 --files 50

clean:
	rm -rf $(VENV) .demo .mypy_cache .ruff_cache .pytest_cache .hypothesis
