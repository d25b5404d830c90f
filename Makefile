# Two commands on a fresh machine with python3 >= 3.11 and make:
#   make demo   create .venv, install fbackprop, run the main job (a gradient-verification report)
#   make test   create .venv if needed, run the whole test suite
#   make docs   build the documentation site into site/ (mkdocs build --strict)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test test-sweeps test-slow bench docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python experiments/demo.py

# Two workers: the suite is mostly XLA compilation, one core each
test: $(STAMP)
	$(BIN)/python -m pytest -n 2

# The long parameter grids (every conv/pool configuration piece by piece), left out of make test
test-sweeps: $(STAMP)
	$(BIN)/python -m pytest -n 2 -m sweep

# The longest end-to-end runs (notebooks 02-05, the experiments' and benchmarks' quick runs, and more),
# left out of make test to keep it under ten minutes on two cores; CI runs them too
test-slow: $(STAMP)
	$(BIN)/python -m pytest -n 2 -m slow

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_backprop.py

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis
