# The two commands a newcomer types: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
FENXIAO := $(VENV)/bin/fenxiao
STAMP := $(VENV)/.installed

.PHONY: install run test test-quick bench clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

## Migrate the embedded SQLite database, load demo data if it is empty, print an admin
## token, and serve the API (with the projection worker) on http://127.0.0.1:8000.
run: install
	$(FENXIAO) db upgrade
	$(FENXIAO) demo --if-empty
	@TOKEN=$$($(FENXIAO) token create --role admin --name "admin-$$(date +%Y%m%d%H%M%S)-$$$$") && \
	  printf '\n  Admin token (use as: Authorization: Bearer <token>):\n\n    export TOKEN=%s\n\n' "$$TOKEN"
	$(FENXIAO) serve --host 127.0.0.1 --port 8000

## The whole suite, on SQLite and on PostgreSQL (127.0.0.1:5432 must be up).
test: install
	$(PY) -m pytest

## The same with the quick hypothesis profile, for iterating.
test-quick: install
	HYPOTHESIS_PROFILE=dev $(PY) -m pytest -x

bench: install
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) var .hypothesis *.egg-info
