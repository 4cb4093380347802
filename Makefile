# Set-up is part of every target: a fresh clone needs only Python 3.10+.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# CPU wheels are enough for the simulator (CuPy is the GPU path: pip install -e .[gpu]).
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
STAMP := $(VENV)/.installed

.PHONY: setup demo test lab clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# A torch wheel already on this machine (pip's find-links) is used offline; otherwise the
	# CPU build, which is a few hundred MB instead of the multi-GB CUDA one.
	$(PIP) install -q --no-index --no-deps "torch>=2.13" 2>/dev/null || \
		$(PIP) install -q "torch>=2.13" --index-url $(TORCH_INDEX) --extra-index-url https://pypi.org/simple
	$(PIP) install -q -e ".[dev]"
	touch $(STAMP)

demo: setup
	$(VENV)/bin/wsebench demo --out out

test: setup
	$(PY) -m pytest -q -x -p no:cacheprovider

lab: setup
	$(PIP) install -q -e ".[dev,lab]"
	$(VENV)/bin/jupyter lab notebooks/

clean:
	rm -rf $(VENV) out .pytest_cache
