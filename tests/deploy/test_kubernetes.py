"""The Kubernetes manifests (deploy/kubernetes): every overlay, with and without TLS, renders,
is valid against the Kubernetes schemas, and every command, port, probe and variable in it is
one the code has, so the manifests cannot drift from the services.

No cluster is needed: tests/deploy/kustomize.py renders the overlays (and is compared with
`kubectl kustomize` where kubectl exists), kubernetes-validate brings the schemas."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml  # type: ignore[import-untyped, unused-ignore]

from stablenew.bundle.app import expansion_limits
from stablenew.cli.main import build_parser
from stablenew.contract.endpoints import DEFAULT_ADDRESSES, SERVICE_NAMES, address_variable
from stablenew.emulator import cli as emulator_cli
from stablenew.emulator.config import EmulatorConfig
from stablenew.history.app import ingest_config, ingest_enabled
from stablenew.history.retention import retention_policy
from stablenew.queue.app import queue_config
from stablenew.runner.app import runner_config
from stablenew.runtime.settings import ServerSettings, parse_address
from stablenew.v1 import (
    bundle_service_pb2,
    history_service_pb2,
    queue_service_pb2,
    runner_service_pb2,
)
from tests.deploy.kustomize import Obj, identity, load_yaml_documents, pod_containers
from tests.deploy.manifests import (
    CONFIG_MAP,
    KUBERNETES,
    RUNNER_TLS_SECRET,
    TLS_SECRET,
    TOKEN_SECRET,
    VARIANTS,
    Variant,
    by_kind,
    code_variables,
    config_data,
    container_named,
    flag_value,
    image_entrypoint,
    image_environment,
    image_user,
    is_sidecar,
    named_ports,
    pod_spec,
    render_variant,
    served_service,
    shared_settings,
    variant_tree,
    workloads,
)

# Native sidecar containers (the runner's WebUI) need Kubernetes 1.29; the newest schemas
# kubernetes-validate ships catch fields that were removed since.
KUBERNETES_VERSIONS = ("1.29", kubernetes_validate.latest_version())
PROTO_SERVICES = {
    "bundle": bundle_service_pb2.DESCRIPTOR.services_by_name["BundleService"].full_name,
    "queue": queue_service_pb2.DESCRIPTOR.services_by_name["QueueService"].full_name,
    "runner": runner_service_pb2.DESCRIPTOR.services_by_name["RunnerService"].full_name,
    "history": history_service_pb2.DESCRIPTOR.services_by_name["HistoryService"].full_name,
}
DATABASES = ("queue", "history", "bundle")
WEBUI = "webui"
WEBUI_READY_PATH = "/sdapi/v1/sd-models"
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")
# What a secret or the downward API gives a container, for checking values only.
STAND_INS = {"secretKeyRef": "stand-in-secret", "fieldRef": "10.1.2.3"}
REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
CERTIFICATE = KUBERNETES / "components" / "tls" / "certificate.yaml"


@pytest.fixture(scope="module", params=VARIANTS, ids=lambda variant: variant.name)
def variant(request: pytest.FixtureRequest) -> Variant:
    found: Variant = request.param
    return found


@pytest.fixture(scope="module")
def objects(variant: Variant, tmp_path_factory: pytest.TempPathFactory) -> list[Obj]:
    return render_variant(variant, tmp_path_factory.mktemp(variant.name))


def stablenew_containers(objects: list[Obj]) -> list[tuple[Obj, Obj]]:
    """(workload, container) for every container that runs `stablenew serve ...`."""
    return [(workload, container) for workload in workloads(objects).values()
            for container in pod_containers(workload) if served_service(container)]


def servers(objects: list[Obj]) -> dict[str, tuple[Obj, Obj]]:
    """The four services: name -> (workload, container)."""
    found = {served_service(container): (workload, container)
             for workload, container in stablenew_containers(objects)
             if served_service(container) in SERVICE_NAMES}
    assert set(found) == set(SERVICE_NAMES)
    return {str(name): pair for name, pair in found.items()}


def listen_address(container: Mapping[str, Any]) -> tuple[str, int]:
    address = flag_value(list(container["args"]), "--address")
    assert address, f"{container['name']} names the address it listens on"
    return parse_address(address, f"{container['name']} --address")


def value_of(entry: Mapping[str, Any]) -> str:
    source = entry.get("valueFrom")
    if source is None:
        return str(entry.get("value", ""))
    (kind,) = source
    return STAND_INS[kind]


def container_env(objects: list[Obj], container: Mapping[str, Any]) -> dict[str, str]:
    """The environment the container starts with: the image's, its ConfigMaps, its env with
    $(NAME) references expanded as the kubelet does."""
    env = image_environment()
    for source in container.get("envFrom", []):
        env |= by_kind(objects, "ConfigMap")[source["configMapRef"]["name"]]["data"]
    for entry in container.get("env", []):
        env[entry["name"]] = REFERENCE.sub(lambda m: env.get(m.group(1), m.group(0)),
                                           value_of(entry))
    return env


# --- rendering and the schemas -----------------------------------------------------------------


def without_generated_suffix(text: str) -> str:
    return re.sub(rf"\b{CONFIG_MAP}-[a-z0-9]{{10}}\b", CONFIG_MAP, text)


def keyed(objects: list[Obj]) -> dict[tuple[str, str], Obj]:
    return {identity(obj): obj for obj in objects}


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_the_renderer_agrees_with_kubectl_kustomize(variant: Variant, objects: list[Obj],
                                                    tmp_path: Path) -> None:
    overlay = variant_tree(variant, tmp_path)
    printed = subprocess.run(["kubectl", "kustomize", str(overlay)], capture_output=True,
                             text=True, timeout=60, check=True).stdout
    theirs = [doc for doc in yaml.safe_load_all(without_generated_suffix(printed)) if doc]
    assert keyed(objects) == keyed(theirs)


def test_every_object_is_valid_for_kubernetes(objects: list[Obj]) -> None:
    for obj in objects:
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                pytest.fail(f"{identity(obj)} on Kubernetes {version}: {error}")


def test_each_overlay_has_the_objects_of_the_design(objects: list[Obj]) -> None:
    assert set(by_kind(objects, "StatefulSet")) == set(DATABASES)
    assert set(by_kind(objects, "Deployment")) == {"runner"}
    assert set(by_kind(objects, "Service")) == set(DATABASES)
    assert all(service["spec"]["type"] == "ClusterIP"
               for service in by_kind(objects, "Service").values())
    assert set(by_kind(objects, "ConfigMap")) == {CONFIG_MAP}
    assert not by_kind(objects, "Secret"), "the token and the certificate are never shipped"


# --- commands and ports -------------------------------------------------------------------------


def test_every_command_is_one_the_cli_takes(objects: list[Obj]) -> None:
    assert image_entrypoint() == ["stablenew"]
    for _workload, container in stablenew_containers(objects):
        assert "command" not in container, "the image's entrypoint runs the CLI"
        args = [str(arg) for arg in container["args"]]
        if served_service(container) == "emulator":
            # `stablenew serve emulator` hands its flags to the emulator's own parser.
            parsed = emulator_cli.build_parser().parse_args(args[2:])
            EmulatorConfig.load(vars(parsed), env={})
            continue
        parsed = build_parser().parse_args(args)
        assert (parsed.command, parsed.service) == ("serve", container["name"])


def test_each_server_listens_on_all_interfaces_at_its_own_port(objects: list[Obj]) -> None:
    for name, (_workload, container) in servers(objects).items():
        host, port = listen_address(container)
        assert host == "0.0.0.0"
        assert port == parse_address(DEFAULT_ADDRESSES[name], name)[1]
        assert named_ports(container) == {"grpc": port}


def test_services_reach_the_port_their_server_listens_on(objects: list[Obj]) -> None:
    config = config_data(objects)
    for name, service in by_kind(objects, "Service").items():
        workload, container = servers(objects)[name]
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items()
        others = [other for other in workloads(objects).values() if other is not workload]
        assert all(not service["spec"]["selector"].items()
                   <= other["spec"]["template"]["metadata"]["labels"].items()
                   for other in others), f"service {name} selects only its own pods"
        (port,) = service["spec"]["ports"]
        target = port["targetPort"]
        target_port = named_ports(container)[target] if isinstance(target, str) else target
        assert target_port == listen_address(container)[1] == port["port"]
        # How the other services dial it: the Service's name at the Service's port.
        assert config[address_variable(name)] == f"{name}:{port['port']}"


def test_no_address_points_at_the_runners_through_a_service(objects: list[Obj]) -> None:
    assert address_variable("runner") not in config_data(objects), (
        "runners are dialled at the address each advertises, not through one name")


# --- probes -------------------------------------------------------------------------------------


def check_probe(name: str, kind: str, probe: Mapping[str, Any], port: int,
                env: Mapping[str, str]) -> None:
    mechanisms = set(probe) & {"grpc", "exec", "tcpSocket", "httpGet"}
    assert len(mechanisms) == 1, f"{name} {kind}: one mechanism"
    if "grpc" in probe:
        assert probe["grpc"]["port"] == port
        assert probe["grpc"].get("service", "") in ("", PROTO_SERVICES[name])
    elif "tcpSocket" in probe:
        assert probe["tcpSocket"]["port"] == port
    elif "exec" in probe:
        command = probe["exec"]["command"]
        assert command[:1] == image_entrypoint()
        parsed = build_parser().parse_args(command[1:])
        assert parsed.command == "health" and parsed.services == [name]
        # It dials the server in its own pod: the container's own address variable.
        assert parse_address(env[address_variable(name)], name) == ("localhost", port)
    else:
        pytest.fail(f"{name} {kind}: {sorted(mechanisms)} is not a probe of a gRPC server")


def test_probes_ask_the_server_in_their_own_container(objects: list[Obj]) -> None:
    for name, (_workload, container) in servers(objects).items():
        env = container_env(objects, container)
        assert {"readinessProbe", "livenessProbe", "startupProbe"} <= set(container)
        for kind in PROBES:
            check_probe(name, kind, container[kind], listen_address(container)[1], env)


def test_native_grpc_probes_without_tls_the_health_command_with_it(
        variant: Variant, objects: list[Obj]) -> None:
    for name, (_workload, container) in servers(objects).items():
        if variant.tls:
            # The kubelet's gRPC probes speak plaintext only.
            for kind in PROBES:
                assert "grpc" not in container[kind], f"{name} {kind} would fail against TLS"
            assert "exec" in container["readinessProbe"]
            continue
        assert "grpc" in container["readinessProbe"]
        # The history's health follows the queue: its liveness must not (see history.yaml).
        expected = "tcpSocket" if name == "history" else "grpc"
        assert expected in container["livenessProbe"]


# --- variables ----------------------------------------------------------------------------------


def test_the_config_map_is_the_settings_file_and_only_settings_the_code_reads(
        variant: Variant, objects: list[Obj]) -> None:
    config = config_data(objects)
    tls = {"STABLENEW_TLS_CERT", "STABLENEW_TLS_KEY", "STABLENEW_TLS_CA",
           "STABLENEW_RUNNER_TLS_NAME"}
    assert {k: v for k, v in config.items() if k not in tls} == shared_settings()
    assert (set(config) >= tls) == variant.tls
    unknown = sorted(set(config) - code_variables())
    assert not unknown, f"{CONFIG_MAP} sets what no code reads: {unknown}"
    assert "STABLENEW_TOKEN" not in config, "the token comes from its Secret"


def test_container_variables_are_settings_or_helpers_the_manifest_uses(
        objects: list[Obj]) -> None:
    for workload, container in stablenew_containers(objects):
        entries = container.get("env", [])
        referenced = {name for entry in entries
                      for name in REFERENCE.findall(str(entry.get("value", "")))}
        for index, entry in enumerate(entries):
            name = entry["name"]
            where = f"{workload['metadata']['name']}/{container['name']} env {name}"
            if name.startswith("STABLENEW_"):
                assert name in code_variables(), f"{where} is read by no code"
            else:
                assert name in referenced, f"{where} is neither a setting nor used"
            for used in REFERENCE.findall(str(entry.get("value", ""))):
                earlier = {e["name"] for e in entries[:index]}
                assert used in earlier, f"{where}: $({used}) must be defined before it"


def test_every_value_is_accepted_by_the_code_that_reads_it(
        variant: Variant, objects: list[Obj]) -> None:
    for _workload, container in stablenew_containers(objects):
        env = container_env(objects, container)
        # The certificate files exist only in the cluster; their paths are checked below.
        env = {k: v for k, v in env.items() if k not in ("STABLENEW_TLS_CERT",
                                                          "STABLENEW_TLS_KEY",
                                                          "STABLENEW_TLS_CA")}
        args = [str(arg) for arg in container["args"]]
        name = served_service(container)
        if name == "emulator":
            EmulatorConfig.load(vars(emulator_cli.build_parser().parse_args(args[2:])), env)
            continue
        assert name is not None
        settings = ServerSettings.load(name, env=env, address=flag_value(args, "--address"))
        load_service_settings(name, settings, env)


def load_service_settings(name: str, settings: ServerSettings, env: Mapping[str, str]) -> None:
    """Each service's own settings, read by the same functions its app.build calls."""
    if name == "queue":
        queue_config(env)
    elif name == "runner":
        runner_config(settings, env)
    elif name == "history":
        ingest_enabled(env)
        ingest_config(env)
        retention_policy(env)
    else:
        expansion_limits(env)


