# The two entry points are `make demo` and `make test`; everything else is set-up they call.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
CLOUDFREE := $(VENV)/bin/cloudfree
# median, bap, geomedian, interpolate, interpolate_corrected or generator
METHOD ?= median
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint services-up services-down clean

$(STAMP): pyproject.toml constraints.txt scripts/setup.sh
	@bash scripts/setup.sh $(VENV)
	@touch $(STAMP)

setup: $(STAMP)

demo: setup
	@$(CLOUDFREE) services up
	@$(CLOUDFREE) demo-catalog
	@$(CLOUDFREE) demo --method $(METHOD)

# mypy reads its file list (cloudfree, flows) and strictness from pyproject.toml [tool.mypy].
test: setup
	@$(VENV)/bin/ruff check cloudfree flows tests bench
	@$(VENV)/bin/mypy
	@$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

lint: setup
	@$(VENV)/bin/ruff check cloudfree flows tests bench
	@$(VENV)/bin/mypy
	@$(VENV)/bin/ruff format --check cloudfree flows tests bench

services-up: setup
	@$(CLOUDFREE) services up

services-down: setup
	@$(CLOUDFREE) services down

clean: services-down
	rm -rf .cloudfree out
