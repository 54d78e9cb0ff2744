# make demo : set up .venv if needed, fetch the pinned real data, run the demo
# make test : set up .venv if needed, the style check (ruff), then the whole test suite on every core (what CI runs)
# make test-fast : the same without the slow tests (fairseq-train runs, several processes, the wheel) and downloads
VENV ?= .venv
PYTHON ?= python3
STAMP := $(VENV)/.xlint-installed

.PHONY: install demo lint test test-fast bench clean-venv

install: $(STAMP)

$(STAMP): setup.py scripts/install.sh
	PYTHON=$(PYTHON) bash scripts/install.sh $(VENV)
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/xlint demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: lint
	$(VENV)/bin/python -m pytest -q -n auto --dist loadfile tests

test-fast: $(STAMP)
	$(VENV)/bin/python -m pytest -q -n auto --dist loadfile -m "not slow and not network" tests

bench: $(STAMP)
	$(VENV)/bin/python benchmarks/bench_pretrain_throughput.py

clean-venv:
	rm -rf $(VENV)
