# `make run` and `make test` are the two commands a fresh machine needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA_DIR ?= sentiment-clf/lib/data/sst

.PHONY: run test models bench bench-compare soak clean

run: $(VENV)/.installed
	$(BIN)/gunicorn --chdir sentiment-clf 'app:create_app()'

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest

models: $(VENV)/.installed
	$(BIN)/python sentiment-clf/build_model.py --data-dir $(DATA_DIR)

bench: $(VENV)/.installed-test
	$(BIN)/python bench/bench_predict.py

# The side-by-side benchmark; MLServer gets a virtual environment of its own.
# uvloop<0.22: MLServer 1.7.1's parallel workers crash at start with uvloop 0.22/0.23.
bench-compare: $(VENV)/.installed-test .venv-mlserver/.installed
	$(BIN)/python bench/compare_mlserver.py

.venv-mlserver/.installed:
	$(PYTHON) -m venv .venv-mlserver
	.venv-mlserver/bin/python -m pip install --quiet "mlserver==1.7.1" "mlserver-sklearn==1.7.1" "uvloop<0.22" \
		scikit-learn==1.9.1 numpy==2.4.6 scipy==1.17.1
	touch $@

soak: $(VENV)/.installed-test
	$(BIN)/python bench/soak.py

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
	rm -rf $(VENV) .venv-mlserver .pytest_cache
