# Set-up is part of every target: a fresh clone needs only Python 3.10+.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# CPU wheels are enough for the simulator (CuPy is the GPU path: pip install -e .[gpu]).
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: setup dev browser demo test lab clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# A torch wheel already on this machine (pip's find-links) is used offline; otherwise the
	# CPU build, which is a few hundred MB instead of the multi-GB CUDA one.
	$(PIP) install -q --no-index --no-deps "torch>=2.13" 2>/dev/null || \
		$(PIP) install -q "torch>=2.13" --index-url $(TORCH_INDEX) --extra-index-url https://pypi.org/simple
	$(PIP) install -q -e .
	touch $(STAMP)

# Test tools (pytest, nbclient, JupyterLab, Playwright, Dask) only for `make test`, so that
# `make demo` on a fresh clone installs just what the demo runs.
dev: $(DEV_STAMP)

$(DEV_STAMP): $(STAMP)
	$(PIP) install -q -e ".[dev]"
	touch $(DEV_STAMP)

demo: setup
	$(VENV)/bin/wsebench demo --out out

# The real-browser test (tests/browser) drives JupyterLab in Debian's Chromium. Install it when
# /usr/bin/chromium is missing and apt-get can run as root; otherwise say so and carry on: the
# test then skips with the reason, it never fails for lack of a browser.
CHROMIUM ?= /usr/bin/chromium
browser:
	@if [ -x $(CHROMIUM) ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing chromium for the browser test (apt-get)"; \
		( apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
			>/dev/null ) || echo "could not install chromium: the browser test will skip"; \
	else \
		echo "no $(CHROMIUM) and no apt-get as root: the browser test will skip"; \
	fi

test: dev browser
	$(PY) -m pytest -q -x -p no:cacheprovider

lab: setup
	$(PIP) install -q -e ".[dev,lab]"
	$(VENV)/bin/jupyter lab notebooks/

clean:
	rm -rf $(VENV) out .pytest_cache
