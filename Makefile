# The two commands of the quick start: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed-dev
NPM ?= npm
# buf (the contract checks) comes from the npm registry, pinned in package-lock.json.
NODE_TOOLS := node_modules/.installed
BUF := node_modules/.bin/buf

.PHONY: demo test faults bench bench-quick lint typecheck codegen-check contract-check buf-lint buf-breaking test-display protos clean

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

test: lint typecheck codegen-check contract-check test-display
	$(PY) -m pytest

# Xvfb and xdotool for the GUI tests' real window, installed when missing.
test-display: $(INSTALLED)
	sh scripts/ensure_test_display.sh $(PY)

# The fault suite (benchmarks/faults, docs/RELIABILITY.md): every scenario on fresh processes,
# a table of what was lost, duplicated or stuck; fails unless all of it is zero.
faults: $(INSTALLED)
	$(PY) -m benchmarks.faults

# Every benchmark against real processes and the emulator: one line per figure, and
# .bench/results.json (docs/PERFORMANCE.md). About 6 minutes on 2 cores; bench-quick under 2.
bench: $(INSTALLED)
	$(PY) -m benchmarks.run_all

bench-quick: $(INSTALLED)
	$(PY) -m benchmarks.run_all --quick

lint: $(INSTALLED)
	$(VENV)/bin/ruff check .

typecheck: $(INSTALLED)
	$(VENV)/bin/mypy

codegen-check: $(INSTALLED)
	$(PY) scripts/gen_protos.py --check

# buf lint (buf.yaml), and buf breaking (WIRE rules) against the released contract
# (protos/released/v1.binpb) less the recorded changes (docs/API.md, "Contract checks").
contract-check: buf-lint buf-breaking

buf-lint: $(NODE_TOOLS)
	$(BUF) lint

buf-breaking: $(NODE_TOOLS)
	$(PYTHON) scripts/check_contract.py --buf $(BUF)

# The one command that regenerates gen/ from protos/.
protos: $(INSTALLED)
	$(PY) scripts/gen_protos.py

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
