# Two entry points for a fresh machine: `make test` and `make demo`.
# Both create .venv with Python 3.11 and install the pinned dependencies.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO_DIR ?= demo_output

.PHONY: test demo venv clean bench

venv: $(STAMP)

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,beam,hf,plot]'
	touch $(STAMP)

# Two worker processes; --dist loadfile keeps each test file (and its
# module fixtures, e.g. trained tiny runs) in one of them.
TEST_WORKERS ?= 2

test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests

demo: $(STAMP)
	$(PY) -m bio.demo --output_dir=$(DEMO_DIR)

bench: $(STAMP)
	for b in bench/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) $(DEMO_DIR) *.egg-info
