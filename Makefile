# `make run` and `make test` are the two commands a fresh machine needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA_DIR ?= sentiment-clf/lib/data/sst

.PHONY: run test models bench clean

run: $(VENV)/.installed
	$(BIN)/gunicorn --chdir sentiment-clf 'app:create_app()'

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest

models: $(VENV)/.installed
	$(BIN)/python sentiment-clf/build_model.py --data-dir $(DATA_DIR)

bench: $(VENV)/.installed-test
	$(BIN)/python bench/bench_predict.py

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-test: requirements-test.txt $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -r requirements-test.txt
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache
