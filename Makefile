# make run  - set up and run the portal locally (SQLite, demo data)
# make test - set up and run the whole test suite (SQLite, then a real PostgreSQL; headless Chromium), with branch coverage
# make bench / make bench-load - benchmarks (docs/performance.md)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test check bench bench-load system-deps clean translations

$(VENV)/.installed: requirements.txt requirements-test.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-test.txt
	touch $@

run: $(VENV)/.installed
	$(PY) run.py

check: $(VENV)/.installed
	$(PY) -m flask --app run portal check

system-deps:
	bash .ci/system-deps.sh

# SQLite and PostgreSQL runs side by side (.ci/suite.sh); branch coverage of app/ and views/ (.coveragerc) printed
# after the SQLite run, then for both runs combined
test: $(VENV)/.installed system-deps
	PY=$(PY) bash .ci/suite.sh

$(VENV)/.bench-installed: $(VENV)/.installed requirements-bench.txt
	$(PY) -m pip install -q -r requirements-bench.txt
	touch $@

bench: $(VENV)/.bench-installed system-deps
	url=$$(bash .ci/postgres.sh) && PORTAL_BENCH_PG=$$url $(PY) -m bench

# peak load only: 50 users, 1M rows, gunicorn + locust; options via LOAD_ARGS, e.g. LOAD_ARGS="--runs 1 --label after"
bench-load: $(VENV)/.bench-installed system-deps
	url=$$(bash .ci/postgres.sh) && PORTAL_BENCH_PG=$$url $(PY) -m bench.load $(LOAD_ARGS)

clean:
	rm -rf $(VENV) var artifacts .pytest_cache .coverage htmlcov

translations: $(VENV)/.installed
	$(PY) translations/update.py
