# geochem_sr: `make demo` and `make test` work on a fresh machine with Python 3.11.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed

.PHONY: venv demo test lint bench experiment clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# PyTorch first: a local CPU wheel on these machines (see README)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[test,notebooks,bench]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/geochem-sr demo --out demo_output

test: $(STAMP)
	$(VENV)/bin/ruff check geochem_sr tests benchmarks
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -n 2 --dist loadfile --nbmake tests notebooks/quickstart.ipynb

lint: $(STAMP)
	$(VENV)/bin/ruff check geochem_sr tests benchmarks
	$(VENV)/bin/lint-imports

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

experiment: $(STAMP)
	$(VENV)/bin/geochem-sr experiment --profile cpu

clean:
	rm -rf $(VENV) demo_output .pytest_cache
