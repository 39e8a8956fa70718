"""Rendered Kubernetes objects run as local processes, the way a kubelet would run them.

Each pod's containers start with the image's entrypoint and the container's args, and the
environment the kubelet gives them: the image's ENV, the ConfigMaps of `envFrom`, `env` with
secrets, the downward API and $(NAME) references. Then addresses move to loopback: every
container port of a pod gets a free local port, an address in the pod (0.0.0.0, 127.0.0.1,
localhost, the pod's IP) uses its pod's ports, and a Service's name becomes `localhost` at the
port of the pod behind it. A port the manifests do not declare, or a host nothing provides, is
an error: that deployment would not work either. Volumes become folders.

Like a kubelet, a pod starts its sidecars first (each once its startup probe passes), then its
containers; pods start all at once, in no order; a stopped pod gets SIGTERM on its containers,
then on its sidecars, each within the pod's termination grace period.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from stablenew.runtime.settings import ConfigError, parse_address
from tests.deploy.kustomize import Obj, pod_containers
from tests.deploy.manifests import (
    by_kind,
    image_entrypoint,
    image_environment,
    image_workdir,
    is_sidecar,
    pod_spec,
    workloads,
)
from tests.queue.processes import free_port
from tests.service_harness import wait_for

POD_IP = "127.0.0.1"
LISTEN_HOSTS = ("0.0.0.0", "127.0.0.1")
REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
PROBE_TIMEOUT_SECONDS = 60.0  # only catches a hang: a healthy start takes seconds
SERVING = health_pb2.HealthCheckResponse.SERVING


def cli() -> list[str]:
    """The `stablenew` script beside this interpreter: the image's entrypoint, here."""
    script = Path(sys.executable).with_name("stablenew")
    return [str(script)] if script.exists() else [sys.executable, "-m", "stablenew.cli.main"]


def local_program(argv: list[str]) -> list[str]:
    """What a command in the image runs here: the CLI for `stablenew`, this Python for `python`."""
    if argv[0] == "stablenew":
        return [*cli(), *argv[1:]]
    if argv[0] == "python":
        return [sys.executable, *argv[1:]]
    raise AssertionError(f"{argv[0]!r} is not in the image (only stablenew and python are)")


@dataclass
class LocalContainer:
    spec: Obj
    env: dict[str, str]
    argv: list[str]
    cwd: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd,
                                            stdout=log, stderr=subprocess.STDOUT)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@dataclass
class LocalPod:
    name: str
    workload: Obj
    root: Path
    ports: dict[int, int]
    mounts: dict[str, dict[str, Path]] = field(default_factory=dict)
    containers: dict[str, LocalContainer] = field(default_factory=dict)

    @property
    def spec(self) -> Obj:
        return pod_spec(self.workload)

    def sidecars(self) -> list[LocalContainer]:
        return [self.containers[c["name"]] for c in self.spec.get("initContainers", [])
                if c["name"] in self.containers]

    def mains(self) -> list[LocalContainer]:
        return [self.containers[c["name"]] for c in self.spec["containers"]
                if c["name"] in self.containers]

    def container(self, name: str | None = None) -> LocalContainer:
        """The named container, or the first main one (as `kubectl exec` picks)."""
        return self.containers[name] if name else self.mains()[0]

    def local_path(self, container: str, path: str) -> str:
        """A path inside the container -> the folder of the volume mounted there."""
        for mount_path, folder in sorted(self.mounts[container].items(),
                                         key=lambda item: -len(item[0])):
            if path == mount_path or path.startswith(mount_path + "/"):
                return str(folder) + path[len(mount_path):]
        return path