def test_the_token_comes_from_its_secret_in_every_server(objects: list[Obj]) -> None:
    for name, (_workload, container) in servers(objects).items():
        tokens = [entry for entry in container.get("env", [])
                  if entry["name"] == "STABLENEW_TOKEN"]
        assert tokens == [{"name": "STABLENEW_TOKEN", "valueFrom": {"secretKeyRef": {
            "name": TOKEN_SECRET, "key": "token"}}}], f"{name} takes the token from its Secret"


def test_tls_comes_from_the_certificate_secret(variant: Variant, objects: list[Obj]) -> None:
    config = config_data(objects)
    for workload, container in stablenew_containers(objects):
        if served_service(container) == "emulator":
            continue
        secret = RUNNER_TLS_SECRET if served_service(container) == "runner" else TLS_SECRET
        volumes = {volume["name"]: volume for volume in pod_spec(workload)["volumes"]}
        mounts = [mount for mount in container["volumeMounts"]
                  if volumes.get(mount["name"], {}).get("secret", {}).get("secretName")
                  in (TLS_SECRET, RUNNER_TLS_SECRET)]
        if not variant.tls:
            assert not mounts
            continue
        assert len(mounts) == 1 and mounts[0]["readOnly"]
        assert volumes[mounts[0]["name"]]["secret"]["secretName"] == secret
        directory = mounts[0]["mountPath"]
        # The names cert-manager gives the files (ca.crt: the CA that signed tls.crt).
        assert config["STABLENEW_TLS_CERT"] == f"{directory}/tls.crt"
        assert config["STABLENEW_TLS_KEY"] == f"{directory}/tls.key"
        assert config["STABLENEW_TLS_CA"] == f"{directory}/ca.crt"


