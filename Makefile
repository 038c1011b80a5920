# posd — two entry points: `make demo` and `make test`. Both build .venv from nothing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/posd demo $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/scan_latency.py
	$(BIN)/python bench/confirm_delay.py
	$(BIN)/python bench/hq_sync.py
	$(BIN)/python bench/z_report.py
	$(BIN)/python bench/idle.py

clean:
	rm -rf $(VENV) posd-demo .pytest_cache
