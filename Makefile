# The two commands of the README:
#   make train   - local environment, demo data, the whole pipeline
#   make test    - local environment, the test suite
#   make lock    - rewrite requirements/lock.txt from the environment (docs/development.md)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SERVICE ?= dssm_ranking
# The exact versions the tests passed with; pyproject.toml keeps the ranges users get.
LOCK := requirements/lock.txt

.PHONY: install demo train test lint lock clean

$(BIN)/daeda: pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e '.[test]'
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

# Pin what the environment has: new requirements of pyproject.toml are installed first (the
# newest versions its ranges allow), the locked ones stay. UPGRADE=1 upgrades everything to
# the newest allowed versions first. Run `make test` before committing the new lock.
lock: install
	$(BIN)/python -m pip install --quiet $(if $(UPGRADE),--upgrade --upgrade-strategy eager,-c $(LOCK)) -e '.[test]'
	$(BIN)/python requirements/lock.py > $(LOCK).tmp
	mv $(LOCK).tmp $(LOCK)
	touch $(BIN)/daeda

clean:
	rm -rf data/training_output data/training_output_enriched .snakemake .daedalus_tmp
