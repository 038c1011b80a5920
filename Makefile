# posd — two entry points: `make demo` and `make test`. Both build .venv from nothing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test bench bench-full clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/posd demo $(ARGS)

# Two pytest-xdist workers: the suite mostly waits (daemons starting and being killed,
# deadlines, sockets), 14.5 min of wall clock for 5.7 of CPU on one worker, 6.7 on two.
# TEST_WORKERS=0 runs it in one process (pytest's -n 0).
TEST_WORKERS ?= 2

test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/scan_latency.py
	$(BIN)/python bench/confirm_delay.py
	$(BIN)/python bench/hq_sync.py
	$(BIN)/python bench/z_report.py
	$(BIN)/python bench/reconcile.py
	$(BIN)/python bench/idle.py

# The long runs: a year-old till (730,000 sales), confirm -> known with 80 ms of round trip,
# a chain's 20 terminals pushing to HQ on PostgreSQL with fsync on, and the daemon's RSS
# after 100,000 sales, besides `make bench`.
bench-full: bench
	$(BIN)/python bench/year_till.py
	$(BIN)/python bench/confirm_delay.py --rtt-ms 80
	$(BIN)/python bench/hq_chain.py
	$(BIN)/python bench/rss_sales.py

clean:
	rm -rf $(VENV) posd-demo .pytest_cache
