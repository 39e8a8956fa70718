"""Failures come out as typed exceptions: by status code, by ErrorInfo reason, with the field
violations, the metadata and the request id; from real servers wherever a server can produce
them, and from the SDK itself for what it checks before a call."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stablenew.contract.errors import Code
from stablenew.sdk import (
    DeadlineExceededError,
    InternalError,
    InvalidArgumentError,
    JobNotFoundError,
    NotFoundError,
    ResourceExhaustedError,
    StableNewError,
    UnauthenticatedError,
    UnavailableError,
    UnimplementedError,
)
from stablenew.sdk.errors import error_class
from stablenew.v1 import queue_service_pb2
from tests.foundation.conftest import _write_self_signed
from tests.foundation.pending import pending_spec
from tests.pki import ca_signed_queue, new_authority, write_authority
from tests.queue.harness import QueueHarness
from tests.queue.processes import free_port
from tests.sdk.harness import Stack, connect, new_draft
from tests.service_harness import ServiceHarness


class PendingQueue(ServiceHarness):
    """A server whose QueueService answers every call UNIMPLEMENTED."""

    service = "queue"

    def build(self, settings: Any, env: Any) -> Any:
        return pending_spec("queue", queue_service_pb2.DESCRIPTOR.services_by_name[
            "QueueService"], "the SDK's error tests")

    def connect(self, channel: Any) -> None:
        """No stub: the SDK is the client."""


@pytest.fixture(scope="module")
def token_queue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QueueHarness]:
    harness = QueueHarness(tmp_path_factory.mktemp("token-queue"),
                           {"STABLENEW_TOKEN": "sdk-secret"})
    with harness.running():
        yield harness


@pytest.fixture(scope="module")
def tls_queue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[QueueHarness, Path]]:
    certificate, key = _write_self_signed(tmp_path_factory.mktemp("tls"))
    harness = QueueHarness(tmp_path_factory.mktemp("tls-queue"),
                           {"STABLENEW_TLS_CERT": str(certificate),
                            "STABLENEW_TLS_KEY": str(key)})
    with harness.running():
        yield harness, certificate


@pytest.fixture(scope="module")
def ca_queue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[QueueHarness, Path]]:
    """A queue serving a certificate a CA signed, and the CA's certificate file."""
    with ca_signed_queue(tmp_path_factory.mktemp("ca")) as running:
        yield running


