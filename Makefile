# The two commands a newcomer types: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
FENXIAO := $(VENV)/bin/fenxiao
STAMP := $(VENV)/.installed

.PHONY: install browser run test test-quick bench translations clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

## Migrate the embedded SQLite database, load demo data if it is empty, print an admin
## token, and serve the API (with the projection worker, which also seals the log with a
## key kept in var/seal.key unless FENXIAO_SEAL_KEY is set) on http://127.0.0.1:8000.
run: install
	$(FENXIAO) db upgrade
	$(FENXIAO) demo --if-empty
	@TOKEN=$$($(FENXIAO) token create --role admin --name "admin-$$(date +%Y%m%d%H%M%S)-$$$$") && \
	  printf '\n  Admin token (use as: Authorization: Bearer <token>):\n\n    export TOKEN=%s\n\n' "$$TOKEN"
	@mkdir -p var && test -s var/seal.key || (umask 077 && \
	  $(PY) -c "import secrets; print(secrets.token_urlsafe(32))" > var/seal.key)
	FENXIAO_SEAL_KEY="$${FENXIAO_SEAL_KEY:-$$(cat var/seal.key)}" \
	  $(FENXIAO) serve --host 127.0.0.1 --port 8000

## Headless chromium and its driver for the console's browser tests
## (tests/test_console*_browser.py), and a font with Chinese characters for their
## screenshots of the Chinese pages, from Debian's packages when missing.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null && \
	  test -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc || ( \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver \
	    fonts-wqy-microhei)

## The whole suite, on SQLite and on PostgreSQL (127.0.0.1:5432 must be up).
test: install browser
	$(PY) -m pytest

## The same with the quick hypothesis profile, for iterating.
test-quick: install browser
	HYPOTHESIS_PROFILE=dev $(PY) -m pytest -x

bench: install
	$(PY) -m benchmarks

## The console's catalogs (api/translations/): extract every marked text of api/console*.py
## and the console templates (babel.cfg), merge it into each language's .po, compile the
## .mo files Flask-Babel reads. Then translate what the .po has new or fuzzy and run this
## again; tests/test_console_i18n.py fails until every text has its Chinese.
BABEL_KEYWORDS := -k lazy_gettext -k lazy_pgettext:1c,2 -k lazy_ngettext:1,2
PYBABEL := $(VENV)/bin/pybabel
CATALOGS := api/translations
TRANSLATED := zh_Hans_CN
translations: install
	$(PYBABEL) --quiet extract -F babel.cfg $(BABEL_KEYWORDS) --sort-by-file --no-wrap \
	  --project=fenxiao --copyright-holder=Fenxiao -o $(CATALOGS)/messages.pot .
	$(PYBABEL) --quiet update -i $(CATALOGS)/messages.pot -d $(CATALOGS) -l $(TRANSLATED) \
	  --init-missing --no-wrap --ignore-obsolete
	$(PYBABEL) compile --statistics -d $(CATALOGS)

clean:
	rm -rf $(VENV) var .hypothesis *.egg-info
