"""TLS: a Server with a self-signed certificate, reached through open_channel."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from stablenew.contract.errors import Code
from stablenew.runtime.channel import open_channel
from stablenew.runtime.rich_status import details_of
from stablenew.runtime.server import Server
from stablenew.runtime.settings import ConfigError, ServerSettings, TlsFiles
from stablenew.v1 import queue_service_pb2, queue_service_pb2_grpc
from tests.foundation.pending import pending_spec
from tests.pki import Authority, new_authority, write_authority, write_server_files

QUEUE = queue_service_pb2.DESCRIPTOR.services_by_name["QueueService"]
SERVING = health_pb2.HealthCheckResponse.SERVING


@pytest.fixture(scope="module")
def tls_env(tls_pair: tuple[Path, Path]) -> dict[str, str]:
    cert, key = tls_pair
    return {"STABLENEW_TLS_CERT": str(cert), "STABLENEW_TLS_KEY": str(key)}


@pytest.fixture(scope="module")
def tls_server(tls_env: dict[str, str],
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    settings = ServerSettings.load("queue", env=tls_env, address="127.0.0.1:0",
                                   data_dir=str(tmp_path_factory.mktemp("tls-data")))
    assert isinstance(settings.tls, TlsFiles)
    server = Server(settings, pending_spec("queue", QUEUE, "tls tests"))
    server.start()
    yield server
    server.stop(grace=1)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_health_over_tls(tls_server: Server, tls_env: dict[str, str], host: str) -> None:
    with open_channel("queue", f"{host}:{tls_server.port}", env=tls_env) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert reply.status == SERVING


def test_rpc_over_tls_reaches_the_handler(tls_server: Server, tls_env: dict[str, str]) -> None:
    with open_channel("queue", f"127.0.0.1:{tls_server.port}", env=tls_env) as channel:
        stub = queue_service_pb2_grpc.QueueServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.GetJob(queue_service_pb2.GetJobRequest(job_id="j1"), timeout=10)
    assert details_of(caught.value).reason == "NOT_IMPLEMENTED"


def test_tls_and_token_together(tls_env: dict[str, str], tmp_path: Path) -> None:
    env = tls_env | {"STABLENEW_TOKEN": "tls-token"}
    settings = ServerSettings.load("queue", env=env, address="127.0.0.1:0",
                                   data_dir=str(tmp_path))
    server = Server(settings, pending_spec("queue", QUEUE, "tls tests"))
    server.start()
    try:
        address = f"127.0.0.1:{server.port}"
        with open_channel("queue", address, env=env) as channel:
            stub = queue_service_pb2_grpc.QueueServiceStub(channel)
            with pytest.raises(grpc.RpcError) as passed:
                stub.GetJob(queue_service_pb2.GetJobRequest(job_id="j1"), timeout=10)
        with open_channel("queue", address, env=tls_env) as channel:
            stub = queue_service_pb2_grpc.QueueServiceStub(channel)
            with pytest.raises(grpc.RpcError) as refused:
                stub.GetJob(queue_service_pb2.GetJobRequest(job_id="j1"), timeout=10)
    finally:
        server.stop(grace=1)
    assert details_of(passed.value).reason == "NOT_IMPLEMENTED"
    assert details_of(refused.value).reason == "UNAUTHENTICATED"


def test_client_needs_only_the_certificate(tls_server: Server,
                                           tls_pair: tuple[Path, Path]) -> None:
    env = {"STABLENEW_TLS_CERT": str(tls_pair[0])}
    with open_channel("queue", f"127.0.0.1:{tls_server.port}", env=env) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert reply.status == SERVING


def test_health_command_over_tls(tls_server: Server, tls_env: dict[str, str],
                                 run_cli: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    done = run_cli("health", "queue", "--json",
                   env=tls_env | {"STABLENEW_QUEUE_ADDR": f"127.0.0.1:{tls_server.port}"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["services"][0]["status"] == "SERVING"


def test_insecure_channel_fails(tls_server: Server) -> None:
    with (open_channel("queue", f"127.0.0.1:{tls_server.port}", env={}) as channel,
          pytest.raises(grpc.RpcError) as caught):
        health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert details_of(caught.value).code == Code.UNAVAILABLE


def test_untrusted_certificate_fails(
    tls_server: Server, tmp_path: Path, self_signed: Callable[[Path], tuple[Path, Path]]
) -> None:
    # A client trusting another certificate (same names, other key) must not connect.
    cert, key = self_signed(tmp_path)
    env = {"STABLENEW_TLS_CERT": str(cert), "STABLENEW_TLS_KEY": str(key)}
    with (open_channel("queue", f"127.0.0.1:{tls_server.port}", env=env) as channel,
          pytest.raises(grpc.RpcError) as caught):
        health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert details_of(caught.value).code == Code.UNAVAILABLE


def test_tls_settings_are_read_by_the_server(tls_server: Server,
                                             tls_pair: tuple[Path, Path]) -> None:
    assert tls_server.settings.tls == TlsFiles(cert=tls_pair[0], key=tls_pair[1])


# A CA and a server certificate it signs: what cert-manager's CA issuer gives each server.


@pytest.fixture(scope="module")
def authority() -> Authority:
    return new_authority()


@pytest.fixture(scope="module")
def ca_signed_server(tmp_path_factory: pytest.TempPathFactory,
                     authority: Authority) -> Iterator[tuple[Server, Path]]:
    """A server whose certificate the CA signed, and the CA's certificate file."""
    directory = tmp_path_factory.mktemp("ca")
    cert, key = write_server_files(directory, authority)
    settings = ServerSettings.load(
        "queue", env={"STABLENEW_TLS_CERT": str(cert), "STABLENEW_TLS_KEY": str(key)},
        address="127.0.0.1:0", data_dir=str(directory / "data"))
    server = Server(settings, pending_spec("queue", QUEUE, "tls tests"))
    server.start()
    yield server, write_authority(directory, authority)
    server.stop(grace=1)


