# Regional health-data hub — set-up, demo, tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PG_TEST_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test

.PHONY: install system-packages assets demo serve test test-postgres lint openapi bench clean

# unixODBC and the ODBC drivers the source adapters use (MariaDB, PostgreSQL, SQLite),
# the headless Chromium the web-page tests drive (Playwright uses it; it downloads no browser),
# and the CJK fonts its screenshots of the Chinese pages need.
SYSTEM_PACKAGES := unixodbc odbc-mariadb odbc-postgresql libsqliteodbc chromium fonts-noto-cjk

$(BIN)/hub: pyproject.toml
	@$(PYTHON) -c "import venv, ensurepip" 2>/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "python venv support is missing: installing python3-venv"; \
	    apt-get update -qq && apt-get install -y -qq python3-venv; \
	  else \
	    echo "python venv support is missing: run 'sudo apt-get install python3-venv'" >&2; exit 1; \
	  fi; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	@touch $(BIN)/hub

install: system-packages $(BIN)/hub assets ## Create .venv and install the hub with its test extras

# The browser libraries the pages use (ECharts), from npm into the hub's static files: served by the hub
# itself, never from a CDN (hospital intranets have no internet). Versions are pinned in web/package-lock.json.
ASSETS := hub/api/static/vendor/echarts.min.js

assets: $(ASSETS) ## Build the pages' browser libraries from npm (needs node and npm)

$(ASSETS): web/package.json web/package-lock.json
	@command -v npm >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing nodejs npm"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; \
	  else \
	    echo "npm is missing: run 'sudo apt-get install nodejs npm'" >&2; exit 1; \
	  fi; }
	npm ci --prefix web --ignore-scripts --no-audit --no-fund --loglevel=error
	mkdir -p hub/api/static/vendor
	cp web/node_modules/echarts/dist/echarts.min.js hub/api/static/vendor/echarts.min.js
	cp web/node_modules/echarts/LICENSE hub/api/static/vendor/echarts.LICENSE

system-packages: ## Install the ODBC drivers, Chromium and CJK fonts (Debian) when they are missing
	@if ! odbcinst -q -d 2>/dev/null | grep -q 'MariaDB Unicode' || ! odbcinst -q -d | grep -q 'PostgreSQL Unicode' \
	    || ! odbcinst -q -d | grep -q 'SQLite3' || ! command -v chromium >/dev/null \
	    || ! fc-list 2>/dev/null | grep -q 'Noto Sans CJK'; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing $(SYSTEM_PACKAGES)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES) >/dev/null; \
	  else \
	    echo "ODBC drivers or Chromium are missing: run 'sudo apt-get install $(SYSTEM_PACKAGES)'" >&2; exit 1; \
	  fi; \
	fi

demo: install ## Build a synthetic consortium (./var/demo), ingest it into ./var/hub.db, serve on 127.0.0.1:8080
	$(BIN)/hub demo --host 127.0.0.1 --port 8080

serve: install
	$(BIN)/hub serve --host 127.0.0.1 --port 8080

test: install ## The whole test suite (SQLite unless HUB_TEST_DATABASE_URL is set)
	$(BIN)/pytest -q

test-postgres: install ## The same suite against PostgreSQL
	HUB_TEST_DATABASE_URL=$(PG_TEST_URL) $(BIN)/pytest -q

lint: install
	$(BIN)/lint-imports

openapi: install ## Regenerate openapi/openapi.json from the app
	$(BIN)/hub openapi export

bench: install ## Transaction-load and read benchmark (SQLite and PostgreSQL)
	$(BIN)/python bench/bench_fhir.py --database sqlite
	$(BIN)/python bench/bench_fhir.py --database postgresql
	$(BIN)/python bench/bench_conditional_bundle.py --database sqlite
	$(BIN)/python bench/bench_conditional_bundle.py --database postgresql
	$(BIN)/python bench/bench_security.py
	$(BIN)/python bench/bench_ingest.py --database postgresql
	$(BIN)/python bench/bench_ingest.py --database sqlite --reuse-source

clean:
	rm -rf var .pytest_cache
