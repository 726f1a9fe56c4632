# The two commands of the README:
#   make train   - local environment, demo data, the whole pipeline
#   make test    - local environment, the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SERVICE ?= dssm_ranking

.PHONY: install demo train test lint clean

$(BIN)/daeda: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/daeda

demo: install
	$(BIN)/daeda demo

train: demo
	$(BIN)/daeda pipeline train $(SERVICE)

test: install
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=15 $(PYTEST_ARGS)

# What CI checks besides the tests: lint and format (ruff), types of the library (mypy).
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf data/training_output data/training_output_enriched .snakemake .daedalus_tmp