def health_through(server: Server, env: dict[str, str]) -> int:
    with open_channel("queue", f"localhost:{server.port}", env=env) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=10)
    return int(reply.status)


def test_a_client_trusting_the_ca_reaches_a_server_it_signed(
        ca_signed_server: tuple[Server, Path]) -> None:
    server, ca = ca_signed_server
    assert health_through(server, {"STABLENEW_TLS_CA": str(ca)}) == SERVING


def test_the_ca_wins_over_the_containers_own_certificate(
        ca_signed_server: tuple[Server, Path], tls_pair: tuple[Path, Path]) -> None:
    # In a container a service has its own certificate and key, and dials the others through
    # the CA: STABLENEW_TLS_CA is what its channels trust, not STABLENEW_TLS_CERT.
    server, ca = ca_signed_server
    own_cert, own_key = tls_pair
    env = {"STABLENEW_TLS_CA": str(ca), "STABLENEW_TLS_CERT": str(own_cert),
           "STABLENEW_TLS_KEY": str(own_key)}
    assert health_through(server, env) == SERVING


def test_a_sibling_certificate_of_the_same_ca_is_not_a_root(
        ca_signed_server: tuple[Server, Path], authority: Authority, tmp_path: Path) -> None:
    # What clients did before STABLENEW_TLS_CA: trust their own STABLENEW_TLS_CERT. With a
    # certificate per pod, that is another certificate than the server's, from the same CA:
    # the handshake fails, which is why the CA bundle is a setting of its own.
    server, _ca = ca_signed_server
    own_cert, _own_key = write_server_files(tmp_path, authority)
    with pytest.raises(grpc.RpcError) as caught:
        health_through(server, {"STABLENEW_TLS_CERT": str(own_cert)})
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_another_ca_fails_the_handshake(ca_signed_server: tuple[Server, Path],
                                        tmp_path: Path) -> None:
    server, _ca = ca_signed_server
    other = write_authority(tmp_path, new_authority("another-ca"))
    with pytest.raises(grpc.RpcError) as caught:
        health_through(server, {"STABLENEW_TLS_CA": str(other)})
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "handshake" in (caught.value.details() or "").lower()


def test_an_unreadable_ca_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="STABLENEW_TLS_CA"):
        open_channel("queue", "localhost:1", env={"STABLENEW_TLS_CA": str(tmp_path / "none")})