class LocalCluster:
    """The objects of one rendered overlay, with `secrets` (name -> {key: value}) given."""

    def __init__(self, objects: list[Obj], root: Path,
                 secrets: Mapping[str, Mapping[str, str]]) -> None:
        self.objects = objects
        self.root = root
        self.secrets = {name: dict(values) for name, values in secrets.items()}
        self.pods: dict[str, LocalPod] = {}
        self._next_index: dict[str, int] = {}

    # --- kubectl's verbs ----------------------------------------------------------------------

    def apply(self) -> None:
        """Every workload at its replica count, all at once (addresses first, so that every
        pod can resolve every Service)."""
        created = [self._create_pod(name) for name, workload in workloads(self.objects).items()
                   for _ in range(int(workload["spec"].get("replicas", 1)))]
        for pod in created:
            self._start_pod(pod)

    def scale(self, workload: str, replicas: int) -> None:
        """Stop the newest pods beyond `replicas`, or start new ones and wait until ready."""
        current = self.pods_of(workload)
        for pod in reversed(current[replicas:]):
            self.stop_pod(pod)
        added = [self._create_pod(workload) for _ in range(replicas - len(current))]
        for pod in added:
            self._start_pod(pod)
            self.wait_ready(pod)

    def rollout_status(self, workload: str) -> None:
        for pod in self.pods_of(workload):
            self.wait_ready(pod)

    def pods_of(self, workload: str) -> list[LocalPod]:
        return [pod for pod in self.pods.values() if pod.workload["metadata"]["name"] == workload]

    def pod(self, reference: str) -> LocalPod:
        """`queue-0`, or `deployment/runner` (its first pod), as kubectl names pods."""
        kind, sep, name = reference.partition("/")
        if sep:
            kinds = {"deployment": "Deployment", "statefulset": "StatefulSet"}
            assert name in by_kind(self.objects, kinds[kind]), f"no {reference}"
            return self.pods_of(name)[0]
        return self.pods[reference]

    def service_port(self, service: str, port: int) -> int:
        """The local port behind `service`:`port` (what `kubectl port-forward svc/...` reaches)."""
        spec = by_kind(self.objects, "Service")[service]["spec"]
        matching = [entry for entry in spec["ports"] if entry["port"] == port]
        assert matching, f"service {service} has no port {port}"
        pods = [pod for pod in self.pods.values()
                if spec["selector"].items() <= pod.workload["spec"]["template"]["metadata"]
                ["labels"].items()]
        assert pods, f"service {service} selects no pod"
        pod = pods[0]
        target = matching[0]["targetPort"]
        if isinstance(target, str):
            target = next(p["containerPort"] for c in pod_containers(pod.workload)
                          for p in c.get("ports", []) if p.get("name") == target)
        return pod.ports[int(target)]

    def stop_pod(self, pod: LocalPod) -> dict[str, int]:
        """SIGTERM the containers, then the sidecars; their exit codes."""
        grace = float(pod.spec.get("terminationGracePeriodSeconds", 30))
        codes = _terminate(pod.mains(), grace)
        codes |= _terminate(list(reversed(pod.sidecars())), grace)
        del self.pods[pod.name]
        return codes

    def stop_all(self) -> None:
        for pod in list(self.pods.values()):
            self.stop_pod(pod)

    # --- pods ---------------------------------------------------------------------------------

    def _create_pod(self, workload_name: str) -> LocalPod:
        workload = workloads(self.objects)[workload_name]
        index = self._next_index.get(workload_name, 0)
        self._next_index[workload_name] = index + 1
        name = f"{workload_name}-{index}"
        ports = {int(port["containerPort"]): free_port() for container in pod_containers(workload)
                 for port in container.get("ports", [])}
        pod = LocalPod(name, workload, self.root / "pods" / name, ports)
        pod.root.mkdir(parents=True)
        volumes = self._volumes(pod)
        for spec in pod_containers(workload):
            pod.mounts[spec["name"]] = {mount["mountPath"]: volumes[mount["name"]]
                                        for mount in spec.get("volumeMounts", [])}
        self.pods[name] = pod
        return pod

    def _volumes(self, pod: LocalPod) -> dict[str, Path]:
        folders: dict[str, Path] = {}
        for template in pod.workload["spec"].get("volumeClaimTemplates", []):
            claim = template["metadata"]["name"]
            folders[claim] = self.root / "claims" / f"{claim}-{pod.name}"
        for volume in pod.spec.get("volumes", []):
            if "emptyDir" in volume:
                folders[volume["name"]] = pod.root / "volumes" / volume["name"]
            elif "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                folders[volume["name"]] = self.root / "claims" / claim
            elif "secret" in volume:
                secret = volume["secret"]["secretName"]
                folders[volume["name"]] = folder = self.root / "secrets" / secret
                folder.mkdir(parents=True, exist_ok=True)
                for key, value in self.secrets[secret].items():
                    (folder / key).write_text(value, encoding="utf-8")
            else:
                raise AssertionError(f"{pod.name}: volume {volume['name']} of an unknown kind")
        for folder in folders.values():
            folder.mkdir(parents=True, exist_ok=True)
        return folders

    def _container(self, pod: LocalPod, spec: Obj) -> LocalContainer:
        entrypoint = spec.get("command") or image_entrypoint()
        args = [self.translate(pod, spec, str(arg)) for arg in spec.get("args", [])]
        env = {k: v for k, v in os.environ.items() if not k.startswith("STABLENEW_")}
        env |= {k: self.translate(pod, spec, v) for k, v in self.environment(pod, spec).items()}
        workdir = image_workdir()
        container = LocalContainer(spec, env, local_program([*entrypoint, *args]),
                                   pod.root, pod.root / f"{spec['name']}.log")
        if workdir in pod.mounts[spec["name"]]:
            container.cwd = Path(pod.local_path(spec["name"], workdir))
        return container

    def environment(self, pod: LocalPod, spec: Mapping[str, Any]) -> dict[str, str]:
        """The container's variables as the kubelet sets them (before moving to loopback)."""
        env = image_environment()
        configmaps = by_kind(self.objects, "ConfigMap")
        for source in spec.get("envFrom", []):
            env |= configmaps[source["configMapRef"]["name"]]["data"]
        for entry in spec.get("env", []):
            value = self._value(pod, entry)
            env[entry["name"]] = REFERENCE.sub(lambda m: env.get(m.group(1), m.group(0)), value)
        return env

    def _value(self, pod: LocalPod, entry: Mapping[str, Any]) -> str:
        source = entry.get("valueFrom")
        if source is None:
            return str(entry.get("value", ""))
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            return self.secrets[ref["name"]][ref["key"]]
        fields = {"status.podIP": POD_IP, "metadata.name": pod.name}
        return fields[source["fieldRef"]["fieldPath"]]

    def translate(self, pod: LocalPod, spec: Mapping[str, Any], value: str) -> str:
        """A value as the container sees it -> the same thing on this machine."""
        if "://" in value:
            parts = urlsplit(value)
            return parts._replace(netloc=self._address(pod, parts.netloc)).geturl()
        try:
            parse_address(value, "value")
        except ConfigError:
            return pod.local_path(spec["name"], value) if value.startswith("/") else value
        return self._address(pod, value)

    def _address(self, pod: LocalPod, address: str) -> str:
        host, port = parse_address(address, "address")
        if host in (*LISTEN_HOSTS, "localhost"):
            # A shared setting may name a port of another pod (the queue is given the runner's
            # WebUI URL too): unused there, and left as it is.
            local_host = "localhost" if host == "localhost" else "127.0.0.1"
            return f"{local_host}:{pod.ports[port]}" if port in pod.ports else address
        assert host in by_kind(self.objects, "Service"), f"{pod.name}: nothing is called {host}"
        return f"localhost:{self.service_port(host, port)}"

    def _start_pod(self, pod: LocalPod) -> None:
        for spec in pod_containers(pod.workload):
            pod.containers[spec["name"]] = self._container(pod, spec)
        for sidecar in pod.sidecars():
            assert is_sidecar(sidecar.spec), "init containers that run to completion: none here"
            sidecar.start()
            if "startupProbe" in sidecar.spec:
                self.wait_probe(pod, sidecar, "startupProbe")
        for container in pod.mains():
            container.start()

    def wait_ready(self, pod: LocalPod) -> None:
        for container in pod.mains():
            for kind in ("startupProbe", "readinessProbe"):
                if kind in container.spec:
                    self.wait_probe(pod, container, kind)

    def wait_probe(self, pod: LocalPod, container: LocalContainer, kind: str) -> None:
        def passed() -> bool:
            assert container.running(), (f"{pod.name}/{container.name} exited "
                                         f"{container.process and container.process.returncode}"
                                         f":\n{container.output()}")
            return self.probe(pod, container, container.spec[kind])

        wait_for(passed, f"{kind} of {pod.name}/{container.name}", PROBE_TIMEOUT_SECONDS, 0.2)

    def probe(self, pod: LocalPod, container: LocalContainer, probe: Mapping[str, Any]) -> bool:
        if "grpc" in probe:
            return _grpc_serving(pod.ports[probe["grpc"]["port"]], probe["grpc"].get("service", ""))
        if "tcpSocket" in probe:
            return _accepts(pod.ports[probe["tcpSocket"]["port"]])
        if "httpGet" in probe:
            return _http_ok(pod.ports[probe["httpGet"]["port"]], probe["httpGet"]["path"])
        command = [self.translate(pod, container.spec, str(part))
                   for part in probe["exec"]["command"]]
        done = subprocess.run(local_program(command), env=container.env, cwd=container.cwd,
                              capture_output=True, timeout=probe.get("timeoutSeconds", 1) + 20,
                              check=False)
        return done.returncode == 0

    def exec(self, reference: str, argv: list[str], stdin: bytes = b"") -> bytes:
        """`kubectl exec -i POD -- ARGV`: the command in the container's environment."""
        pod = self.pod(reference)
        container = pod.container()
        command = [self.translate(pod, container.spec, part) for part in argv]
        done = subprocess.run(local_program(command), env=container.env, cwd=container.cwd,
                              input=stdin, capture_output=True, timeout=60, check=False)
        assert done.returncode == 0, f"{argv} in {pod.name}: {done.stderr.decode()}"
        return done.stdout

    def copy_in(self, source: Path, reference: str, path: str) -> None:
        """`kubectl cp SOURCE POD:PATH`."""
        pod = self.pod(reference)
        target = Path(pod.local_path(pod.container().name, path))
        if path.endswith("/"):
            target.mkdir(parents=True, exist_ok=True)
            target = target / source.name
        shutil.copy(source, target)

    def logs(self) -> Iterator[str]:
        for pod in self.pods.values():
            for container in pod.containers.values():
                yield f"--- {pod.name}/{container.name}\n{container.output()}"


def _terminate(containers: list[LocalContainer], grace: float) -> dict[str, int]:
    for container in containers:
        if container.running() and container.process is not None:
            container.process.send_signal(signal.SIGTERM)
    codes: dict[str, int] = {}
    for container in containers:
        if container.process is None:
            continue
        try:
            codes[container.name] = container.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            container.process.kill()
            codes[container.name] = container.process.wait(timeout=10)
    return codes


def _grpc_serving(port: int, service: str) -> bool:
    # The kubelet's gRPC probe: plaintext, no credentials.
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=1)
        except grpc.RpcError:
            return False
    return bool(reply.status == SERVING)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _http_ok(port: int, path: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as reply:
            return 200 <= int(reply.status) < 400
    except (urllib.error.URLError, OSError):
        return False

