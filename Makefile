# usbip.usbip — developer entry points. Run as root on Debian 12.
#   make demo   the main job, end to end in the VM lab
#   make test   every test: unit tests on the host, then the in-guest suites
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
LAB := $(PY) -m lab
STAMP := $(VENV)/.installed

.PHONY: all venv lab-deps lint ansible-lint sanity unit lab-selftest integration fleet test demo clean

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
	$(VENV)/bin/ruff check plugins tests lab bench

ansible-lint: venv
	@echo "==> ansible-lint (production profile)"
	$(VENV)/bin/ansible-lint

sanity: venv
	@echo "==> ansible-test sanity and ansible-doc"
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH tests/sanity/run.sh

unit: venv
	@echo "==> unit tests (host)"
	$(PY) -m pytest -q tests/unit

lab-selftest: venv lab-deps
	@echo "==> lab self-test (guest exit status, hang bound)"
	$(PY) -m pytest -q tests/lab

integration: venv lab-deps
	@echo "==> integration tests (inside one lab guest, real kernel)"
	$(LAB) --timeout 2700 pytest -v -rA tests/integration

fleet: venv lab-deps
	@echo "==> fleet: site.yml over SSH to a server and a client guest, then persistence"
	$(PY) -m pytest -v -rA --timeout 2400 tests/fleet

test: lint ansible-lint unit sanity lab-selftest integration fleet

demo: venv lab-deps
	@echo "==> demo: converge a server and a client in the lab with playbooks/site.yml"
	$(PY) -m lab.demo

.PHONY: bench
bench: venv lab-deps
	@echo "==> benchmarks: ours vs Debian's C usbip tools in one lab guest (about 15 min); rewrites docs/performance.md"
	$(PY) -m bench

clean:
	rm -rf build .pytest_cache .ruff_cache
