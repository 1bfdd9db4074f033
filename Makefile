# fedshield — the two commands in the README: `make book` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.fedshield-installed
# exact versions of the whole stack (refresh with `make lock`); every venv is built against it
LOCK   := constraints.txt
PROFILE ?= default
export FEDSHIELD_DATA ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),$(abspath data))
export PYTHONHASHSEED = 0
# OpenMP threads busy-wait by default; on a shared or loaded machine that makes small torch ops 20-50x slower
export OMP_WAIT_POLICY ?= PASSIVE
PYTEST := $(PY) -m pytest -q -ra --timeout=900 -p no:cacheprovider
NBVAL  := --nbval-lax --nbval-current-env
# the kernel families and thread counts `make test-variants` checks the notebooks under
VARIANTS ?= native aten-default aten-avx2 threads-1 threads-2

.PHONY: venv book test test-notebooks test-variants lock reproduce bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c $(LOCK) --upgrade pip
	$(PY) -m pip install -q -c $(LOCK) -e ".[book,test]"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (fedshield)" >/dev/null
	touch $(STAMP)

## Re-resolve the whole stack in a throw-away venv and write the exact versions to constraints.txt.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install -q --upgrade pip
	.lock-venv/bin/python -m pip install -q -e ".[book,test,flower]"
	{ echo "# Exact versions of fedshield's whole stack (pip constraints), written by \`make lock\` on $$(date -u +%F)"; \
	  echo "# with $$(.lock-venv/bin/python --version). torch is the CPU build (its +cpu label dropped: torch==2.13.0 is pinned)."; \
	  .lock-venv/bin/python -m pip freeze --all --exclude-editable | sed -e 's/^torch==\([0-9.]*\)+cpu$$/torch==\1/'; } > $(LOCK)
	rm -rf .lock-venv
	@echo "wrote $(LOCK): $$(grep -vc '^#' $(LOCK)) packages"

## Build the book from the stored, executed notebooks (executes nothing); warnings are errors.
## --all: an incremental build would not re-read, so not re-warn about, unchanged pages.
book: $(STAMP)
	$(VENV)/bin/jupyter-book build book/ --all -W --keep-going
	@echo "open book/_build/html/index.html"

## The test suite: unit/property tests, attack and simulator checks, nbval on the smoke notebooks.
## Each run gets a fresh result cache and table folder: nothing stale is reused, nothing committed is rewritten.
test: $(STAMP)
	tmp=$$(mktemp -d); FEDSHIELD_CACHE=$$tmp/cache FEDSHIELD_RESULTS=$$tmp/results \
	  $(PYTEST) tests/ $(NBVAL); rc=$$?; rm -rf $$tmp; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi; exit $$rc

## nbval on the smoke notebooks only, under VARIANT (native | aten-default | aten-avx2 | aten-avx512 | threads-N).
VARIANT ?= native
test-notebooks: $(STAMP)
	@v=$(VARIANT); env=""; case $$v in native) ;; aten-*) env="ATEN_CPU_CAPABILITY=$${v#aten-}";; \
	  threads-*) env="OMP_NUM_THREADS=$${v#threads-}";; \
	  *) echo "unknown VARIANT $$v"; exit 2;; esac; \
	tmp=$$(mktemp -d); start=$$(date +%s); echo "== notebooks under $$v ($${env:-no override})"; \
	env $$env FEDSHIELD_CACHE=$$tmp/cache FEDSHIELD_RESULTS=$$tmp/results $(PYTEST) tests/notebooks $(NBVAL); rc=$$?; \
	rm -rf $$tmp; echo "== $$v: rc=$$rc, $$(( $$(date +%s) - start )) s"; exit $$rc

## The notebook checks under every kernel family and thread count in VARIANTS (wall time of each).
test-variants: $(STAMP)
	@fail=0; for v in $(VARIANTS); do $(MAKE) --no-print-directory test-notebooks VARIANT=$$v || fail=1; done; exit $$fail

## Re-run the experiments with papermill into book/, then build the book (PROFILE=smoke|default|paper).
reproduce: $(STAMP)
	$(VENV)/bin/fedshield reproduce --profile $(PROFILE)

bench: $(STAMP)
	for f in benchmarks/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

clean:
	rm -rf book/_build .pytest_cache
