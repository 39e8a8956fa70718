"""The container deployment: docker-compose.yml, the Dockerfile and .dockerignore.

No docker engine is needed: the compose file is parsed with PyYAML and checked against the real
CLI parser and settings, and against the Kubernetes manifests (the same commands, ports,
settings and health checks), and the end-to-end test runs the same `stablenew` commands the
containers run, as local processes on loopback ports.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import signal
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml  # type: ignore[import-untyped, unused-ignore]

from stablenew.cli.main import build_parser
from stablenew.cli.self_health import served
from stablenew.contract.endpoints import DEFAULT_ADDRESSES, SERVICE_NAMES, address_variable
from stablenew.runtime.settings import parse_address
from tests.deploy.kustomize import Obj
from tests.deploy.local_cluster import local_program
from tests.deploy.manifests import (
    ROOT,
    Variant,
    by_kind,
    code_variables,
    config_data,
    container_named,
    flag_value,
    image_healthcheck,
    instruction_arguments,
    pod_spec,
    render_variant,
)
from tests.queue.processes import free_port
from tests.service_harness import wait_for

COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERIGNORE = ROOT / ".dockerignore"
DEMO_SERVICES = ("emulator",)
GPU_SERVICES = ("webui",)
PROFILES = {"emulator": ["demo"], "webui": ["gpu"]}
CONTAINER_DATA_DIR = "/data"
# ${NAME}, ${NAME:-default}, ${NAME-default}: compose's interpolation forms used here.
INTERPOLATION = re.compile(
    r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?-)(?P<default>[^}]*))?\}"
)
STABLENEW_NAME = re.compile(r"STABLENEW_[A-Z0-9_]+")


def load_compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = compose["services"]
    assert isinstance(found, dict)
    return found


def environment_of(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's environment as a mapping, whichever of the two compose forms it uses."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        pairs = (item.split("=", 1) for item in raw)
        return {pair[0]: pair[1] if len(pair) > 1 else "" for pair in pairs}
    return {str(key): "" if value is None else str(value) for key, value in raw.items()}


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR-default} against `env`."""

    def replace(match: re.Match[str]) -> str:
        name, op, default = match.group("name", "op", "default")
        if op == ":-":
            return env.get(name) or default
        if op == "-":
            return env.get(name, default)
        return env.get(name, "")

    return INTERPOLATION.sub(replace, value)


