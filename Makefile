# The two commands a newcomer needs (see README):
#   make run    the whole system on embedded PostgreSQL + Redis, paper venue, offline data
#   make test   the full test suite against real PostgreSQL + Redis
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test install lint bench services clean-data

$(STAMP): requirements.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "alphasniper: $(PYTHON) not found (Python 3.11 is required)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(PY) -m infra.devstack run

test: $(STAMP)
	$(PY) -m infra.devstack test

services: $(STAMP)
	$(PY) -m infra.devstack services

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# Benchmarks on the real stack (servers started as for `make test`); BENCH_ARGS="--only decide --quick".
bench: $(STAMP)
	$(PY) -m bench $(BENCH_ARGS)



clean-data:
	rm -rf .data
