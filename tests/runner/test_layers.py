"""The runner's layers, read from its modules' import statements: gRPC, the generated messages
and the server runtime stay at the edge (servicer, app, mapping and the queue adapter), only a
`*_client.py` adapter calls another service, and no other service's package is imported.
The core and the worker do not even load gRPC through what they import."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import stablenew.runner

RUNNER_DIR = Path(stablenew.runner.__file__).parent
MODULES = sorted(path.stem for path in RUNNER_DIR.glob("*.py"))
EDGE = {"servicer", "app", "mapping", "queue_client"}
# What only the edge may import: the transport, the generated code, the gRPC server runtime.
TRANSPORT = ("grpc", "grpc_status", "grpc_health", "grpc_reflection", "google.rpc",
             "stablenew.v1", "stablenew.runtime")
OWN_STUBS = "stablenew.v1.runner_service_pb2_grpc"
OTHER_SERVICES = ("stablenew.bundle", "stablenew.queue", "stablenew.history",
                  "stablenew.emulator")


def imported_modules(module: str) -> set[str]:
    """Every module `module` imports, with `from x import y` also counted as x.y (so that a
    generated module imported from its package is seen)."""
    tree = ast.parse((RUNNER_DIR / f"{module}.py").read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def within(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == package or name.startswith(package + ".") for package in packages)


def test_the_expected_modules_are_read() -> None:
    assert {"core", "domain", "executor", "queue_client", "servicer", "app"} <= set(MODULES)


@pytest.mark.parametrize("module", sorted(set(MODULES) - EDGE))
def test_inner_modules_import_no_transport(module: str) -> None:
    crossing = sorted(name for name in imported_modules(module) if within(name, TRANSPORT))
    assert crossing == [], f"runner/{module}.py imports {crossing}"


@pytest.mark.parametrize("module", MODULES)
def test_only_a_client_adapter_calls_another_service(module: str) -> None:
    stubs = {name for name in imported_modules(module)
             if name.startswith("stablenew.v1.") and name.endswith("_pb2_grpc")}
    if not module.endswith("_client"):
        assert stubs <= {OWN_STUBS}, f"runner/{module}.py imports {sorted(stubs)}"


@pytest.mark.parametrize("module", MODULES)
def test_no_other_service_is_imported(module: str) -> None:
    others = sorted(name for name in imported_modules(module) if within(name, OTHER_SERVICES))
    assert others == [], f"runner/{module}.py imports {others}"


def test_the_core_and_the_worker_load_no_grpc() -> None:
    script = ("import sys, stablenew.runner.core, stablenew.runner.worker\n"
              "print(sorted(m for m in sys.modules if m.split('.')[0].startswith('grpc')\n"
              "             or m.startswith(('stablenew.v1', 'stablenew.runtime'))))")
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=True, timeout=60).stdout.strip()
    assert loaded == "[]"
