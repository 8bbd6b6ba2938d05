# Koala Monitor. `make run` = the demo; `make test` = every test.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_DAYS ?= 14
DEMO_PER_DAY ?= 150
export KOALA_DATA_DIR ?= $(CURDIR)/data

.PHONY: run install test lint format bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(PY) requirements.txt requirements-dev.txt
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

## the demo: SQLite, jobs in-process, demo data, demo models, demo users, server on 127.0.0.1:8000
run: install
	$(PY) manage.py migrate --noinput -v0
	@if [ ! -d "$(KOALA_DATA_DIR)/inbox" ]; then \
	  $(PY) manage.py make_demo_data --days $(DEMO_DAYS) --per-day $(DEMO_PER_DAY) --stories; fi
	$(PY) manage.py register_models demo/models/demo.toml --activate
	KOALA_SETTLE_SECONDS=0 $(PY) manage.py score_day --all  # the demo files were written just now
	@echo "Demo users (log in at http://127.0.0.1:8000/):"
	@$(PY) manage.py create_demo_users
	DEBUG=1 $(PY) manage.py runserver 127.0.0.1:8000

test: install
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

## benchmarks (not tests): daily job, gallery, threshold table (one table), what changed; bench/results/*.json
bench: install
	$(PY) -m bench.all
	$(PY) -m bench.explain  # what changed at 100k images a day (bench/README.md)

clean:
	rm -rf data staticfiles .pytest_cache
