# The two commands a newcomer types: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test install lint pytest browser bench fuzz soak lock locks audit clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# torch first, pinned to the CPU wheel, so the project's range resolves to it; everything else at the
# versions in requirements.lock (the set CI tested; `make lock` regenerates it on purpose).
$(STAMP): pyproject.toml requirements.lock | $(PY)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]' -c requirements.lock
	touch $(STAMP)

install: $(STAMP)

run: install
	$(VENV)/bin/collapsewatch up --host $(HOST) --port $(PORT)

# Debian's chromium for the browser tests (never a downloaded browser build).
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update && apt-get install -y chromium; }

lint: install
	$(VENV)/bin/ruff check collapsewatch app worker tests bench setup.py
	$(VENV)/bin/ruff format --check collapsewatch app worker tests bench setup.py
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

pytest: install browser
	$(PY) -m pytest $(PYTEST_ARGS)

test: lint pytest

bench: install
	$(PY) -m bench.stats
	$(PY) -m bench.ingest
	$(PY) -m bench.pages
	$(PY) -m bench.load

# API fuzzing on SQLite and PostgreSQL, longer than CI's bounded run (tests/fuzz; CI: FUZZ_EXAMPLES=25).
fuzz: install
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-300} $(PY) -m pytest tests/fuzz -q

# Soak (not in CI): 30 minutes of bench.load plus real workers, one SIGKILLed every 3 minutes.
soak: install
	$(PY) -m bench.soak --minutes $${SOAK_MINUTES:-30}

# The locked dependency set (tests/security/test_dependency_lock.py checks it) and its audit;
# pip-audit needs a vulnerability database (PyPI JSON API or OSV): --strict fails when offline.
lock: install
	$(PY) tests/security/lockfile.py > requirements.lock

# Per-image locks for the Dockerfile (locks/web.txt, locks/worker-cpu.txt, locks/worker-cuda.txt):
# hash-pinned, from pyproject.toml's extras, constrained by requirements.lock, made with uv.
# TORCH_FIND_LINKS: where the CPU build of torch is found (a URL or a directory of wheels).
TORCH_FIND_LINKS ?= https://download.pytorch.org/whl/torch/
locks: install
	$(PY) -m pip install -q uv==0.13.10
	$(PY) locks/make_locks.py --torch-find-links $(TORCH_FIND_LINKS)

audit: install
	$(VENV)/bin/pip-audit -r requirements.lock --no-deps --disable-pip --strict --progress-spinner off

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
