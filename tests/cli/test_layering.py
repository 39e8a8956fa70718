"""The CLI is a client: its modules import the SDK, the contract package and the generated
stubs, never a service or the server runtime; `serve` (which runs a service in-process) is the
one exception."""

from __future__ import annotations

import ast
from pathlib import Path

import stablenew.cli

# stablenew.gui is another client: main.py registers its `gui` command (the window itself loads
# only the SDK, the contract and the stubs: tests/gui/test_packaging.py).
ALLOWED = ("stablenew.sdk", "stablenew.contract", "stablenew.v1", "stablenew.cli", "stablenew.gui")
EXCEPTION = "serve_command.py"


def stablenew_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return {name for name in names if name.startswith("stablenew.")}


def test_cli_modules_import_only_the_sdk_contract_and_stubs() -> None:
    folder = Path(next(iter(stablenew.cli.__path__)))
    modules = sorted(folder.glob("*.py"))
    assert len(modules) > 10
    wrong = {path.name: sorted(name for name in stablenew_imports(path)
                               if not name.startswith(ALLOWED))
             for path in modules if path.name != EXCEPTION}
    assert {name: found for name, found in wrong.items() if found} == {}
