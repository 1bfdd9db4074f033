# fedshield — the two commands in the README: `make book` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.fedshield-installed
PROFILE ?= default
export FEDSHIELD_DATA ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),$(abspath data))
export PYTHONHASHSEED = 0
# OpenMP threads busy-wait by default; on a shared or loaded machine that makes small torch ops 20-50x slower
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: venv book test test-fast reproduce bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[book,test]"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (fedshield)" >/dev/null
	touch $(STAMP)

## Build the book from the stored, executed notebooks (executes nothing).
book: $(STAMP)
	$(VENV)/bin/jupyter-book build book/ --keep-going
	@echo "open book/_build/html/index.html"

## The test suite: unit/property tests, attack and simulator checks, nbval on the smoke notebooks.
test: $(STAMP)
	$(PY) -m pytest tests/ -q -ra --timeout=900 --nbval-lax --nbval-current-env -p no:cacheprovider; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi; exit $$rc

## Re-run the experiments with papermill into book/, then build the book (PROFILE=smoke|default|paper).
reproduce: $(STAMP)
	$(VENV)/bin/fedshield reproduce --profile $(PROFILE)

bench: $(STAMP)
	for f in benchmarks/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

clean:
	rm -rf book/_build .pytest_cache
