# provgate: two commands do everything on a fresh Debian machine with Python 3.11.
#   make demo   runs the main job on embedded defaults
#   make test   installs what tests need, then runs every test, ruff and mypy

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# Second environment for older Pi images: tflite-runtime 2.14 with NumPy < 2, OpenCV <= 4.11.
LEGACY_VENV  := .venv-legacy
LEGACY_STAMP := $(LEGACY_VENV)/.installed-stamp
# Debian packages the tests need, as "binary:package" pairs.
SYSTEM_DEPS := mosquitto:mosquitto pg_ctlcluster:postgresql
SBIN_PATH := /usr/sbin:/usr/local/sbin:$(PATH)

.PHONY: demo test lint typecheck pytest pytest-legacy bench system-deps venv clean

demo: $(STAMP)
	$(BIN)/provgate demo

test: system-deps $(STAMP) lint typecheck pytest pytest-legacy

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest

# The vision tests again, on tflite-runtime 2.14 (the tests check that runtime was the one used).
pytest-legacy: $(LEGACY_STAMP)
	PROVGATE_TFLITE_RUNTIME=tflite_runtime $(LEGACY_VENV)/bin/pytest tests/vision -p no:cacheprovider

bench: system-deps $(STAMP)
	$(BIN)/python -m bench

venv: $(STAMP)

# The venv is (re)built when pyproject.toml changes; the project is installed editable,
# which also compiles edge_agent/vision/_labelcore.c in place (setup.py), again when it changes.
NATIVE := setup.py edge_agent/vision/_labelcore.c

$(STAMP): pyproject.toml $(NATIVE)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "provgate needs Python 3.11 or newer: install python3.11 and run make PYTHON=python3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev,litert]'
	touch $(STAMP)

$(LEGACY_STAMP): pyproject.toml $(NATIVE)
	test -x $(LEGACY_VENV)/bin/python || $(PYTHON) -m venv $(LEGACY_VENV)
	$(LEGACY_VENV)/bin/python -m pip install --quiet -e '.[dev,tflite-legacy]'
	touch $(LEGACY_STAMP)

# Installs missing Debian packages when run as root; otherwise names them and stops.
system-deps:
	@missing=""; for dep in $(SYSTEM_DEPS); do \
	  bin=$${dep%%:*}; pkg=$${dep##*:}; \
	  PATH="$(SBIN_PATH)" command -v $$bin >/dev/null 2>&1 || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing system packages:$$missing"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -q $$missing >/dev/null 2>&1 || \
	      { apt-get update -q >/dev/null && apt-get install -y -q $$missing >/dev/null; } || exit 1; \
	  else \
	    echo "make test needs these Debian packages: sudo apt-get install$$missing"; exit 1; \
	  fi; \
	fi

clean:
	rm -rf $(VENV) $(LEGACY_VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis build
	rm -f edge_agent/vision/_labelcore*.so
