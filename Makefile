# Two commands on a fresh machine: `make demo` and `make test`. Both install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat constraints.txt pyproject.toml | sha1sum | cut -c1-12)
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: install system test test-fast demo lint bench real-data clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[airflow,postgres,celery,dev,dask]"
	rm -f $(VENV)/.installed-*; touch $@

# System packages from Debian: docker-compose (validates docker-compose.yml without an engine),
# PostgreSQL and Redis (native production-topology tests), Chromium (report rendering test),
# faketime (the frozen-clock fault test).
system:
	@need=""; \
	command -v docker-compose >/dev/null || need="$$need docker-compose"; \
	test -x /usr/lib/postgresql/15/bin/postgres || ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need="$$need postgresql"; \
	command -v redis-server >/dev/null || need="$$need redis-server"; \
	command -v chromium >/dev/null || need="$$need chromium"; \
	command -v faketime >/dev/null || need="$$need faketime"; \
	if [ -n "$$need" ]; then \
	  echo "installing system packages:$$need"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$need >/dev/null; \
	fi

install: $(STAMP) system

test: install
	$(PY) -m pytest -q -p no:cacheprovider -n 2 --dist loadfile

test-fast: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider -m "not slow and not topology"

demo: install
	$(PY) -m contactrank.demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PY) bench/ingest.py
	$(PY) bench/features.py
	$(PY) bench/train.py
	$(PY) bench/score.py

real-data: $(STAMP)
	$(PY) bench/bank_marketing.py

clean:
	rm -rf .contactrank bench/out
