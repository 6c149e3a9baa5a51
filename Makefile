# funnelcast - the two commands are `make test` and `make demo`; both work on a fresh clone.
# Recipes are tab-indented; only GNU/POSIX make basics are used.

VENV      := .venv
BIN       := $(CURDIR)/$(VENV)/bin
STAMP     := $(VENV)/.installed-stamp
# Python 3.13 for the venv: pyenv's on the build machine, else python3.13 on PATH.
PYTHON313 := $(shell if [ -x /root/.pyenv/versions/3.13.0/bin/python ]; then echo /root/.pyenv/versions/3.13.0/bin/python; else command -v python3.13; fi)
REGION    := ap-northeast-2
# sam build runs `python3.13` and `pip` from PATH: the venv's bin first makes them the venv's.
TOOLS_ENV := PATH="$(BIN):$$PATH" SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=$(REGION) AWS_REGION=$(REGION) PIP_CACHE_DIR="$(HOME)/.cache/pip"
# -n 2 (pytest-xdist) on the 2-core CI machine, one test file per worker at a time (--dist loadfile)
# so module-scoped fixtures (the deploy-fidelity stack) are built once; PYTEST_WORKERS=0 runs serially.
PYTEST_WORKERS ?= 2
PYTEST_ARGS ?= --durations=15
SOURCES   := layers/core/funnelcast functions tests scripts

.PHONY: test venv lint typecheck validate-template build size-check chromium pytest demo bench schema clean

# Every step of CI, each timed; scripts/run_steps.sh prints a table of durations at the end.
test: venv
	@sh scripts/run_steps.sh "$(MAKE)" lint typecheck validate-template build size-check chromium pytest

venv: $(STAMP)

# --no-compile: byte-compiling every installed package (botocore, moto, sam-cli...) costs a minute on
# 2 cores; Python compiles what is actually imported on first use instead.
$(STAMP): pyproject.toml
	@if [ -z "$(PYTHON313)" ]; then echo "Python 3.13 not found (pyenv 3.13.0 or python3.13 on PATH)" >&2; exit 1; fi
	@if [ ! -x $(BIN)/python ]; then echo "creating $(VENV) from $(PYTHON313)"; $(PYTHON313) -m venv $(VENV); fi
	PIP_CACHE_DIR="$(HOME)/.cache/pip" $(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	PIP_CACHE_DIR="$(HOME)/.cache/pip" $(BIN)/python -m pip install --quiet --disable-pip-version-check --no-compile -e ".[dev]"
	touch $(STAMP)

lint: venv
	$(BIN)/ruff check $(SOURCES)
	$(BIN)/ruff format --check $(SOURCES)

typecheck: venv
	$(BIN)/mypy $(SOURCES)

validate-template: venv
	$(TOOLS_ENV) $(BIN)/sam validate --lint --template-file template.yaml --region $(REGION)
	$(TOOLS_ENV) $(BIN)/cfn-lint template.yaml

build: venv
	$(TOOLS_ENV) $(BIN)/sam build --template-file template.yaml --parallel --cached

size-check: venv
	$(BIN)/python scripts/check_sizes.py .aws-sam/build

# The report test renders HTML in headless Chromium; install Debian's when absent.
chromium:
	@if [ -f tests/tools/ensure_chromium.sh ]; then bash tests/tools/ensure_chromium.sh; else echo "no tests/tools/ensure_chromium.sh: skipped"; fi

pytest: venv
	@if [ "$(PYTEST_WORKERS)" = "0" ]; then \
		echo "$(BIN)/pytest -q -p no:cacheprovider $(PYTEST_ARGS)"; \
		$(BIN)/pytest -q -p no:cacheprovider $(PYTEST_ARGS); \
	else \
		echo "$(BIN)/pytest -q -p no:cacheprovider -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)"; \
		$(BIN)/pytest -q -p no:cacheprovider -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS); \
	fi

# A quick run by default (about 45 s): moto's DynamoDB costs 12-19 ms per conditional write, so the
# full `funnelcast demo` defaults (5,000 users, 7 days) take about 4.5 minutes. Full run:
#   make demo DEMO_ARGS="--users 5000 --days 7"
DEMO_ARGS ?= --users 1000 --days 2
demo: venv
	$(BIN)/funnelcast demo $(DEMO_ARGS)

# Benchmarks print ratios and figures; they are never collected by pytest (files are bench_*.py).
bench: venv
	@for bench in tests/bench/bench_*.py; do \
		echo "== $$bench"; \
		$(BIN)/python $$bench || exit 1; \
	done

# Regenerate the rule-file JSON Schema from the pydantic models (a test fails when it is stale).
schema: venv
	$(BIN)/funnelcast schema --out segment_rules/schema/funnelcast-rules.schema.json

clean:
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +
