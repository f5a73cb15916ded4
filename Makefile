PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: install test demo faults bench clean

# The stamp reinstalls only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

install: $(VENV)/.installed

test: install
	$(BIN)/pytest -q

demo: install
	$(BIN)/floorwatch demo

# The slow fault scenarios (minutes each), beside the ones `make test` runs.
faults: install
	$(BIN)/pytest -q -m slow tests/faults

bench: install
	$(BIN)/floorwatch bench

clean:
	rm -rf $(VENV) .floorwatch *.egg-info