def certificate_documents() -> dict[tuple[str, str], Obj]:
    """certificate.yaml's objects by (kind, name), all in the namespace of the deployment."""
    return {(item["kind"], item["metadata"]["name"]): item
            for item in load_yaml_documents(CERTIFICATE)}


def test_the_example_certificates_come_from_a_ca_of_the_deployment(objects: list[Obj]) -> None:
    documents = certificate_documents()
    namespace = by_kind(objects, "ConfigMap")[CONFIG_MAP]["metadata"]["namespace"]
    assert {item["metadata"]["namespace"] for item in documents.values()} == {namespace}
    # A self-signed root, kept in a Secret, and the Issuer that signs with it.
    ca = documents[("Certificate", "stablenew-ca")]["spec"]
    assert ca["isCA"] is True
    assert "selfSigned" in documents[("Issuer", ca["issuerRef"]["name"])]["spec"]
    signer = documents[("Issuer", "stablenew-ca")]["spec"]
    assert signer["ca"]["secretName"] == ca["secretName"]
    for secret in (TLS_SECRET, RUNNER_TLS_SECRET):
        (spec,) = [item["spec"] for (kind, _), item in documents.items()
                   if kind == "Certificate" and item["spec"]["secretName"] == secret]
        assert spec["issuerRef"]["name"] == "stablenew-ca" and not spec.get("isCA")
        assert "localhost" in spec["dnsNames"], "each container's probe dials localhost"


