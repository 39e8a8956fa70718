# The two commands of the quick start: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed-dev

.PHONY: demo test lint typecheck codegen-check test-display protos clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Reinstalls when pyproject.toml changes.
$(INSTALLED): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

# Every service and the WebUI emulator as separate processes; the example pack end to end.
demo: $(INSTALLED)
	$(VENV)/bin/stablenew demo

test: lint typecheck codegen-check test-display
	$(PY) -m pytest

# Xvfb and xdotool for the GUI tests' real window, installed when missing.
test-display: $(INSTALLED)
	sh scripts/ensure_test_display.sh $(PY)

lint: $(INSTALLED)
	$(VENV)/bin/ruff check .

typecheck: $(INSTALLED)
	$(VENV)/bin/mypy

codegen-check: $(INSTALLED)
	$(PY) scripts/gen_protos.py --check

# The one command that regenerates gen/ from protos/.
protos: $(INSTALLED)
	$(PY) scripts/gen_protos.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
