# The two entry points are `make demo` and `make test`; everything else is set-up they call.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
CLOUDFREE := $(VENV)/bin/cloudfree
# median, bap, geomedian, interpolate, interpolate_corrected or generator
METHOD ?= median
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-unit test-integration test-deploy lint services-up services-down clean

$(STAMP): pyproject.toml constraints.txt scripts/setup.sh
	@bash scripts/setup.sh $(VENV)
	@touch $(STAMP)

setup: $(STAMP)

demo: setup
	@$(CLOUDFREE) services up
	@$(CLOUDFREE) demo-catalog
	@$(CLOUDFREE) demo --method $(METHOD)

PYTEST := $(PY) -m pytest -q -p no:cacheprovider

# mypy reads its file list (cloudfree, flows) and strictness from pyproject.toml [tool.mypy].
# The whole suite: unit, integration and deploy tests (tests/conftest.py marks them by
# directory); one kind alone: `make test-unit`, `make test-integration`, `make test-deploy`.
test: setup
	@$(VENV)/bin/ruff check cloudfree flows tests bench
	@$(VENV)/bin/mypy
	@$(PYTEST) $(PYTEST_ARGS)

# the library alone: no services are started
test-unit: setup
	@$(PYTEST) -m unit $(PYTEST_ARGS)

# against a real local stack of its own (free ports, its own state directory)
test-integration: setup
	@$(PYTEST) -m integration $(PYTEST_ARGS)

# the Helm chart, Kustomize, the Dockerfile, the Prefect deployments, checkov
test-deploy: setup
	@$(PYTEST) -m deploy $(PYTEST_ARGS)

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