def test_the_example_certificates_name_every_address_the_services_dial(
        variant: Variant, objects: list[Obj]) -> None:
    documents = certificate_documents()
    names = {secret: set(item["spec"]["dnsNames"]) for (kind, _), item in documents.items()
             if kind == "Certificate" and not item["spec"].get("isCA")
             for secret in [item["spec"]["secretName"]]}
    namespace = by_kind(objects, "ConfigMap")[CONFIG_MAP]["metadata"]["namespace"]
    for name in by_kind(objects, "Service"):
        host = parse_address(config_data(objects)[address_variable(name)], name)[0]
        expected = {host, f"{name}.{namespace}.svc", f"{name}.{namespace}.svc.cluster.local"}
        assert expected <= names[TLS_SECRET]
    if variant.tls:
        # Runners are dialled at their pod addresses: clients check the name the component
        # sets, which the runners' certificate carries.
        assert config_data(objects)["STABLENEW_RUNNER_TLS_NAME"] in names[RUNNER_TLS_SECRET]


# --- the workloads ------------------------------------------------------------------------------


def test_each_database_is_one_statefulset_replica_with_its_own_claim(
        objects: list[Obj]) -> None:
    data_dir = config_data(objects)["STABLENEW_DATA_DIR"]
    for name in DATABASES:
        workload = by_kind(objects, "StatefulSet")[name]
        spec = workload["spec"]
        assert spec["replicas"] == 1, "one writer per SQLite database"
        # With one replica a rolling update deletes the old pod before creating the new one.
        assert spec["updateStrategy"]["type"] == "RollingUpdate"
        assert spec.get("podManagementPolicy", "OrderedReady") == "OrderedReady"
        (claim,) = spec["volumeClaimTemplates"]
        assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
        assert "storage" in claim["spec"]["resources"]["requests"]
        container = container_named(workload, name)
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert mounts[data_dir] == claim["metadata"]["name"]


