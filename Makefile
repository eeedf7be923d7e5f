# The two commands a new user runs: `make demo` (the main job) and `make test` (the test suite).
# Both install wanlab first (scripts/setup.sh: into ./.venv, or the active virtualenv).
PY := $(if $(VIRTUAL_ENV),$(VIRTUAL_ENV)/bin/python,.venv/bin/python)

.PHONY: setup demo test bench

setup:
	@bash scripts/setup.sh

demo: setup
	$(PY) -m wanlab.cli demo

test: setup
	$(dir $(PY))lint-imports --no-cache
	$(PY) -m pytest -q

bench: setup
	@for script in benchmarks/bench_*.py; do echo "== $$script"; $(PY) $$script || exit 1; done
