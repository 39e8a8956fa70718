"""What the deploy tests share: the repository's deploy files, the rendered Kubernetes overlays,
and the settings the code actually reads, to check the one against the other."""

from __future__ import annotations

import ast
import functools
import json
import re
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stablenew.contract.endpoints import SERVICE_NAMES, address_variable
from stablenew.emulator.config import SETTINGS as EMULATOR_SETTINGS
from tests.deploy.kustomize import Obj, pod_containers, read_env_file, render

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
OVERLAYS = ("emulator", "gpu")
TLS_COMPONENT = "../../components/tls"
# How an overlay's kustomization.yaml carries the TLS component, switched off.
TLS_OFF = f"# components:\n#   - {TLS_COMPONENT}\n"
TLS_ON = f"components:\n  - {TLS_COMPONENT}\n"
CONFIG_MAP = "stablenew-config"
TOKEN_SECRET = "stablenew-token"
TLS_SECRET = "stablenew-tls"
RUNNER_TLS_SECRET = "stablenew-runner-tls"
ENV_FILE = KUBERNETES / "base" / "stablenew.env"
DOCKERFILE = ROOT / "Dockerfile"
WORKLOAD_KINDS = ("StatefulSet", "Deployment", "DaemonSet")
STABLENEW_NAME = re.compile(r"STABLENEW_[A-Z0-9_]+")


@dataclass(frozen=True)
class Variant:
    """One way to deploy: an overlay as shipped, or with its TLS lines uncommented."""

    overlay: str
    tls: bool

    @property
    def name(self) -> str:
        return self.overlay + ("+tls" if self.tls else "")


VARIANTS = tuple(Variant(overlay, tls) for overlay in OVERLAYS for tls in (False, True))


def variant_tree(variant: Variant, scratch: Path) -> Path:
    """A copy of deploy/kubernetes with the variant's overlay edited as DEPLOY.md says; returns
    the overlay's directory in the copy."""
    tree = scratch / "kubernetes"
    shutil.copytree(KUBERNETES, tree, dirs_exist_ok=True)
    overlay = tree / "overlays" / variant.overlay
    if variant.tls:
        kustomization = overlay / "kustomization.yaml"
        text = kustomization.read_text(encoding="utf-8")
        assert text.count(TLS_OFF) == 1, f"{variant.overlay} carries the TLS lines, commented"
        kustomization.write_text(text.replace(TLS_OFF, TLS_ON), encoding="utf-8")
    return overlay


def render_variant(variant: Variant, scratch: Path) -> list[Obj]:
    return render(variant_tree(variant, scratch))


# --- reading the rendered objects ---------------------------------------------------------------


def by_kind(objects: list[Obj], kind: str) -> dict[str, Obj]:
    return {obj["metadata"]["name"]: obj for obj in objects if obj["kind"] == kind}


def workloads(objects: list[Obj]) -> dict[str, Obj]:
    return {obj["metadata"]["name"]: obj for obj in objects if obj["kind"] in WORKLOAD_KINDS}


def pod_spec(workload: Mapping[str, Any]) -> Obj:
    spec: Obj = workload["spec"]["template"]["spec"]
    return spec


def is_sidecar(container: Mapping[str, Any]) -> bool:
    return container.get("restartPolicy") == "Always"


def container_named(workload: Mapping[str, Any], name: str) -> Obj:
    found = [c for c in pod_containers(workload) if c["name"] == name]
    assert len(found) == 1, f"{workload['metadata']['name']} has one container {name}"
    return found[0]


def config_data(objects: list[Obj]) -> dict[str, str]:
    return dict(by_kind(objects, "ConfigMap")[CONFIG_MAP]["data"])


def served_service(container: Mapping[str, Any]) -> str | None:
    """The service a `stablenew serve X` container runs (bundle, ..., emulator), else None."""
    args = container.get("args", [])
    return str(args[1]) if len(args) > 1 and args[0] == "serve" else None


def flag_value(args: list[str], flag: str) -> str | None:
    return args[args.index(flag) + 1] if flag in args else None


def named_ports(container: Mapping[str, Any]) -> dict[str, int]:
    return {port["name"]: int(port["containerPort"]) for port in container.get("ports", [])
            if "name" in port}


# --- the image ----------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    instructions = []
    for line in lines:
        keyword, _, arguments = line.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def instruction_arguments(keyword: str) -> list[str]:
    return [arguments for name, arguments in dockerfile_instructions() if name == keyword]


def image_environment() -> dict[str, str]:
    """The STABLENEW_* variables the image's ENV lines set (NAME=value forms)."""
    found: dict[str, str] = {}
    for arguments in instruction_arguments("ENV"):
        for pair in arguments.split():
            name, sep, value = pair.partition("=")
            if sep and STABLENEW_NAME.fullmatch(name):
                found[name] = value
    return found


def image_entrypoint() -> list[str]:
    entrypoints = instruction_arguments("ENTRYPOINT")
    assert len(entrypoints) == 1
    entrypoint = json.loads(entrypoints[0])
    assert isinstance(entrypoint, list)
    return [str(part) for part in entrypoint]


def image_healthcheck() -> tuple[dict[str, str], list[str]]:
    """The HEALTHCHECK's options (--interval=10s -> {"interval": "10s"}) and its command (exec
    form, as a health check runs it in the container: no entrypoint)."""
    (arguments,) = instruction_arguments("HEALTHCHECK")
    options_text, separator, command = arguments.partition("CMD ")
    assert separator, "HEALTHCHECK ... CMD [...]"
    options = dict(option.removeprefix("--").split("=", 1) for option in options_text.split())
    parsed = json.loads(command)
    assert isinstance(parsed, list), "the exec form: CMD [...]"
    return options, [str(part) for part in parsed]


def image_workdir() -> str:
    return instruction_arguments("WORKDIR")[-1]


def image_user() -> int:
    return int(instruction_arguments("USER")[-1].split(":")[0])


# --- the settings the code reads ----------------------------------------------------------------


def _python_sources() -> Iterator[Path]:
    for root in ("services", "clients"):
        yield from sorted((ROOT / root).rglob("*.py"))


@functools.cache
def code_variables() -> frozenset[str]:
    """Every STABLENEW_* variable the services and clients read: the names spelled out in the
    code, the address variables built from the service names, and the emulator's settings."""
    names = {address_variable(name) for name in SERVICE_NAMES}
    names |= {setting.variable for setting in EMULATOR_SETTINGS}
    for path in _python_sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and STABLENEW_NAME.fullmatch(node.value):
                names.add(node.value)
    return frozenset(names)


def shared_settings() -> dict[str, str]:
    """The deployment's settings file: the ConfigMap's data (and what compose must agree with)."""
    return read_env_file(ENV_FILE)
