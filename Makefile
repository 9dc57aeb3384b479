# usbip.usbip — developer entry points. Run as root on Debian 12.
#   make demo   the main job, end to end in the VM lab
#   make test   every test: unit tests on the host, then the in-guest suites
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
LAB := $(PY) -m lab
STAMP := $(VENV)/.installed

.PHONY: all venv lab-deps lint unit lab-selftest integration test demo clean

all: test

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@echo "==> python venv ($(VENV))"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

venv: $(STAMP)

lab-deps:
	@echo "==> lab host packages"
	./lab/install-deps.sh

lint: venv
	@echo "==> ruff"
	$(VENV)/bin/ruff check plugins tests lab

unit: venv
	@echo "==> unit tests (host)"
	$(PY) -m pytest -q tests/unit

lab-selftest: venv lab-deps
	@echo "==> lab self-test (guest exit status, hang bound)"
	$(PY) -m pytest -q tests/lab

integration: venv lab-deps
	@echo "==> integration tests (inside one lab guest, real kernel)"
	$(LAB) --timeout 1200 pytest -v -rA tests/integration

test: lint unit lab-selftest integration

demo: venv lab-deps
	@echo "==> demo: C tools and the lab, end to end"
	$(LAB) --timeout 600 pytest -v -s tests/integration/test_lab_c_tools.py

clean:
	rm -rf build .pytest_cache .ruff_cache
