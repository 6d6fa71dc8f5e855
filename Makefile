# Every target does its own set-up: a fresh machine needs only python3 (>= 3.11) and make;
# test-versions and test-all need the other Pythons of noxfile.py's PYTHONS as well
# (found on PATH or among pyenv's builds).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CHECKSUM := $(shell cat pyproject.toml | cksum | cut -d' ' -f1)
STAMP := $(VENV)/.installed-$(CHECKSUM)
# The demo needs the package alone: `make run` installs only that (no test tools),
# unless `make test` has installed everything already.
RUN_STAMP := $(VENV)/.run-$(CHECKSUM)

.PHONY: test test-versions test-all lint typecheck pytest run dialogue peers interop-report bench fuzz docs clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

test: lint typecheck pytest

# The version tier (noxfile.py) on every other Python the package claims; a missing one fails.
test-versions: $(STAMP)
	$(PY) -m nox --no-color $(NOX_ARGS)

# The whole suite on the default Python, then the version tier on the others.
test-all: test test-versions

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks fuzz examples noxfile.py
	$(PY) -m ruff format --check src tests benchmarks fuzz examples noxfile.py

typecheck: $(STAMP)
	$(PY) -m mypy src noxfile.py

pytest: $(STAMP)
	$(PY) -bb -m pytest --cov --cov-branch --cov-report=term-missing $(PYTEST_ARGS)
	@# The core is gated at 100% of lines and branches, reached through its public API.
	$(PY) -m coverage report --include='*/pop3_sansio/*' --fail-under=100 --skip-covered

$(RUN_STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	test -e $(STAMP) || $(PY) -m pip install --quiet -e .
	rm -f $(VENV)/.run-*
	touch $(RUN_STAMP)

run: $(RUN_STAMP)
	$(VENV)/bin/pop3 serve

dialogue: $(STAMP)
	$(PY) examples/dialogue.py

peers:
	scripts/install-peers

# The interoperability tests, then docs/interop.md's matrix from their results (written
# even when some fail; the target then fails too).
interop-report: $(STAMP)
	mkdir -p build
	$(PY) -m pytest -p no:cacheprovider -q tests/test_interop_*.py \
		--junitxml=build/interop-junit.xml $(PYTEST_ARGS); status=$$?; \
		$(PY) scripts/interop-report build/interop-junit.xml docs/interop.md && exit $$status

# Each benchmark's results go to benchmarks/results/NAME.json, then plot.py draws the PNGs.
bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[bench]'
	mkdir -p benchmarks/results
	$(PY) benchmarks/bench_parse.py --json benchmarks/results/parse.json
	$(PY) benchmarks/bench_client.py --json benchmarks/results/client.json
	$(PY) benchmarks/bench_bindings.py --json benchmarks/results/bindings.json
	$(PY) benchmarks/bench_sessions.py --json benchmarks/results/sessions.json
	$(PY) benchmarks/bench_startup.py --json benchmarks/results/startup.json
	$(PY) benchmarks/bench_postgres.py --dovecot --json benchmarks/results/postgres.json
	$(PY) benchmarks/plot.py benchmarks/results

fuzz: $(STAMP)
	$(PY) -m pip install --quiet -e '.[fuzz]'
	$(PY) fuzz/run_all.py --seconds $${FUZZ_SECONDS:-60}

# The documentation site (mkdocs.yml) into site/; warnings are errors, as in the tests.
# NO_MKDOCS_2_WARNING silences Material's banner about MkDocs 2.0, which is not a build warning.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) .nox .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov build dist site
