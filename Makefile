# The two commands of the quick start: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed-dev
NPM ?= npm
# buf (the contract checks) comes from the npm registry, pinned in package-lock.json.
NODE_TOOLS := node_modules/.installed
BUF := node_modules/.bin/buf
# The contract as released: a buf image of protos/ at v1 (docs/API.md, "Contract checks").
RELEASED_CONTRACT := protos/released/v1.binpb

.PHONY: demo test lint typecheck codegen-check contract-check buf-lint buf-breaking protos clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Reinstalls when pyproject.toml changes.
$(INSTALLED): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

# Reinstalls when the pinned versions change. --ignore-scripts: the package's postinstall only
# swaps its node launcher for the native binary, so no install script needs to run.
$(NODE_TOOLS): package.json package-lock.json
	$(NPM) ci --ignore-scripts --no-audit --no-fund
	touch $@

# Every service and the WebUI emulator as separate processes; the example pack end to end.
demo: $(INSTALLED)
	$(VENV)/bin/stablenew demo

test: lint typecheck codegen-check contract-check
	$(PY) -m pytest

lint: $(INSTALLED)
	$(VENV)/bin/ruff check .

typecheck: $(INSTALLED)
	$(VENV)/bin/mypy

codegen-check: $(INSTALLED)
	$(PY) scripts/gen_protos.py --check

# buf lint (STANDARD rules, buf.yaml) and buf breaking (WIRE rules) against the released contract.
contract-check: buf-lint buf-breaking

buf-lint: $(NODE_TOOLS)
	$(BUF) lint

buf-breaking: $(NODE_TOOLS)
	$(BUF) breaking --against $(RELEASED_CONTRACT)

# The one command that regenerates gen/ from protos/.
protos: $(INSTALLED)
	$(PY) scripts/gen_protos.py

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
