"""The TLS component, run: the emulator overlay with TLS, its pods as local processes, with
certificates made as certificate.yaml asks cert-manager to make them (a CA of the deployment's
own, and the services' and the runners' certificates it signs). The exec probes pass, the
history follows the queue over TLS trusting the CA, a workstation reaches the services through
port-forwards (localhost) trusting ca.crt, a client reaches a runner at the pod address it
advertises (no port-forward) by the runners' certificate name; a plaintext client (the
kubelet's gRPC probe) is refused, which is why the component replaces those probes."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from stablenew.sdk import Client
from tests.deploy.kustomize import Obj, load_yaml_documents
from tests.deploy.local_cluster import LocalCluster, cli
from tests.deploy.manifests import (
    KUBERNETES,
    TLS_SECRET,
    TOKEN_SECRET,
    Variant,
    by_kind,
    render_variant,
    workloads,
)
from tests.pki import Authority, certificate, key_pem, new_authority, new_key, pem_of
from tests.service_harness import wait_for

pytestmark = pytest.mark.e2e

CERTIFICATE = KUBERNETES / "components" / "tls" / "certificate.yaml"
SERVICES = ("queue", "bundle", "history")


def issue(spec: Obj, authority: Authority) -> dict[str, str]:
    """The Secret cert-manager's CA issuer writes for the Certificate `spec`."""
    key = new_key()
    signed = certificate(key, spec["commonName"], tuple(spec["dnsNames"]), authority)
    return {"tls.crt": pem_of(signed), "tls.key": key_pem(key), "ca.crt": authority.pem()}


def issued_secrets() -> dict[str, dict[str, str]]:
    """Every Secret certificate.yaml asks for, signed by one CA (the `stablenew-ca` Issuer)."""
    authority = new_authority()
    return {item["spec"]["secretName"]: issue(item["spec"], authority)
            for item in load_yaml_documents(CERTIFICATE)
            if item["kind"] == "Certificate" and not item["spec"].get("isCA")}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    objects = render_variant(Variant("emulator", tls=True), tmp_path_factory.mktemp("tree"))
    secrets = {TOKEN_SECRET: {"token": "tls-e2e-token"}} | issued_secrets()
    running = LocalCluster(objects, tmp_path_factory.mktemp("cluster"), secrets)
    try:
        running.apply()
        for name in workloads(objects):
            running.rollout_status(name)
        yield running
    except BaseException:
        print("\n".join(running.logs()))
        raise
    finally:
        running.stop_all()


def workstation(cluster: LocalCluster, scratch: Path) -> dict[str, str]:
    """What DEPLOY.md has a workstation set: port-forwards to localhost, the token, the CA and
    the runners' certificate name."""
    ca = scratch / "ca.crt"
    ca.write_text(cluster.secrets[TLS_SECRET]["ca.crt"], encoding="utf-8")
    env = {"STABLENEW_TOKEN": cluster.secrets[TOKEN_SECRET]["token"],
           "STABLENEW_TLS_CA": str(ca), "STABLENEW_RUNNER_TLS_NAME": "runner.stablenew.svc"}
    for name, service in by_kind(cluster.objects, "Service").items():
        port = service["spec"]["ports"][0]["port"]
        env[f"STABLENEW_{name.upper()}_ADDR"] = f"localhost:{cluster.service_port(name, port)}"
    return env


def test_a_workstation_reaches_every_service_over_tls(cluster: LocalCluster,
                                                      tmp_path: Path) -> None:
    done = subprocess.run([*cli(), "health", *SERVICES], env=workstation(cluster, tmp_path),
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("SERVING") == len(SERVICES)


@pytest.mark.parametrize("service", SERVICES)
def test_a_plaintext_probe_is_refused(cluster: LocalCluster, service: str) -> None:
    port = by_kind(cluster.objects, "Service")[service]["spec"]["ports"][0]["port"]
    address = f"127.0.0.1:{cluster.service_port(service, port)}"
    with grpc.insecure_channel(address) as channel, pytest.raises(grpc.RpcError) as refused:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*cli(), *args], env=env, capture_output=True, text=True, timeout=60,
                          check=False)


def test_a_runner_is_reached_over_tls_at_the_address_it_advertises(cluster: LocalCluster,
                                                                    tmp_path: Path) -> None:
    env = workstation(cluster, tmp_path)
    with Client(env=env) as client:
        runners = wait_for(client.queue.runners, "the runner to announce itself", 60)
    address = runners[0].info.address
    assert not address.startswith("localhost"), "the pod address, not a port-forward"
    status = run_cli("runner", "status", env=env | {"STABLENEW_RUNNER_ADDR": address})
    assert status.returncode == 0, status.stdout + status.stderr
    # Without the runners' certificate name, the pod address is checked, which it cannot carry.
    unnamed = {key: value for key, value in env.items() if key != "STABLENEW_RUNNER_TLS_NAME"}
    refused = run_cli("runner", "status", env=unnamed | {"STABLENEW_RUNNER_ADDR": address})
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert f"the TLS handshake with the runner service at {address} failed" in refused.stderr