def depends_on(service: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    raw = service.get("depends_on") or {}
    if isinstance(raw, list):
        return {name: {"condition": "service_started"} for name in raw}
    return {str(name): dict(spec or {}) for name, spec in raw.items()}


def own_port(name: str, service: Mapping[str, Any]) -> int:
    _host, port = parse_address(environment_of(service)[address_variable(name)], name)
    return port


# --- the compose file ---------------------------------------------------------------------------


def test_the_four_services_the_emulator_under_demo_and_a_webui_under_gpu(
    services: dict[str, dict[str, Any]],
) -> None:
    assert set(services) == {*SERVICE_NAMES, *DEMO_SERVICES, *GPU_SERVICES}
    for name in SERVICE_NAMES:
        assert not services[name].get("profiles"), f"{name} must start without a profile"
    for name, profiles in PROFILES.items():
        assert services[name]["profiles"] == profiles


@pytest.mark.parametrize("name", [*SERVICE_NAMES, *DEMO_SERVICES])
def test_every_command_is_a_valid_cli_invocation(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    command = services[name]["command"]
    assert isinstance(command, list), "exec form, so no shell sits between docker and stablenew"
    try:
        args = build_parser().parse_args(command)
    except SystemExit as exit_:
        pytest.fail(f"`stablenew {' '.join(command)}` is refused by the CLI (exit {exit_.code})")
    assert args.command == "serve"
    assert args.service == name


def test_the_emulator_listens_where_the_runner_looks_by_default(
    services: dict[str, dict[str, Any]],
) -> None:
    command = services["emulator"]["command"]
    address = command[command.index("--address") + 1]
    host, port = parse_address(address, "emulator --address")
    assert host == "0.0.0.0"
    default_url = interpolate(environment_of(services["runner"])["STABLENEW_WEBUI_URL"], {})
    assert urlsplit(default_url).hostname == "emulator"
    assert urlsplit(default_url).port == port


def test_the_runner_webui_url_is_one_setting_defaulting_to_the_emulator(
    services: dict[str, dict[str, Any]],
) -> None:
    value = environment_of(services["runner"])["STABLENEW_WEBUI_URL"]
    assert value == "${STABLENEW_WEBUI_URL:-http://emulator:7860}"
    assert interpolate(value, {}) == "http://emulator:7860"
    real = "http://gpu-box:7860"
    assert interpolate(value, {"STABLENEW_WEBUI_URL": real}) == real
    emulator = depends_on(services["runner"]).get("emulator")
    assert emulator is not None and emulator.get("required") is False, (
        "without the demo profile the emulator is absent: the dependency must be optional"
    )


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_each_service_listens_on_all_interfaces_at_its_default_port(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    address = environment_of(services[name])[address_variable(name)]
    host, port = parse_address(address, address_variable(name))
    assert host == "0.0.0.0"
    assert port == parse_address(DEFAULT_ADDRESSES[name], name)[1]


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_other_services_are_reached_by_compose_name_once_healthy(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    env = environment_of(services[name])
    dependencies = depends_on(services[name])
    for other in SERVICE_NAMES:
        if other == name or address_variable(other) not in env:
            continue
        host, port = parse_address(env[address_variable(other)], address_variable(other))
        assert host == other
        assert port == own_port(other, services[other])
        assert dependencies.get(other, {}).get("condition") == "service_healthy", (
            f"{name} talks to {other}, so it waits for {other} to be healthy"
        )


def test_the_dependencies_of_the_design(services: dict[str, dict[str, Any]]) -> None:
    for name in ("bundle", "runner", "history"):
        assert environment_of(services[name])["STABLENEW_QUEUE_ADDR"] == "queue:50052"
        assert depends_on(services[name])["queue"]["condition"] == "service_healthy"
    assert not depends_on(services["queue"])


@pytest.mark.parametrize("name", [*SERVICE_NAMES, "emulator"])
def test_every_container_of_the_image_has_the_images_own_health_check(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    _options, command = image_healthcheck()
    test = services[name]["healthcheck"]["test"]
    assert test == ["CMD", *command]
    # What it checks: the service of the container's command, at the port it listens on.
    env = {key: interpolate(value, {}) for key, value in environment_of(services[name]).items()}
    own = served(["stablenew", *services[name]["command"]], env)
    assert own.name == name
    listening = env.get(address_variable(name)) or flag_value(services[name]["command"],
                                                              "--address")
    assert listening is not None
    assert own.address == f"localhost:{parse_address(listening, name)[1]}"


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_data_lives_in_a_named_volume_per_service(
    compose: dict[str, Any], services: dict[str, dict[str, Any]], name: str
) -> None:
    declared = set(compose.get("volumes") or {})
    mounts = [str(volume).split(":") for volume in services[name].get("volumes", [])]
    data_mounts = [mount for mount in mounts if mount[1] == CONTAINER_DATA_DIR]
    assert len(data_mounts) == 1, f"{name} mounts one volume at {CONTAINER_DATA_DIR}"
    source = data_mounts[0][0]
    assert source in declared, f"{source} is a named volume declared at the top level"
    env = environment_of(services[name])
    assert env.get("STABLENEW_DATA_DIR", CONTAINER_DATA_DIR) == CONTAINER_DATA_DIR


def test_no_two_services_share_a_volume(services: dict[str, dict[str, Any]]) -> None:
    sources = [
        str(volume).split(":")[0]
        for name in SERVICE_NAMES
        for volume in services[name].get("volumes", [])
    ]
    assert len(sources) == len(set(sources))


@pytest.mark.parametrize("name", [*SERVICE_NAMES, *DEMO_SERVICES, *GPU_SERVICES])
def test_ports_are_published_on_loopback_only(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    ports = services[name].get("ports", [])
    assert ports, f"{name} publishes its port"
    for port in ports:
        assert isinstance(port, str), "short syntax, so the host address is explicit"
        assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond this host"


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_the_published_port_is_the_one_the_service_listens_on(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    port = own_port(name, services[name])
    assert services[name]["ports"] == [f"127.0.0.1:{port}:{port}"]


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_the_token_is_passed_through_from_the_host(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    value = environment_of(services[name])["STABLENEW_TOKEN"]
    assert interpolate(value, {}) == "", "no token unless the host sets one"
    assert interpolate(value, {"STABLENEW_TOKEN": "secret"}) == "secret"


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_tls_is_passed_through_from_the_host(services: dict[str, dict[str, Any]],
                                             name: str) -> None:
    env = environment_of(services[name])
    for variable in ("STABLENEW_TLS_CERT", "STABLENEW_TLS_KEY", "STABLENEW_TLS_CA"):
        assert interpolate(env[variable], {}) == "", "plaintext unless the host sets TLS"
        assert interpolate(env[variable], {variable: "/tls/x.pem"}) == "/tls/x.pem"


def test_every_stablenew_variable_in_compose_is_read_by_the_code() -> None:
    used = set(STABLENEW_NAME.findall(COMPOSE_FILE.read_text(encoding="utf-8")))
    assert used, "the compose file configures the services through STABLENEW_* variables"
    unknown = sorted(used - code_variables())
    assert not unknown, f"set in docker-compose.yml but read nowhere in the code: {unknown}"


# --- the gpu profile ----------------------------------------------------------------------------


def test_the_gpu_profile_gives_the_webui_one_gpu(services: dict[str, dict[str, Any]]) -> None:
    webui = services["webui"]
    (device,) = webui["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["count"] == 1
    assert device["capabilities"] == ["gpu"]
    assert webui["image"].startswith("${SD_WEBUI_IMAGE"), "the user names the WebUI image"
    models = [volume for volume in webui["volumes"] if volume.endswith(":/models:ro")]
    assert models, "the models folder, read-only"


def test_the_runner_can_drive_the_gpu_profiles_webui(services: dict[str, dict[str, Any]]) -> None:
    webui = services["webui"]
    port = int(flag_value(webui["command"], "--port") or 0)
    assert webui["ports"] == [f"127.0.0.1:{port}:{port}"]
    assert {"--api", "--listen"} <= set(webui["command"])
    url = interpolate(environment_of(services["runner"])["STABLENEW_WEBUI_URL"],
                      {"STABLENEW_WEBUI_URL": f"http://webui:{port}"})
    assert (urlsplit(url).hostname, urlsplit(url).port) == ("webui", port)
    dependency = depends_on(services["runner"])["webui"]
    assert dependency == {"condition": "service_healthy", "required": False}
    assert f"127.0.0.1:{port}/sdapi/v1/sd-models" in " ".join(webui["healthcheck"]["test"])


# --- the same deployment as deploy/kubernetes ---------------------------------------------------


@pytest.fixture(scope="module")
def kubernetes(tmp_path_factory: pytest.TempPathFactory) -> list[Obj]:
    return render_variant(Variant("emulator", tls=False), tmp_path_factory.mktemp("k8s"))


def kubernetes_server(objects: list[Obj], name: str) -> tuple[Obj, Obj]:
    workload = by_kind(objects, "Deployment" if name == "runner" else "StatefulSet")[name]
    return workload, container_named(workload, name)


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_compose_runs_what_kubernetes_runs_on_the_same_port(
        services: dict[str, dict[str, Any]], kubernetes: list[Obj], name: str) -> None:
    _workload, container = kubernetes_server(kubernetes, name)
    assert services[name]["command"] == container["args"][:2]
    address = flag_value(container["args"], "--address") or ""
    assert own_port(name, services[name]) == parse_address(address, name)[1]
    assert services[name]["image"] == container["image"], "the same image, built here"


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_compose_and_kubernetes_agree_on_every_shared_setting(
        services: dict[str, dict[str, Any]], kubernetes: list[Obj], name: str) -> None:
    config = config_data(kubernetes)
    env = {key: interpolate(value, {}) for key, value in environment_of(services[name]).items()}
    # Where each differs on purpose: a service's own listening address (compose sets it by
    # variable, Kubernetes by --address), and the WebUI (a compose service vs the pod's).
    own = {address_variable(name), "STABLENEW_WEBUI_URL", "STABLENEW_TOKEN"}
    for key in (set(env) & set(config)) - own:
        assert env[key] == config[key], f"{name}: {key} is {env[key]} here, {config[key]} there"


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_compose_health_checks_ask_what_the_kubernetes_probes_ask(
        services: dict[str, dict[str, Any]], kubernetes: list[Obj], name: str) -> None:
    _workload, container = kubernetes_server(kubernetes, name)
    readiness = container["readinessProbe"]
    assert readiness["grpc"]["port"] == own_port(name, services[name])
    env = {key: interpolate(value, {}) for key, value in environment_of(services[name]).items()}
    checked = served(["stablenew", *services[name]["command"]], env)
    assert (checked.name, parse_address(checked.address, name)[1]) == (
        name, readiness["grpc"]["port"])


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_a_stop_waits_longer_than_the_drain_in_both(
        services: dict[str, dict[str, Any]], kubernetes: list[Obj], name: str) -> None:
    grace = float(environment_of(services[name])["STABLENEW_GRACE_SECONDS"])
    assert grace == float(config_data(kubernetes)["STABLENEW_GRACE_SECONDS"])
    stop = services[name]["stop_grace_period"]
    assert stop.endswith("s") and float(stop[:-1]) > (2 * grace if name == "runner" else grace)
    workload, _container = kubernetes_server(kubernetes, name)
    assert pod_spec(workload)["terminationGracePeriodSeconds"] == float(stop[:-1])


# --- the Dockerfile -----------------------------------------------------------------------------


def test_the_image_starts_the_cli() -> None:
    entrypoints = instruction_arguments("ENTRYPOINT")
    assert len(entrypoints) == 1
    assert json.loads(entrypoints[0]) == ["stablenew"]


def test_the_image_builds_on_python_311_slim() -> None:
    assert instruction_arguments("FROM") == ["python:3.11-slim"]


def test_the_image_installs_the_project_non_editable() -> None:
    runs = instruction_arguments("RUN")
    installs = [run for run in runs if re.search(r"\bpip install \.(\s|$)", run)]
    assert installs, "the project is installed with `pip install .`"
    assert not any(re.search(r"pip install[^&]*(-e|--editable)\b", run) for run in runs)


def test_the_image_copies_every_source_root_the_wheel_packages() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    roots = {package.split("/")[0] for package in packages}
    copied = {arguments.split()[0].rstrip("/") for arguments in instruction_arguments("COPY")}
    readme = pyproject["project"]["readme"]
    assert roots | {"pyproject.toml", readme} <= copied


def dockerignore_excludes(name: str) -> bool:
    """Whether .dockerignore keeps a top-level entry out of the build context (last match wins)."""
    excluded = False
    for raw in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if fnmatch.fnmatchcase(name, pattern):
            excluded = not negated
    return excluded


def test_the_build_context_holds_what_the_dockerfile_copies() -> None:
    for arguments in instruction_arguments("COPY"):
        source = arguments.split()[0].rstrip("/")
        assert not dockerignore_excludes(source), f".dockerignore leaves out {source}"
    for local in (".venv", ".git", ".stablenew", "tests"):
        assert dockerignore_excludes(local), f"{local} stays out of the build context"


def test_the_image_runs_as_a_non_root_user_with_data_in_slash_data() -> None:
    users = instruction_arguments("USER")
    assert users, "a USER instruction"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    envs = " ".join(instruction_arguments("ENV"))
    assert re.search(r"\bSTABLENEW_DATA_DIR=/data\b", envs)


def test_the_image_exposes_every_port_compose_uses(services: dict[str, dict[str, Any]]) -> None:
    exposed = {int(port) for arguments in instruction_arguments("EXPOSE")
               for port in arguments.split()}
    used = {own_port(name, services[name]) for name in SERVICE_NAMES}
    used.add(urlsplit(interpolate(
        environment_of(services["runner"])["STABLENEW_WEBUI_URL"], {})).port or 0)
    assert used <= exposed


# --- end to end: the compose commands as local processes ----------------------------------------


def cli() -> list[str]:
    """The installed `stablenew` script next to this interpreter, else the module."""
    script = Path(sys.executable).with_name("stablenew")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "stablenew.cli.main"]


def translate(value: str, ports: Mapping[int, int]) -> str:
    """A container address (0.0.0.0:50052, queue:50052, http://emulator:7860) -> loopback."""
    if "://" in value:
        parts = urlsplit(value)
        if parts.port is not None and parts.port in ports:
            return parts._replace(netloc=f"127.0.0.1:{ports[parts.port]}").geturl()
        return value
    try:
        _host, port = parse_address(value, "compose")
    except ValueError:
        return value
    return f"127.0.0.1:{ports[port]}" if port in ports else value


def local_environment(
    service: Mapping[str, Any], ports: Mapping[int, int], data_dir: Path, host: Mapping[str, str]
) -> dict[str, str]:
    """The service's compose environment, interpolated against `host` and moved to loopback."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("STABLENEW_")}
    for key, value in environment_of(service).items():
        resolved = interpolate(value, host)
        if resolved == CONTAINER_DATA_DIR:
            resolved = str(data_dir)
        env[key] = translate(resolved, ports)
    return env


def start_order(services: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The four services with each one after what it depends on."""
    order: list[str] = []
    while len(order) < len(SERVICE_NAMES):
        ready = [name for name in SERVICE_NAMES if name not in order
                 and set(depends_on(services[name])) & set(SERVICE_NAMES) <= set(order)]
        assert ready, "depends_on has a cycle"
        order.extend(ready)
    return order


def run_health_check(command: list[str], process: subprocess.Popen[bytes],
                     env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """A health check's command, in the process's environment, reading its command line (the
    container's PID 1 there, this process here: hence --pid)."""
    return subprocess.run([*local_program(command), "--pid", str(process.pid)], env=dict(env),
                          capture_output=True, text=True, timeout=60, check=False)


def wait_healthy(service: Mapping[str, Any], env: Mapping[str, str],
                 process: subprocess.Popen[bytes]) -> subprocess.CompletedProcess[str]:
    """Run the service's compose health check until it passes, like service_healthy."""
    command = service["healthcheck"]["test"][1:]

    def healthy() -> subprocess.CompletedProcess[str] | None:
        assert process.poll() is None, f"{command} exited with {process.returncode}"
        check = run_health_check(command, process, env)
        return check if check.returncode == 0 else None

    return wait_for(healthy, f"{service['command']} to be healthy", 60, interval=0.2)


@pytest.mark.e2e
def test_the_compose_services_start_report_serving_and_stop_on_sigterm(
    services: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    container_ports = {own_port(name, services[name]) for name in SERVICE_NAMES}
    emulator_url = interpolate(environment_of(services["runner"])["STABLENEW_WEBUI_URL"], {})
    container_ports.add(urlsplit(emulator_url).port or 0)
    ports = {port: free_port() for port in container_ports}
    # With a token set, as a user exposing the services would: health needs none.
    host = {"STABLENEW_TOKEN": "e2e-secret"}
    processes: dict[str, subprocess.Popen[bytes]] = {}
    envs: dict[str, dict[str, str]] = {}
    try:
        for name in start_order(services):
            envs[name] = local_environment(services[name], ports, tmp_path / name, host)
            assert envs[name]["STABLENEW_TOKEN"] == "e2e-secret"
            processes[name] = subprocess.Popen(
                [*cli(), *services[name]["command"]], env=envs[name], cwd=tmp_path,
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )
            wait_healthy(services[name], envs[name], processes[name])

        everything = dict(envs["bundle"])
        for name in SERVICE_NAMES:
            everything[address_variable(name)] = envs[name][address_variable(name)]
        report = subprocess.run([*cli(), "health", "--json"], env=everything,
                                capture_output=True, text=True, timeout=30, check=False)
        assert report.returncode == 0, report.stdout + report.stderr
        statuses = {entry["service"]: entry["status"]
                    for entry in json.loads(report.stdout)["services"]}
        assert statuses == dict.fromkeys(SERVICE_NAMES, "SERVING")

        for process in processes.values():
            process.send_signal(signal.SIGTERM)
        for name, process in processes.items():
            _out, err = process.communicate(timeout=30)
            assert process.returncode == 0, f"{name} exited {process.returncode}: {err!r}"
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)


# --- the image's own health check ---------------------------------------------------------------


def test_the_image_checks_the_health_of_what_it_serves() -> None:
    options, command = image_healthcheck()
    assert command == ["stablenew", "health", "--self"]
    args = build_parser().parse_args(command[1:])
    assert (args.command, args.own, args.services) == ("health", True, [])
    # The check's own deadline ends before Docker's, so a hung service is reported by it.
    assert float(options["timeout"].removesuffix("s")) > args.timeout
    assert {"interval", "start-period", "retries"} <= set(options)


SERVED = (*SERVICE_NAMES, "emulator")


@pytest.fixture(scope="module")
def served_containers(services: dict[str, dict[str, Any]],
                      tmp_path_factory: pytest.TempPathFactory
                      ) -> Iterator[dict[str, tuple[subprocess.Popen[bytes], dict[str, str]]]]:
    """Each compose container's command and environment as a local process (the emulator's
    address moved to loopback as the services' are), once its compose health check passes
    (the image's, with the emulator's port published on loopback)."""
    root = tmp_path_factory.mktemp("served")
    ports = {own_port(name, services[name]): free_port() for name in SERVICE_NAMES}
    ports[urlsplit(interpolate(environment_of(services["runner"])["STABLENEW_WEBUI_URL"],
                               {})).port or 0] = free_port()
    started: dict[str, tuple[subprocess.Popen[bytes], dict[str, str]]] = {}
    try:
        for name in ("emulator", *start_order(services)):
            env = local_environment(services[name], ports, root / name, {})
            command = [translate(str(part), ports) for part in services[name]["command"]]
            process = subprocess.Popen([*cli(), *command], env=env, cwd=root,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            started[name] = (process, env)
            wait_healthy(services[name], env, process)
        yield started
    finally:
        for process, _env in started.values():
            process.send_signal(signal.SIGCONT)  # a test that stopped it may have failed
            process.terminate()
            process.wait(timeout=30)


def run_image_healthcheck(process: subprocess.Popen[bytes],
                          env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """The Dockerfile's HEALTHCHECK command against `process`."""
    return run_health_check(image_healthcheck()[1], process, env)


@pytest.mark.e2e
@pytest.mark.parametrize("name", SERVED)
def test_the_image_health_check_passes_for_a_serving_container(
        served_containers: dict[str, tuple[subprocess.Popen[bytes], dict[str, str]]],
        name: str) -> None:
    process, env = served_containers[name]
    done = run_image_healthcheck(process, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.split()[:1] == [name] and "SERVING" in done.stdout, done.stdout


@pytest.mark.e2e
@pytest.mark.parametrize("name", ["queue", "emulator"])  # the gRPC check and the HTTP check
def test_the_image_health_check_fails_for_a_hung_container(
        served_containers: dict[str, tuple[subprocess.Popen[bytes], dict[str, str]]],
        name: str) -> None:
    process, env = served_containers[name]
    process.send_signal(signal.SIGSTOP)
    try:
        done = run_image_healthcheck(process, env)
    finally:
        process.send_signal(signal.SIGCONT)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "UNREACHABLE" in done.stdout
    wait_for(lambda: run_image_healthcheck(process, env).returncode == 0,
             f"the {name} container to be healthy again", 60)


def test_the_image_health_check_fails_without_a_served_command() -> None:
    # `docker run IMAGE --help` or a one-off command: nothing to check, not healthy.
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        done = run_image_healthcheck(sleeper, {"PATH": os.environ.get("PATH", "")})
    finally:
        sleeper.kill()
        sleeper.wait(timeout=10)
    assert done.returncode == 1
    assert "serves nothing" in done.stderr
