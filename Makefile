# The two commands people need: `make synth` and `make test`. Each installs what it needs on first use.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/node_modules/.bin:$(CURDIR)/$(VENV)/bin:$(PATH)
export JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION := 1

PHASE ?= 1
ENV ?= staging

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.txt requirements-dev.txt $(wildcard worker_images/requirements*.txt)
	@echo "==> installing Python dependencies into $(VENV)/ (first run takes a minute)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

node_modules/.installed: package.json package-lock.json
	@echo "==> installing the CDK CLI and node@22 into node_modules/"
	@npm ci --no-audit --no-fund --loglevel=error
	@touch $@

.PHONY: install
install: $(VENV)/.installed node_modules/.installed ## install Python and Node dependencies

.PHONY: synth
synth: install ## synthesize every implemented phase x environment into cdk.out/phase<N>-<env>/
	@$(PY) -m tools.synth_all

# An environment's own overrides (JSON or @file) and a switch step (<from>:<step>), if any.
OVERRIDES ?=
TRANSITION ?=
CDK_CONTEXT = -c phase=$(PHASE) -c env=$(ENV) $(if $(OVERRIDES),-c overrides='$(OVERRIDES)') $(if $(TRANSITION),-c transition=$(TRANSITION))

.PHONY: diff
diff: install ## cdk diff one phase/env against the deployed stacks (needs AWS credentials): make diff PHASE=1 ENV=prod OVERRIDES=@prod.json
	cdk diff $(CDK_CONTEXT) --output cdk.out/diff-phase$(PHASE)-$(ENV)

.PHONY: phase-diff
phase-diff: install ## every step of moving ENV between phases, checked offline: make phase-diff ENV=prod FROM=1 TO=2
	@test -n "$(FROM)" && test -n "$(TO)" || { echo "usage: make phase-diff ENV=<staging|prod> FROM=<n> TO=<n> [OVERRIDES=@file]" >&2; exit 2; }
	@$(PY) -m tools.phase_diff --env $(ENV) --from $(FROM) --to $(TO) $(if $(OVERRIDES),--overrides '$(OVERRIDES)')

.PHONY: diff-base
diff-base: install ## offline diff of the working tree against a git ref, every phase x env: make diff-base BASE=main
	@test -n "$(BASE)" || { echo "usage: make diff-base BASE=<git ref> [PAIRS='1:prod 2:prod']" >&2; exit 2; }
	@$(PY) -m tools.diff_base --base '$(BASE)' $(foreach p,$(PAIRS),--pair $(p))

.PHONY: leftovers
leftovers: install ## what deleting an environment's stacks leaves behind, offline: make leftovers PHASE=1 ENV=prod
	@$(PY) -m tools.leftovers --phase $(PHASE) --env $(ENV) $(if $(OVERRIDES),--overrides '$(OVERRIDES)')

# Every Dockerfile and every workflow of the repository, tracked or new.
DOCKERFILES = $(shell git ls-files --cached --others --exclude-standard -- 'Dockerfile*' '**/Dockerfile*' '*.Dockerfile')
WORKFLOWS = $(shell git ls-files --cached --others --exclude-standard -- '.github/workflows/*.yml' '.github/workflows/*.yaml')

.PHONY: lint
lint: install ## ruff, mypy, import contracts, dead code, hadolint (every Dockerfile), the image locks, zizmor and schema (workflows, compose)
	ruff check .
	ruff format --check .
	mypy
	PYTHONPATH=.:worker_images:lambda_src lint-imports --no-logo
	vulture
	hadolint $(DOCKERFILES)
	bash tools/images/lock.sh check
	zizmor --offline --quiet .github/workflows
	check-jsonschema --builtin-schema vendor.github-workflows $(WORKFLOWS)
	check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml

.PHONY: fmt
fmt: install ## format the code with ruff
	ruff check --fix .
	ruff format .

.PHONY: services
services: ## make sure PostgreSQL and Redis are listening (starts them when they are not)
	@bash tools/services.sh

.PHONY: browser
browser: ## make sure headless Chromium and its driver are installed (the planner page test)
	@bash tools/ensure_chromium.sh

# pytest-xdist: two test processes per core (many runtime tests spend their time waiting on
# worker processes, timeouts and queues, so a second process per core keeps the cores busy); each
# module's tests stay in one process (its module fixtures, e.g. a migrated database, are built
# once), and each cloud assembly is synthesized once per run whichever process needs it first
# (tests/infra/conftest.py); the modules are handed out longest first, by their time in the last
# run (tests/conftest.py). TEST_WORKERS=0: one process.
TEST_WORKERS ?= $(shell echo $$(( $$(nproc) * 2 )))

.PHONY: test
test: install services browser ## the whole suite: lint, infrastructure, runtime and planner tests
	@$(MAKE) --no-print-directory lint
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder

.PHONY: snapshot-update
snapshot-update: install ## rewrite the stack snapshots after an intended change (read the diff!)
	$(PY) -m pytest tests/infra --snapshot-update

.PHONY: plan
plan: install ## capacity plan: make plan TASKS=50000 MINUTES=3, or make plan USAGE=1 [DAYS=30] (DATABASE_URL)
	@$(PY) -m capacity plan $(if $(USAGE),--from-usage --days $(or $(DAYS),30) $(if $(TASKS),--tasks-per-month $(TASKS)) $(if $(MINUTES),--avg-audio-minutes $(MINUTES)),--tasks-per-month $(or $(TASKS),50000) --avg-audio-minutes $(or $(MINUTES),3))

