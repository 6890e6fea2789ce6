# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Both (re)create .venv from requirements.txt when it is missing or older than requirements.txt.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEVICE ?= cpu
# pytest workers (pytest-xdist, one per core up to this many; each runs torch with one thread)
TEST_WORKERS ?= 4

.PHONY: venv demo test lint clean

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) train_config.py configs/demo.py --device $(DEVICE)

test: $(STAMP)
	$(PY) -m pytest -q -n auto --maxprocesses $(TEST_WORKERS) --dist loadscope $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check . && $(PY) -m ruff format --check .

clean:
	rm -rf $(VENV) .cache
