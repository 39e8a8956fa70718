"""Who may import whom, and where SQL may run: the layer rules of docs/ARCHITECTURE.md as code.

The checker reads source files (it runs none of them): every `import` and `from ... import`
anywhere in a module, relative ones resolved, and every SQL statement literal or
`.execute*()` call. `violations()` names each crossing with the module, the line and the rule.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SERVICES = ("bundle", "queue", "runner", "history")
# The WebUI emulator is a stand-in for an external program, not one of the four services; it
# follows the service rules about other packages but not the four-part layout.
SERVICE_LIKE = (*SERVICES, "emulator")
CLIENTS = ("sdk", "cli", "gui")

# A service module of one of these kinds is the gRPC edge: the only place (with the runtime)
# where grpc, status codes and generated error messages appear.
EDGE_MODULES = ("servicer", "app", "mapping")
# An adapter that calls another service over gRPC is named `<something>_client`.
ADAPTER_SUFFIX = "_client"

GRPC = ("grpc", "grpc_status", "grpc_health", "grpc_reflection")
TRANSPORT = (*GRPC, "google.rpc")
GENERATED_ERRORS = ("stablenew.v1.errors_pb2",)
SERVER_RUNTIME_EDGE = ("stablenew.runtime.rich_status", "stablenew.runtime.interceptors",
                       "stablenew.runtime.server", "stablenew.runtime.channel")

SQL_STATEMENT = re.compile(
    r"^\s*(SELECT|INSERT|UPDATE|DELETE|BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE|CREATE|DROP|"
    r"ALTER|PRAGMA|WITH|REPLACE|VACUUM|ANALYZE)\s+\S")
SQL_CALLS = ("execute", "executemany", "executescript")
# Modules of the bundle's use cases that a store must not lean on.
USE_CASE_LOGIC = ("normalize", "expansion")


@dataclass(frozen=True)
class Violation:
    module: str
    line: int
    rule: str

    def __str__(self) -> str:
        return f"{self.module}:{self.line}: {self.rule}"


@dataclass(frozen=True)
class Module:
    """One source module: its dotted name (stablenew.queue.domain), whether it is a package's
    __init__, and its parsed tree."""

    name: str
    is_package: bool
    tree: ast.Module

    @property
    def parts(self) -> list[str]:
        return self.name.split(".")

    @property
    def area(self) -> str:
        """The second name part: queue, contract, runtime, sdk, cli, v1, ..."""
        return self.parts[1] if len(self.parts) > 1 else ""

    @property
    def leaf(self) -> str:
        return self.parts[-1]


def load_modules(roots: list[Path]) -> list[Module]:
    """Every module of the `stablenew` namespace below the given source roots."""
    modules = []
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            relative = path.relative_to(root).with_suffix("")
            parts = list(relative.parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts = parts[:-1]
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            modules.append(Module(".".join(parts), is_package, tree))
    return modules


def module_from_source(name: str, source: str) -> Module:
    """A module built from text, for checking the checker."""
    return Module(name, False, ast.parse(source))


def imports_of(module: Module) -> Iterator[tuple[str, int]]:
    """(imported module name, line) for every import in the module, relative ones resolved."""
    package = module.parts if module.is_package else module.parts[:-1]
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield base, node.lineno
            for alias in node.names:
                yield f"{base}.{alias.name}", node.lineno


def sql_uses(module: Module) -> Iterator[int]:
    """Lines holding an SQL statement literal or a call to execute/executemany/executescript."""
    for node in ast.walk(module.tree):
        statement = (isinstance(node, ast.Constant) and isinstance(node.value, str)
                     and SQL_STATEMENT.match(node.value))
        call = (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in SQL_CALLS)
        if statement or call:
            yield getattr(node, "lineno", 0)


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def _layer(name: str) -> str:
    """domain, store, core, edge or other, for a dotted name inside a service: decided by the
    module right below the service (stablenew.queue.<this>), so a `store/` package is a store."""
    parts = name.split(".")
    top = parts[2] if len(parts) > 2 else ""
    if top in EDGE_MODULES or top.endswith(ADAPTER_SUFFIX):
        return "edge"
    if top == "store":
        return "store"
    return top if top in ("domain", "core") else "other"


def _service_of(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "stablenew" else ""


def check_module(module: Module) -> Iterator[Violation]:
    """Every rule broken by one module."""
    for imported, line in imports_of(module):
        for rule in _import_rules(module, imported):
            yield Violation(module.name, line, f"{rule} (imports {imported})")
    in_store = module.area in SERVICES and _layer(module.name) == "store"
    if not (in_store or module.name == "stablenew.runtime.sqlite_db"):
        for line in sql_uses(module):
            yield Violation(module.name, line, "SQL runs only in a store")


def _import_rules(module: Module, imported: str) -> Iterator[str]:
    area = module.area
    if area == "contract":
        yield from _contract_rules(imported)
    elif area == "sdwebui":
        if _within(imported, ("stablenew", *TRANSPORT)) and not _within(
                imported, ("stablenew.sdwebui",)):
            yield "stablenew.sdwebui is plain facts: it imports nothing of the project"
    elif area == "runtime":
        if _service_of(imported) in (*SERVICE_LIKE, "sdk", "cli"):
            yield "the runtime serves every service and knows none of them"
    elif area in SERVICE_LIKE:
        yield from _service_rules(module, imported)
    elif area in CLIENTS:
        yield from _client_rules(module, imported)


def _contract_rules(imported: str) -> Iterator[str]:
    # google.rpc's Status, ErrorInfo and BadRequest are messages like ours: allowed here.
    if _within(imported, (*GRPC, "sqlite3")):
        yield "the contract package is transport-free: no grpc, no SQLite"
    if _service_of(imported) not in ("", "contract", "v1"):
        yield "the contract package imports only itself and the generated messages"
    if _within(imported, ("stablenew.v1",)) and "_pb2_grpc" in imported:
        yield "the contract package imports messages, not gRPC stubs"


def _service_rules(module: Module, imported: str) -> Iterator[str]:
    target = _service_of(imported)
    if target in (*SERVICE_LIKE, *CLIENTS) and target != module.area:
        yield f"a service never imports another service's internals ({target})"
    if module.area == "emulator":
        return
    layer = _layer(module.name)
    if layer != "edge" and (_within(imported, TRANSPORT) or _within(imported, GENERATED_ERRORS)
                            or _within(imported, SERVER_RUNTIME_EDGE)
                            or (imported.startswith("stablenew.v1.") and "_pb2_grpc" in imported)):
        yield ("grpc, status codes and generated error messages appear only in servicers, "
               "app wiring, mapping modules and *_client adapters")
    if target == module.area:
        yield from _inner_layer_rules(layer, imported)


def _inner_layer_rules(layer: str, imported: str) -> Iterator[str]:
    target_layer = _layer(imported)
    below = imported.split(".")[2] if imported.count(".") >= 2 else ""
    if layer == "domain" and target_layer in ("store", "core", "edge"):
        yield f"a domain depends on nothing but itself (imports the {target_layer})"
    if layer == "store" and (target_layer in ("core", "edge") or below in USE_CASE_LOGIC):
        yield "a store depends on the domain, not on the use cases"
    if layer == "core" and target_layer == "edge" and not below.endswith(ADAPTER_SUFFIX):
        yield "a core never reaches back to the gRPC edge"


def _client_rules(module: Module, imported: str) -> Iterator[str]:
    allowed: tuple[str, ...] = ("stablenew.sdk", "stablenew.contract", "stablenew.v1")
    if module.area in ("cli", "gui"):
        # The command line and the window are one program: `stablenew gui` is a command, and
        # `gui --local` supervises the services as `stablenew up` does.
        allowed = (*allowed, "stablenew.cli", "stablenew.gui")
    if module.name == "stablenew.cli.serve_command":
        # `stablenew serve` runs a service in this process: its app and the runtime.
        allowed = (*allowed, "stablenew.runtime", "stablenew.emulator.cli",
                   *(f"stablenew.{service}.app" for service in SERVICE_LIKE))
        if imported in {f"stablenew.{service}" for service in SERVICE_LIKE}:
            return  # `from stablenew.queue import app`: the package itself, then its app
    if imported.startswith("stablenew") and not _within(imported, allowed) \
            and imported != "stablenew":
        yield ("clients import only the SDK, the contract package and the generated stubs "
               "(stablenew serve excepted)")


def violations(modules: list[Module]) -> list[Violation]:
    return [violation for module in modules for violation in check_module(module)]