.PHONY: capacity-docs
capacity-docs: install ## regenerate the planner's tables in docs/capacity.md and its crossover chart
	@$(PY) -m capacity docs
	@$(PY) -m capacity crossover --out docs/capacity-crossover.png --tasks-per-month 50000

.PHONY: planner
planner: install ## the interactive capacity planner page on http://127.0.0.1:8050
	@$(PY) -m capacity serve --port $(or $(PORT),8050)

.PHONY: cost
cost: synth ## fixed monthly cost of every synthesized assembly
	@for d in cdk.out/phase*-*/; do $(PY) -m capacity cost "$$d" | grep -E "^Fixed|TOTAL"; done

.PHONY: clean
clean: ## remove build output
	rm -rf cdk.out .pytest_cache .mypy_cache .ruff_cache

# --- runtime ---
# The task API and its data layer (worker_images/aipp, lambda_src/upload_handler).
RUNTIME_ENV := PYTHONPATH=.:worker_images

.PHONY: dev-api
dev-api: install services ## the task API on :8000 with local PostgreSQL, Redis and moto (S3/SQS)
	@PY=$(PY) bash worker_images/dev-api.sh

.PHONY: api-key
api-key: install services ## print a new API key (last line) for a tenant: make api-key TENANT=acme
	@test -n "$(TENANT)" || { echo "usage: make api-key TENANT=<name>" >&2; exit 2; }
	@$(RUNTIME_ENV) $(PY) -m aipp.admin migrate --create-database >/dev/null
	@$(RUNTIME_ENV) $(PY) -m aipp.admin create-api-key --tenant "$(TENANT)"

.PHONY: openapi
openapi: install ## export the API's OpenAPI document to docs/openapi.json
	@$(RUNTIME_ENV) $(PY) -m aipp.api.openapi docs/openapi.json

.PHONY: bench-api
bench-api: install services ## API req/s, latency and CPU per request at 1, 16, 64 clients, beside pgbench's insert rate
	@$(RUNTIME_ENV) $(PY) benchmarks/api_bench.py

# The queue worker (worker_images/aipp/worker): steps 4-8 of the task flow.
.PHONY: dev
dev: install services ## the whole pipeline locally: moto, API on :8000 and the worker (local providers)
	@PY=$(PY) WITH_WORKER=1 bash worker_images/dev-api.sh

.PHONY: demo
demo: install services ## a spoken sample through the real API and worker: transcript, summary, timings
	@$(RUNTIME_ENV) $(PY) -m tools.demo

.PHONY: bench-pipeline
bench-pipeline: install services ## pipeline tasks/min, overhead and S3/SQS/database/Redis calls per task (instant providers)
	@$(RUNTIME_ENV) $(PY) benchmarks/pipeline_bench.py

.PHONY: bench-api-cpu
bench-api-cpu: install services ## the API app's own CPU time per create and read, in process (least of several rounds)
	@$(RUNTIME_ENV) $(PY) benchmarks/api_cpu.py

.PHONY: time-test
time-test: install ## run `make test` once and keep its wall and CPU time in benchmarks/results/
	@$(PY) benchmarks/suite_timing.py

.PHONY: bench-report
bench-report: install ## regenerate the README's performance tables from benchmarks/results/ (BENCH_LABEL=before|after when benchmarking)
	@$(PY) benchmarks/report.py

# --- images and delivery ---
# docs/images.md: the three runtime images, built and smoke-run without a Docker daemon.
SCAN_VENV := .venv-scan

.PHONY: images
images: install services ## build every image with podman (no Docker daemon) and smoke-run it (tests/images)
	@bash tools/images/ensure_tools.sh
	@bash tools/images/lock.sh check
	@PY=$(PY) bash tools/images/build.sh
	@echo "==> smoke-running the images (tests/images)"
	IMAGES_TESTS=1 $(PY) -m pytest tests/images -p no:cacheprovider

.PHONY: locks
locks: install ## regenerate the images' hash locks from worker_images/requirements*.txt (and the scan's)
	@bash tools/images/lock.sh

.PHONY: rds-ca
rds-ca: $(VENV)/.installed ## download and verify the RDS CA bundle the images ship (worker_images/certs/)
	@$(PY) -m tools.images.rds_ca fetch

$(SCAN_VENV)/.installed: tools/images/requirements-scan.lock
	@echo "==> installing checkov into $(SCAN_VENV)/ (first run takes two minutes)"
	@test -x $(SCAN_VENV)/bin/python || $(PYTHON) -m venv $(SCAN_VENV)
	@$(SCAN_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes \
		-r tools/images/requirements-scan.lock
	@touch $@

.PHONY: scan
scan: synth $(SCAN_VENV)/.installed ## checkov on every template and the Dockerfile (.checkov.yaml); trivy on the images where installed
	@bash tools/images/scan.sh

# Kubernetes manifests (phases 2-3): what building them costs a synth, ours against cdk8s.
.PHONY: bench-manifests
bench-manifests: install ## synth-time cost of the EKS manifests: typed inputs vs cdk8s-plus-34
	@$(PY) -m pip install --quiet --disable-pip-version-check -r benchmarks/requirements-cdk8s.txt
	@PYTHONPATH=. $(PY) benchmarks/manifests_bench.py