def test_every_mount_has_its_volume_and_every_volume_is_mounted(objects: list[Obj]) -> None:
    for name, workload in workloads(objects).items():
        declared = {volume["name"] for volume in pod_spec(workload).get("volumes", [])}
        declared |= {claim["metadata"]["name"]
                     for claim in workload["spec"].get("volumeClaimTemplates", [])}
        mounted = {mount["name"] for container in pod_containers(workload)
                   for mount in container.get("volumeMounts", [])}
        assert mounted == declared, f"{name}: mounted {sorted(mounted)}, has {sorted(declared)}"


def test_termination_grace_periods_cover_the_drain(objects: list[Obj]) -> None:
    grace = float(config_data(objects)["STABLENEW_GRACE_SECONDS"])
    for name, (workload, _container) in servers(objects).items():
        period = pod_spec(workload)["terminationGracePeriodSeconds"]
        # The runner drains its calls, then waits as long for its worker's hand-back.
        needed = 2 * grace if name == "runner" else grace
        assert period > needed, f"{name}: {period} s do not cover {needed} s of draining"


def test_the_runner_pod_holds_the_runner_and_its_webui(variant: Variant,
                                                      objects: list[Obj]) -> None:
    runner = by_kind(objects, "Deployment")["runner"]
    webui = container_named(runner, WEBUI)
    assert is_sidecar(webui), "started before the runner, stopped after it"
    assert [c["name"] for c in pod_spec(runner)["containers"]] == ["runner"]
    container = container_named(runner, "runner")
    env = container_env(objects, container)
    # The runner dials the WebUI in its own pod, at the port the WebUI listens on.
    url = urlsplit(env["STABLENEW_WEBUI_URL"])
    (webui_port,) = named_ports(webui).values()
    assert (url.hostname, url.port) == ("127.0.0.1", webui_port)
    startup = webui["startupProbe"]["httpGet"]
    assert (startup["path"], startup["port"]) == (WEBUI_READY_PATH, webui_port)
    # Every runner advertises its own pod address for ReadImage.
    advertised = f"{STAND_INS['fieldRef']}:{listen_address(container)[1]}"
    assert env["STABLENEW_RUNNER_ADVERTISE_ADDR"] == advertised
    pod_ip = next(e for e in container["env"] if e["name"] == "POD_IP")
    assert pod_ip["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts[env["STABLENEW_DATA_DIR"]] == "images"
    check_webui(variant, runner, webui, webui_port)


def check_webui(variant: Variant, runner: Obj, webui: Obj, port: int) -> None:
    gpus = webui.get("resources", {}).get("limits", {}).get("nvidia.com/gpu")
    if variant.overlay == "emulator":
        assert served_service(webui) == "emulator"
        assert flag_value(webui["args"], "--address") == f"0.0.0.0:{port}"
        assert all("nvidia.com/gpu" not in str(c.get("resources")) for c in pod_containers(runner))
        return
    assert gpus == 1, "each runner's WebUI owns one GPU"
    assert flag_value(webui["args"], "--port") == str(port)
    assert {"--api", "--listen"} <= set(webui["args"])
    volumes = {volume["name"]: volume for volume in pod_spec(runner)["volumes"]}
    models = [m for m in webui["volumeMounts"] if "persistentVolumeClaim" in volumes[m["name"]]]
    assert models and all(m.get("readOnly") for m in models), "models are mounted read-only"
    assert "persistentVolumeClaim" in volumes["images"], "images outlive the pod"


def test_containers_run_as_the_images_user_without_privileges(objects: list[Obj]) -> None:
    for workload, container in stablenew_containers(objects):
        context = container["securityContext"]
        assert context["runAsNonRoot"] is True and context["runAsUser"] == image_user()
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        assert pod_spec(workload)["securityContext"]["fsGroup"] == image_user()


def test_every_container_requests_resources(objects: list[Obj]) -> None:
    for workload in workloads(objects).values():
        for container in pod_containers(workload):
            requests = container.get("resources", {}).get("requests", {})
            assert {"cpu", "memory"} <= set(requests), (
                f"{workload['metadata']['name']}/{container['name']} requests cpu and memory")


def test_the_base_webui_is_a_placeholder_every_overlay_replaces(objects: list[Obj]) -> None:
    webui = container_named(by_kind(objects, "Deployment")["runner"], WEBUI)
    assert not webui["image"].startswith("sd-webui:") and webui["image"] != "sd-webui"

