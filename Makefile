# The two commands: `make demo` (bring up the demo topology) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_PLAN := config/demo.yaml

.PHONY: all demo demo-images demo-down status test unit lint typecheck host images clean bench bytecode

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV) || { sudo apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

host:
	bash scripts/host-setup.sh

# The package's bytecode, as a wheel install writes it: an editable install under
# PYTHONDONTWRITEBYTECODE=1 (this machine's environment) would compile every module again at
# each start (0.24 s). compileall skips what is up to date.
bytecode: $(STAMP)
	$(PY) -m compileall -q ollamatopo

images: $(STAMP) host
	$(PY) images/build.py

# The demo's bases: the stand-in and the Debian base (mmdebstrap); the services' own images
# are built by `up` itself, from the `build:` keys of config/demo.yaml.
demo-images: $(STAMP) host
	$(PY) images/build.py standin debian

demo: demo-images bytecode
	$(PY) -m ollamatopo up --plan $(DEMO_PLAN) --log-format console
	$(PY) -m ollamatopo status --plan $(DEMO_PLAN) --log-format console

demo-down: $(STAMP)
	$(PY) -m ollamatopo down --plan $(DEMO_PLAN)

status: $(STAMP)
	$(PY) -m ollamatopo status --plan $(DEMO_PLAN) --log-format console

test: $(STAMP) host lint bytecode
	$(PY) -m pytest

unit: $(STAMP)
	$(PY) -m pytest tests/unit

lint: $(STAMP)
	$(VENV)/bin/ruff check ollamatopo tests images bench
	$(VENV)/bin/mypy

# The benchmark (issue 4): reports, never fails on a slow machine. BENCH_ARGS picks parts,
# e.g. make bench BENCH_ARGS='scale --sizes 10,50'.
bench: $(STAMP) host images bytecode
	$(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

# The container image of ollamatopo itself (Dockerfile), built offline FROM the demo's
# Debian base with a wheelhouse made on the host; rebuilt only when its recipe changes.
.PHONY: ollamatopo-image
ollamatopo-image: $(STAMP) host
	$(PY) images/wheels.py
