"""The bundle service reads like every service: the domain, the use cases and the pack reader know
no transport and no SQL; only the store runs SQL; grpc and generated messages appear only at the
edge (servicer, app, mapping) and in adapters to other services (`*_client.py`).

Checked on the imports and attribute names of the source files themselves.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import stablenew.bundle

BUNDLE = Path(stablenew.bundle.__file__).parent
MODULES = sorted(path.relative_to(BUNDLE).as_posix() for path in BUNDLE.rglob("*.py"))
EDGE = {"servicer.py", "app.py", "mapping.py"}
# The store keeps a part's PipelineConfig as its serialized message: a storage format.
STORE_MESSAGES = {"stablenew.v1.pipeline_pb2"}


def _imports(module: str) -> set[str]:
    tree = ast.parse((BUNDLE / module).read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _attributes(module: str) -> set[str]:
    tree = ast.parse((BUNDLE / module).read_text(encoding="utf-8"))
    return {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}


def _under(names: set[str], *prefixes: str) -> set[str]:
    return {name for name in names
            if any(name == prefix or name.startswith(f"{prefix}.") for prefix in prefixes)}


def test_every_module_is_checked() -> None:
    assert {"domain.py", "core.py", "store.py", "normalize.py", "queue_client.py",
            "packs/library.py"} <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_grpc_and_generated_messages_only_at_the_edge_and_in_adapters(module: str) -> None:
    transport = _under(_imports(module), "grpc", "stablenew.v1")
    if module in EDGE or module.endswith("_client.py"):
        return
    if module == "store.py":
        transport -= _under(transport, *STORE_MESSAGES)
    assert transport == set(), f"{module} talks gRPC or uses generated messages"


@pytest.mark.parametrize("module", MODULES)
def test_sql_runs_only_in_the_store(module: str) -> None:
    if module == "store.py":
        return
    assert _under(_imports(module), "sqlite3", "stablenew.runtime.sqlite_db") == set()
    assert {"execute", "executemany", "executescript", "db"} & _attributes(module) == set(), (
        f"{module} reaches into the database")


def test_the_domain_depends_on_the_contract_only() -> None:
    imported = _under(_imports("domain.py"), "stablenew")
    assert imported == _under(imported, "stablenew.contract")


def test_the_store_depends_on_the_domain_not_on_use_case_logic() -> None:
    bundle_modules = {name.split(".")[2]
                      for name in _under(_imports("store.py"), "stablenew.bundle")}
    assert bundle_modules == {"domain"}


def test_the_core_uses_no_server_runtime_but_page_tokens() -> None:
    assert _under(_imports("core.py"), "stablenew.runtime") == {
        "stablenew.runtime.paging.PageTokens"}
