# usbip.usbip — developer entry points. Run as root on Debian 12.
#   make demo   the main job, end to end in the VM lab
#   make test   every test: unit tests on the host, then the in-guest suites
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
LAB := $(PY) -m lab
STAMP := $(VENV)/.installed

.PHONY: all venv lab-deps lint ansible-lint sanity unit lab-selftest integration fleet lab-suites test demo clean coverage mutation

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
	$(LAB) --timeout 2700 pytest -v -rA --durations=15 tests/integration

fleet: venv lab-deps
	@echo "==> fleet: site.yml over SSH to a server and a client guest, then persistence"
	$(PY) -m pytest -v -rA --durations=0 --timeout 2400 tests/fleet

# The in-guest suite (one guest) and the fleet (two guests) side by side: they share no port, file or guest, and
# the fleet waits on SSH and on its guests' services more than it computes. Each one's output follows when it ends.
lab-suites: venv lab-deps
	@echo "==> in-guest suite and fleet, side by side"
	$(MAKE) --no-print-directory -j2 --output-sync=target integration fleet

test: lint ansible-lint unit sanity lab-selftest lab-suites

demo: venv lab-deps
	@echo "==> demo: converge a server and a client in the lab with playbooks/site.yml"
	$(PY) -m lab.demo

.PHONY: bench
bench: venv lab-deps
	@echo "==> benchmarks: ours vs Debian's C usbip tools in one lab guest (about 15 min); rewrites docs/performance.md"
	$(PY) -m bench

# Branch coverage of the unit suite, one row per package (the table in docs/testing.md); about 3 minutes.
# The full report is build/coverage/report.txt, the HTML one build/coverage/html/index.html. Left out: the test
# of which modules a command's start-up imports (coverage's own start-up in the child imports more).
coverage: venv
	@echo "==> coverage of the unit suite (host)"
	rm -rf build/coverage && mkdir -p build/coverage
	export COVERAGE_RCFILE=tools/mutation/coverage.rc; \
	$(PY) -m coverage run -m pytest -q -p no:cacheprovider tests/unit \
	  --deselect tests/unit/cli/test_cli_usbip_main.py::test_start_up_imports_only_what_the_command_needs; \
	  status=$$?; \
	$(PY) -m coverage combine -q && \
	$(PY) -m coverage report > build/coverage/report.txt && \
	$(PY) -m coverage html -q -d build/coverage/html && \
	$(PY) -m coverage json -q -o build/coverage/coverage.json && \
	$(PY) tools/mutation/coverage_by_package.py build/coverage/coverage.json; exit $$status

# Mutation testing of the modules where a bug costs most, each against the unit tests that exercise it
# (tools/mutation/targets.py); not part of `make test`: hours for all targets. One target or more:
#   make mutation MUTATION_TARGETS="validate records"
# Scores per target on the terminal; survivors in build/mutation/survivors.txt.
MUTATION_TARGETS ?=
mutation: venv
	@echo "==> mutation testing (mutmut, lowest CPU priority, one test process)"
	nice -n 19 $(PY) tools/mutation/run.py $(MUTATION_TARGETS)

clean:
	rm -rf build .pytest_cache .ruff_cache
