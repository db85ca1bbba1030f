# Two commands for a fresh machine:
#   make demo   set up .venv and run the main job on the shipped data
#   make test   set up .venv, install the five serving engines (each in its own environment
#               under ~/.cache/metasel/engines) and run the test suite
# bash with pipefail: pip's failure is make's, through the filter of its output
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STORE ?= out/demo.sqlite
ENGINE_STORE ?= out/demo-engines.sqlite

.PHONY: setup engines test demo bench clean

setup: $(VENV)/.installed

# torch==2.13.0 is named in the same command so pip takes the CPU wheel and never a CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	@echo "installing torch 2.13.0 (CPU) and metasel with its extras into $(VENV): about a minute with a warm pip cache, several on a first install"
	$(BIN)/pip install --progress-bar off torch==2.13.0 -e '.[all,dev]' 2> >(grep -v '^WARNING: Location' >&2) | awk '/^(Collecting|Installing|Successfully)/ {print substr($$0, 1, 100); fflush()}'
	touch $@

# Each engine in its own pinned environment; already-installed ones are skipped (llama.cpp builds
# from source once, then pip's wheel cache has it).
engines: setup
	$(BIN)/metasel engines install all

test: setup engines
	METASEL_REQUIRE_ENGINES=1 $(BIN)/python -m pytest -q

demo: setup
	mkdir -p out
	rm -f $(STORE) $(STORE)-wal $(STORE)-shm
	$(BIN)/metasel --store $(STORE) import datasets/cpu-v1
	$(BIN)/metasel --store $(STORE) import datasets/gpu-v1
	$(BIN)/metasel --store $(STORE) show --top 5
	$(BIN)/metasel --store $(STORE) fit --metric throughput_tok_s --out out/demo-throughput.metasel
	$(BIN)/metasel --store $(STORE) suggest --task examples/llama_chat.yaml --model out/demo-throughput.metasel --plot out/suggest.png
	@echo "== serving engines (datasets/cpu-v2): which engine configuration for examples/engines_chat.yaml =="
	rm -f $(ENGINE_STORE) $(ENGINE_STORE)-wal $(ENGINE_STORE)-shm
	$(BIN)/metasel --store $(ENGINE_STORE) import datasets/cpu-v2
	$(BIN)/metasel --store $(ENGINE_STORE) suggest --task examples/engines_chat.yaml --no-landmarks --pareto throughput_tok_s,e2e_p99_ms --pareto-plot out/engines-front.png

clean:
	rm -rf $(VENV) out .pytest_cache
