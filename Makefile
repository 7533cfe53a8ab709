# Set-up and the two everyday commands. Each target installs what it needs into the active
# Python environment (use a virtualenv), so on a fresh machine one command does everything.
PYTHON ?= python3
# CPU-only torch unless a torch is already installed (GPU users keep their own build).
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
WORKERS ?= auto

.PHONY: install gate test real lint report

install:
	$(PYTHON) -c "import torch" 2>/dev/null || \
		$(PYTHON) -m pip install --retries 0 "$(TORCH_SPEC)" --extra-index-url $(TORCH_INDEX)
	$(PYTHON) -m pip install -e ".[all,dev]"

gate: install  ## the CI gate: every synthetic hypothesis must be supported
	$(PYTHON) -m pytest ablation_tests -k synthetic -n $(WORKERS)

test: install  ## the framework's own tests
	$(PYTHON) -m pytest tests -n $(WORKERS)

real: install  ## both tiers; real data: Billboard (--billboard-root), digits, modlamp's AMPs
	$(PYTHON) -m pip install -e ".[peptides-real]"
	$(PYTHON) -m pytest ablation_tests --real -n $(WORKERS)

lint: install
	$(PYTHON) -m ruff check .

report:  ## tables of the latest session from the results store
	$(PYTHON) -m harness report
