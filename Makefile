# moneypath developer entry points. Every target installs what it needs first.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
OPA_VERSION := v1.22.3
VENV := .venv
PY := $(VENV)/bin/python
UV := .tools/uv/bin/uv
OPA := .tools/bin/opa
# Prometheus publishes its Go module as v0.3XX.Y for release v3.XX.Y; this is v3.16.0's.
# Built with `remove_all_sd`: rule checks and tests need no service discovery, and the
# cloud SDKs it would pull in (Azure, AWS, GCE, Kubernetes...) take most of the build.
PROMTOOL_VERSION := v0.316.0
PROMTOOL := .tools/bin/promtool
# The pipeline's own tools: checkov in its own venv and the shipped advisory snapshot.
PIPELINE_TOOLS := .tools/.pipeline-tools
ADVISORY_SNAPSHOT := pipeline/advisory-db/PROVENANCE.toml pipeline/advisory-db/pypa-advisory-database.tar.xz

.PHONY: install run test test-unit test-integration test-e2e lint fmt lock clean alerts loadtest

$(UV):
	$(PYTHON) -m venv .tools/uv
	.tools/uv/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.installed: requirements.lock pyproject.toml | $(UV)
	test -x $(PY) || $(UV) venv --quiet --python $(PYTHON) $(VENV)
	$(UV) pip sync --quiet --python $(PY) --require-hashes requirements.lock
	$(UV) pip install --quiet --python $(PY) --no-deps --editable .
	touch $@

$(OPA):
	@command -v go >/dev/null || { echo "go not found: install Go >= 1.22 or put an opa binary at $(OPA)"; exit 1; }
	GOBIN=$(CURDIR)/.tools/bin CGO_ENABLED=0 go install github.com/open-policy-agent/opa@$(OPA_VERSION)

$(PIPELINE_TOOLS): $(VENV)/.installed pipeline/bootstrap.py $(ADVISORY_SNAPSHOT)
	$(PY) -m pipeline bootstrap
	touch $@

$(PROMTOOL):
	@command -v go >/dev/null || { echo "go not found: install Go >= 1.22 or put a promtool binary at $(PROMTOOL)"; exit 1; }
	GOBIN=$(CURDIR)/.tools/bin CGO_ENABLED=0 go install -tags remove_all_sd github.com/prometheus/prometheus/cmd/promtool@$(PROMTOOL_VERSION)

install: $(VENV)/.installed $(OPA) $(PROMTOOL) $(PIPELINE_TOOLS)

## Check the Prometheus alert and recording rules and run their unit tests.
alerts: install
	$(PROMTOOL) check rules alerts/*.yml
	$(PROMTOOL) test rules alerts/tests/*.yml

## Locust money-path mix, headless, held to loadtests/slo.yml (exit 1 when an SLO is missed).
## Brings up its own stack unless MP_API_URL (and MP_CREDENTIALS) name one; LOADTEST_USERS
## and LOADTEST_TIME bound the run. Keeps reports/loadtest/locust.html and summary.json.
loadtest: install
	$(PY) loadtests/run.py

## Start PostgreSQL, OpenBao, OPA, the API and the evidence service in the foreground.
run: install
	MONEYPATH_ENV=dev $(PY) -m app.entrypoints.cli up

## The whole test suite: unit, integration and e2e, against real services it starts itself.
## It also writes reports/junit.xml and reports/coverage.json, which the pipeline's pytest
## gate ingests in CI instead of running the suite twice.
## Each run gets its own --basetemp: pytest's shared /tmp/pytest-of-$USER keeps only the
## newest few run folders and deletes older ones, which killed the embedded services of a
## suite running beside another one.
test: install
	mkdir -p reports
	basetemp=$$(mktemp -d -t moneypath-tests-XXXXXX); \
	$(PY) -m pytest tests/unit tests/integration tests/e2e -p no:cacheprovider \
		--basetemp="$$basetemp" \
		--junitxml=reports/junit.xml --cov-branch --cov=app --cov=evidence --cov=pipeline \
		--cov-report=json:reports/coverage.json --cov-report=term:skip-covered; \
	status=$$?; rm -rf "$$basetemp"; exit $$status

test-unit: install
	$(PY) -m pytest tests/unit

lint: install
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(OPA) fmt --fail --list policies
	$(OPA) check --strict policies
	$(OPA) test policies
	$(PROMTOOL) check rules alerts/*.yml
	$(PROMTOOL) test rules alerts/tests/*.yml

fmt: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .
	$(OPA) fmt -w policies

## Re-resolve the locked dependency sets after editing pyproject.toml: everything for
## development and CI, and the runtime subset (same versions) that the image installs.
lock: | $(UV)
	$(UV) pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 \
		--quiet -o requirements.lock
	$(UV) pip compile pyproject.toml --constraint requirements.lock --generate-hashes \
		--python-version 3.11 --quiet -o requirements-runtime.lock

clean:
	rm -rf $(VENV) .data
