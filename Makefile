# kubectl-keepalive: the project's front door. `make test` is what CI runs.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help venv lint unit unit-oldest test demo dist bench bench-fleet bench-startup bench-compare soak cluster-up cluster-down clean

help:
	@echo "make demo   the incident replayed on the lab: a long request cut, enable, saved"
	@echo "make test   install what the tests need, then lint and run every test tier"
	@echo "make unit   the pure tier only (fast, no real components); unit-oldest: under python 3.9"
	@echo "make bench  run the benchmarks and print their tables (bench-fleet, bench-startup: lab)"
	@echo "make bench-compare REV=...   the work tree against a revision, one-pod commands, lab"
	@echo "make soak SEED=... STEPS=... a long seeded soak of commands and faults on the lab"
	@echo "make dist   the krew archive dist/kubectl-keepalive.tar.gz, plugin.yaml, krew-manifest.yaml"
	@echo "make cluster-up / cluster-down   the lab Kubernetes cluster (prints its kubeconfig)"

$(STAMP): setup.cfg pyproject.toml requirements/test.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements/test.txt -e .
	touch $(STAMP)

venv: $(STAMP)

lint: venv
	$(VENV)/bin/ruff check kubectl_keepalive tests scripts benchmarks lab
	$(VENV)/bin/mypy

unit: venv
	$(PY) -m pytest tests/unit

test: venv lint
	bash scripts/netlab-deps.sh
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest
	bash scripts/unit-oldest-python.sh

# The unit tier under python 3.9, the oldest the plugin supports (also the end of `make test`).
unit-oldest:
	bash scripts/unit-oldest-python.sh

dist: venv
	$(PY) scripts/dist/build.py

bench: venv
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) benchmarks/startup.py
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) benchmarks/parse_dump.py
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) benchmarks/krew_startup.py

demo: venv
	bash scripts/netlab-deps.sh
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) lab/demo.py \
	  "$$(PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash lab/cluster-up.sh)"

# The lab cluster: real control plane built from pinned Go modules, kwok nodes, real Envoys.
cluster-up: venv
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash lab/cluster-up.sh

cluster-down:
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash lab/cluster-down.sh

# The lab is one per machine: the lab benchmarks hold its lock while they use it. `-o`: the
# command does not inherit the lock, or the lab processes it starts would hold it for ever.
LAB_LOCK ?= /tmp/lab.lock
LAB_RUN := flock -o $(LAB_LOCK) env PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash -c

bench-fleet: venv
	$(LAB_RUN) '$(PY) benchmarks/fleet.py "$$(bash lab/cluster-up.sh)"'

# Start-up under each python3 (pyenv's 3.9 to 3.13 and the system's), pip and krew, with the
# one-pod rows against istioctl on the lab.
bench-startup: venv
	$(LAB_RUN) '$(PY) benchmarks/startup.py --kubeconfig "$$(bash lab/cluster-up.sh)"'
	$(LAB_RUN) '$(PY) benchmarks/krew_startup.py --kubeconfig "$$(bash lab/cluster-up.sh)"'

# Two revisions side by side on the lab (one-pod status, diff, doctor and istioctl), e.g.
# `make bench-compare REV=v0.1.0`: the work tree against REV, in one interleaved run.
REV ?= HEAD
bench-compare: venv
	$(LAB_RUN) '$(PY) benchmarks/compare.py --kubeconfig "$$(bash lab/cluster-up.sh)" $(REV)'

# A long soak on the lab: a seeded plan of commands and faults, checked after every step
# (tests/soak). `make soak SEED=7 STEPS=40`; FIRST=K replays the plan's first K steps.
SEED ?= 1
STEPS ?= 40
FIRST ?= $(STEPS)
soak: venv
	$(LAB_RUN) '$(PY) -m tests.soak --seed $(SEED) --steps $(STEPS) --first $(FIRST) \
	  --kubeconfig "$$(bash lab/cluster-up.sh)"'

clean:
	rm -rf $(VENV) .venv-oldest build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
