# The two commands of the README:  `make demo`  and  `make test`.
# Each does all of its own set-up on a fresh machine (virtualenv, torch CPU build, the
# project with its extras, and for the tests the Debian packages prometheus/alertmanager).

VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip -q --disable-pip-version-check

.PHONY: setup system-deps demo test lint bench config-docs clean

setup: $(VENV)/.installed

# torch goes in first, pinned to the CPU build (pip takes it from local disk here);
# otherwise a bare `torch` requirement pulls a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install torch==2.13.0
	$(PIP) install -e '.[test,demo,reference,confluent]'
	touch $@

system-deps:
	@if ! command -v promtool >/dev/null || ! command -v amtool >/dev/null \
	    || ! command -v prometheus >/dev/null; then \
	  echo "installing prometheus + alertmanager (Debian packages)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends prometheus prometheus-alertmanager \
	    >/dev/null; \
	fi

demo: setup
	$(VENV)/bin/visionmon demo

lint: setup
	$(VENV)/bin/ruff check .

test: setup system-deps lint
	$(PY) -m pytest -q

bench: setup
	$(PY) benchmarks/ingest.py

# docs/configuration.md from the config models (golden-tested)
config-docs: setup
	$(PY) -m visionmon.config_docs docs/configuration.md

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
