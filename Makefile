# Every target installs first if needed, so each works as the first command on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-quick lint demo ui screenshots schemas bench bench-quick clean

install: $(STAMP)

$(STAMP): pyproject.toml examples/provider-plugin/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# The example third-party provider: the tests use it as a plugin installed beside us.
	$(BIN)/python -m pip install --quiet --no-deps -e examples/provider-plugin
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q

# Everything but the tests marked slow (kill -9 trials, 20% faults, the demo, the
# hypothesis apply-then-plan): about a minute less, for the edit-test loop.
test-quick: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check reconciler tests bench examples
	$(BIN)/ruff format --check reconciler tests bench examples
	$(BIN)/mypy reconciler tests bench examples/provider-plugin/src
	$(BIN)/lint-imports

demo: $(STAMP)
	BIN=$(BIN) sh scripts/demo.sh

# serve on the quickstart with its web UI; prints the address and a token to log in with.
ui: $(STAMP)
	BIN=$(BIN) sh scripts/ui.sh

# The README's screenshots of the web UI, from the browser test (needs chromium).
screenshots: $(STAMP)
	BIN=$(BIN) sh scripts/screenshots.sh

schemas: $(STAMP)
	$(BIN)/reconciler schema --out specs --provider insights --provider pachyderm

bench: $(STAMP)
	$(BIN)/python bench/run.py --sizes 1000,10000
	$(BIN)/python bench/load.py --documents 10000 --files 500
	$(BIN)/python bench/ui.py --resources 10000
	$(BIN)/python bench/replicas.py
	$(BIN)/python bench/soak.py

bench-quick: $(STAMP)
	$(BIN)/python bench/run.py --sizes 1000 --out bench/out/quick.json
	$(BIN)/python bench/load.py --documents 1000 --files 50
	$(BIN)/python bench/ui.py --resources 1000 --out bench/out/ui-quick.json
	$(BIN)/python bench/soak.py --runs 200 --warmup 50 --out bench/out/soak-quick.json

clean:
	rm -rf $(VENV) .demo .mypy_cache .ruff_cache .pytest_cache .hypothesis
