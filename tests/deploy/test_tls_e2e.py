"""The TLS component, run: the emulator overlay with TLS, its pods as local processes, with a
certificate made as certificate.yaml asks cert-manager to make it. The exec probes pass, the
history follows the queue over TLS, and a workstation reaches the services through
port-forwards (localhost) trusting tls.crt; a plaintext client (the kubelet's gRPC probe) is
refused, which is why the component replaces those probes."""

from __future__ import annotations

import datetime as dt
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

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

pytestmark = pytest.mark.e2e

CERTIFICATE = KUBERNETES / "components" / "tls" / "certificate.yaml"
SERVICES = ("queue", "bundle", "history")


def issue(spec: Obj) -> dict[str, str]:
    """The Secret cert-manager writes for a self-signed Certificate `spec`."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, spec["commonName"])])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName(dns) for dns in spec["dnsNames"]]), critical=False)
        .add_extension(x509.BasicConstraints(ca=spec["isCA"], path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return {"tls.crt": pem, "tls.key": private, "ca.crt": pem}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    _issuer, certificate = load_yaml_documents(CERTIFICATE)
    objects = render_variant(Variant("emulator", tls=True), tmp_path_factory.mktemp("tree"))
    secrets = {TOKEN_SECRET: {"token": "tls-e2e-token"},
               certificate["spec"]["secretName"]: issue(certificate["spec"])}
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
    """What DEPLOY.md has a workstation set: port-forwards to localhost, the token, tls.crt."""
    certificate = scratch / "tls.crt"
    certificate.write_text(cluster.secrets[TLS_SECRET]["tls.crt"], encoding="utf-8")
    env = {"STABLENEW_TOKEN": cluster.secrets[TOKEN_SECRET]["token"],
           "STABLENEW_TLS_CERT": str(certificate)}
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
