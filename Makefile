# The commands a new user runs: `make demo` (the main job), `make lab` (the notebooks in JupyterLab) and
# `make test` (the test suite). Each installs wanlab first (scripts/setup.sh: into ./.venv, or the active
# virtualenv); `make lab` with the `lab` extra (JupyterLab and a kernel, no Ray, no test tools).
# `make test` checks the import layers (import-linter), lint (ruff) and types (mypy), then runs the tests
# and every docstring example in wanlab (doctests) on two workers.
PY := $(if $(VIRTUAL_ENV),$(VIRTUAL_ENV)/bin/python,.venv/bin/python)

.PHONY: setup demo lab test bench

setup:
	@bash scripts/setup.sh

demo: setup
	$(PY) -m wanlab.cli demo

lab:
	@bash scripts/setup.sh lab
	$(PY) -m jupyterlab notebooks/

test: setup
	$(dir $(PY))lint-imports --no-cache
	$(dir $(PY))ruff check wanlab tests benchmarks scripts
	$(dir $(PY))mypy
	$(PY) -m pytest -q -n 2 --dist loadfile tests wanlab --doctest-modules

bench: setup
	@for script in benchmarks/bench_*.py; do echo "== $$script"; $(PY) $$script || exit 1; done