@pytest.fixture
def silent_server() -> Iterator[str]:
    """An address that accepts TCP connections and never speaks: calls hang until their
    deadline."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield f"127.0.0.1:{listener.getsockname()[1]}"


def test_a_reason_picks_the_subclass_of_its_code() -> None:
    assert error_class(Code.NOT_FOUND, "JOB_NOT_FOUND") is JobNotFoundError
    assert error_class(Code.NOT_FOUND, "A_NEWER_REASON") is NotFoundError
    # A reason under another code than its own: the code decides.
    assert error_class(Code.INTERNAL, "JOB_NOT_FOUND") is InternalError
    assert error_class(Code.UNKNOWN, "") is InternalError
    assert error_class(Code.ABORTED, "") is StableNewError


def test_a_not_found_carries_reason_metadata_and_request_id(client: Any) -> None:
    with pytest.raises(JobNotFoundError) as caught:
        client.queue.get("no-such-job")
    error = caught.value
    assert (error.code, error.reason) == (Code.NOT_FOUND, "JOB_NOT_FOUND")
    assert "no-such-job" in error.message
    assert len(error.request_id) == 32
    assert "NOT_FOUND JOB_NOT_FOUND" in str(error)


def test_a_bad_field_names_it(client: Any) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        list(client.drafts.list(page_size=-1))
    assert caught.value.violations[0].field == "page_size"
    with pytest.raises(InvalidArgumentError) as caught:
        client.queue.get("")
    assert [v.field for v in caught.value.violations] == ["job_id"]
    assert caught.value.request_id  # it came from the server


def test_an_unreachable_service_is_unavailable(kind: str) -> None:
    address = f"127.0.0.1:{free_port()}"
    with connect(kind, queue_address=address) as client, \
            pytest.raises(UnavailableError) as caught:
        client.queue.state()
    assert (caught.value.code, caught.value.reason) == (Code.UNAVAILABLE, "")
    assert (caught.value.service, caught.value.address) == ("queue", address)


def test_a_stream_to_an_unreachable_service_names_it(kind: str) -> None:
    address = f"127.0.0.1:{free_port()}"
    with connect(kind, history_address=address) as client, \
            pytest.raises(UnavailableError) as caught:
        list(client.history.watch())
    assert (caught.value.service, caught.value.address) == ("history", address)


def test_a_silent_server_is_a_deadline_exceeded(kind: str, silent_server: str) -> None:
    with connect(kind, queue_address=silent_server, timeout=0.3) as client, \
            pytest.raises(DeadlineExceededError) as caught:
        client.queue.state()
    assert isinstance(caught.value, UnavailableError)
    assert caught.value.code == Code.DEADLINE_EXCEEDED


def test_the_token_is_sent_as_a_bearer(kind: str, token_queue: QueueHarness) -> None:
    with connect(kind, queue_address=token_queue.address) as client, \
            pytest.raises(UnauthenticatedError) as caught:
        client.queue.state()
    assert caught.value.reason == "UNAUTHENTICATED"
    assert str(caught.value).startswith("UNAUTHENTICATED: missing or wrong bearer token")
    with connect(kind, queue_address=token_queue.address, token="sdk-secret") as client:
        assert client.queue.state().paused is False
    env = {"STABLENEW_TOKEN": "sdk-secret", "STABLENEW_QUEUE_ADDR": token_queue.address}
    with connect(kind, env=env) as client:
        assert client.queue.state().paused is False


def test_tls_with_the_trusted_certificate(kind: str,
                                          tls_queue: tuple[QueueHarness, Path]) -> None:
    queue, certificate = tls_queue
    with connect(kind, queue_address=queue.address, tls_ca=certificate) as client:
        assert client.queue.state().paused is False
    with connect(kind, queue_address=queue.address) as client, \
            pytest.raises(UnavailableError):
        client.queue.state()


def test_tls_through_the_ca_that_signed_the_server(kind: str, tmp_path: Path,
                                                   ca_queue: tuple[QueueHarness, Path]) -> None:
    queue, ca = ca_queue
    address = queue.address.replace("127.0.0.1", "localhost")
    with connect(kind, queue_address=address, env={"STABLENEW_TLS_CA": str(ca)}) as client:
        assert client.queue.state().paused is False
    other = write_authority(tmp_path, new_authority("another-ca"))
    with connect(kind, queue_address=address, tls_ca=other) as client, \
            pytest.raises(UnavailableError) as caught:
        client.queue.state()
    assert (caught.value.service, caught.value.address) == ("queue", address)
    assert "handshake" in caught.value.message.lower()


def test_a_message_over_the_limit_is_resource_exhausted(kind: str, stack: Stack) -> None:
    with connect("sync", bundle_address=stack.bundle.address) as unlimited:
        draft = new_draft(unlimited)
    limited = connect(kind, bundle_address=stack.bundle.address,
                      env={"STABLENEW_MAX_MESSAGE_BYTES": "200"})
    with limited as client, pytest.raises(ResourceExhaustedError) as caught:
        client.drafts.get(draft.draft_id)
    assert caught.value.reason == ""


def test_an_unimplemented_call(kind: str, tmp_path: Path) -> None:
    pending = PendingQueue({"STABLENEW_QUEUE_ADDR": "127.0.0.1:0",
                            "STABLENEW_DATA_DIR": str(tmp_path)})
    with pending.running(), connect(kind, queue_address=pending.address) as client, \
            pytest.raises(UnimplementedError) as caught:
        client.queue.state()
    assert caught.value.reason == "NOT_IMPLEMENTED"
