# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first (CPU wheel on disk), so nothing else pulls a CUDA build
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/ganprune demo

# test files run on TEST_WORKERS pytest-xdist workers (a file's tests stay together: its module fixtures
# are made once); each worker runs one torch thread (tests/conftest.py)
TEST_WORKERS ?= 2

test: $(STAMP)
	$(BIN)/lint-imports  # the layer and no-cycle contracts in pyproject.toml
	PYTHONHASHSEED=0 $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=15 tests  # RLlib's results follow the string-hash seed

clean:
	rm -rf $(VENV) build *.egg-info
