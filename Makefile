# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Both (re)create .venv from requirements.txt when it is missing or older than requirements.txt.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEVICE ?= cpu
# pytest workers (pytest-xdist, one per core up to this many; each runs torch with one thread)
TEST_WORKERS ?= 4

.PHONY: venv demo test lint clean browser

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) train_config.py configs/demo.py --device $(DEVICE)

# The app's browser tests drive the system's Chromium (Debian: chromium + chromium-driver);
# installed here when missing and this runs as root. REQUIRE_BROWSER=1: a missing browser fails
# those tests instead of skipping them.
browser:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
		else echo "the browser tests need: apt-get install chromium chromium-driver"; fi; \
	fi

test: $(STAMP) browser
	REQUIRE_BROWSER=1 $(PY) -m pytest -q -n auto --maxprocesses $(TEST_WORKERS) --dist loadscope $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check . && $(PY) -m ruff format --check .

clean:
	rm -rf $(VENV) .cache
