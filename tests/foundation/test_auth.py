"""Bearer-token auth: refused without the right token, health exempt, streams refused too.

First through pytest-grpc's fixtures with the production interceptors, then against a real
stablenew Server started with a token and reached through open_channel.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from stablenew.contract.errors import Code
from stablenew.runtime.channel import open_channel
from stablenew.runtime.interceptors import BearerTokenInterceptor, RequestContextInterceptor
from stablenew.runtime.rich_status import details_of
from stablenew.runtime.server import Server
from stablenew.runtime.settings import ServerSettings
from stablenew.v1 import queue_service_pb2, queue_service_pb2_grpc
from tests.foundation.pending import pending_service, pending_spec

grpc_max_workers = 4

TOKEN = "t0ken-for-tests"
QUEUE = queue_service_pb2.DESCRIPTOR.services_by_name["QueueService"]
Metadata = tuple[tuple[str, str], ...]

WRONG_CREDENTIALS: dict[str, Metadata] = {
    "none": (),
    "wrong-token": (("authorization", "Bearer not-the-token"),),
    "token-without-scheme": (("authorization", TOKEN),),
    "token-with-suffix": (("authorization", f"Bearer {TOKEN}x"),),
    "token-prefix": (("authorization", f"Bearer {TOKEN[:-1]}"),),
    "other-header": (("x-token", f"Bearer {TOKEN}"),),
}
RIGHT: Metadata = (("authorization", f"Bearer {TOKEN}"),)


def assert_unauthenticated(error: grpc.RpcError) -> None:
    details = details_of(error)
    assert details.code == Code.UNAUTHENTICATED, details
    assert details.reason == "UNAUTHENTICATED"
    assert "STABLENEW_TOKEN" in details.message


def assert_reached_handler(error: grpc.RpcError) -> None:
    details = details_of(error)
    assert details.code == Code.UNIMPLEMENTED, details
    assert details.reason == "NOT_IMPLEMENTED"


# --- pytest-grpc fixtures -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def grpc_interceptors() -> list[grpc.ServerInterceptor[Any, Any]]:
    # The order Server uses: auth first, so a refused call never reaches the rest.
    return [BearerTokenInterceptor(TOKEN), RequestContextInterceptor()]


@pytest.fixture(scope="module")
def grpc_servicer() -> tuple[grpc.GenericRpcHandler[Any, Any], health.HealthServicer]:
    checker = health.HealthServicer()
    checker.set("", health_pb2.HealthCheckResponse.SERVING)
    checker.set(QUEUE.full_name, health_pb2.HealthCheckResponse.SERVING)
    return pending_service(QUEUE, "auth tests"), checker


@pytest.fixture(scope="module")
def grpc_add_to_server() -> Callable[[Any, grpc.Server], None]:
    def add(servicer: tuple[grpc.GenericRpcHandler[Any, Any], health.HealthServicer],
            server: grpc.Server) -> None:
        handler, checker = servicer
        server.add_generic_rpc_handlers((handler,))
        health_pb2_grpc.add_HealthServicer_to_server(checker, server)

    return add


@pytest.fixture(scope="module")
def grpc_stub_cls() -> type[queue_service_pb2_grpc.QueueServiceStub]:
    return queue_service_pb2_grpc.QueueServiceStub


@pytest.mark.parametrize("metadata", WRONG_CREDENTIALS.values(), ids=WRONG_CREDENTIALS.keys())
def test_unary_without_the_right_token_is_refused(
    grpc_stub: queue_service_pb2_grpc.QueueServiceStub, metadata: Metadata
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        grpc_stub.GetJob(queue_service_pb2.GetJobRequest(job_id="j1"), timeout=10,
                         metadata=metadata)
    assert_unauthenticated(caught.value)


@pytest.mark.parametrize("metadata", WRONG_CREDENTIALS.values(), ids=WRONG_CREDENTIALS.keys())
def test_stream_without_the_right_token_is_refused(
    grpc_stub: queue_service_pb2_grpc.QueueServiceStub, metadata: Metadata
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        list(grpc_stub.WatchJobs(queue_service_pb2.WatchJobsRequest(), timeout=10,
                                 metadata=metadata))
    assert_unauthenticated(caught.value)


def test_unary_with_the_right_token_reaches_the_handler(
    grpc_stub: queue_service_pb2_grpc.QueueServiceStub
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        grpc_stub.GetJob(queue_service_pb2.GetJobRequest(job_id="j1"), timeout=10,
                         metadata=RIGHT)
    assert_reached_handler(caught.value)


def test_stream_with_the_right_token_reaches_the_handler(
    grpc_stub: queue_service_pb2_grpc.QueueServiceStub
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        list(grpc_stub.WatchJobs(queue_service_pb2.WatchJobsRequest(), timeout=10,
                                 metadata=RIGHT))
    assert_reached_handler(caught.value)


def test_open_channel_sends_the_token(grpc_addr: str, grpc_server: grpc.Server) -> None:
    with open_channel("queue", grpc_addr, env={"STABLENEW_TOKEN": TOKEN}) as channel:
        stub = queue_service_pb2_grpc.QueueServiceStub(channel)
        with pytest.raises(grpc.RpcError) as unary:
            stub.SubmitJob(queue_service_pb2.SubmitJobRequest(), timeout=10)
        with pytest.raises(grpc.RpcError) as stream:
            list(stub.WatchJobs(queue_service_pb2.WatchJobsRequest(), timeout=10))
    assert_reached_handler(unary.value)
    assert_reached_handler(stream.value)


def test_open_channel_without_token_is_refused(grpc_addr: str, grpc_server: grpc.Server) -> None:
    with open_channel("queue", grpc_addr, env={}) as channel:
        stub = queue_service_pb2_grpc.QueueServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.SubmitJob(queue_service_pb2.SubmitJobRequest(), timeout=10)
    assert_unauthenticated(caught.value)


def test_health_check_needs_no_token(grpc_channel: grpc.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(grpc_channel)
    for service in ("", QUEUE.full_name):
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_health_watch_needs_no_token(grpc_channel: grpc.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(grpc_channel)
    watch = stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=10)
    try:
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
    finally:
        watch.cancel()


# --- a real Server with a token ------------------------------------------------------------------


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    settings = ServerSettings.load(
        "queue", env={"STABLENEW_TOKEN": TOKEN}, address="127.0.0.1:0",
        data_dir=str(tmp_path_factory.mktemp("auth-data")))
    # A pending QueueService: every call that passes auth ends UNIMPLEMENTED at once.
    server = Server(settings, pending_spec("queue", QUEUE, "auth tests"))
    server.start()
    yield server
    server.stop(grace=0)


@pytest.fixture
def server_address(token_server: Server) -> str:
    return f"127.0.0.1:{token_server.port}"


def test_server_refuses_without_token(server_address: str) -> None:
    with open_channel("queue", server_address, env={}) as channel:
        stub = queue_service_pb2_grpc.QueueServiceStub(channel)
        with pytest.raises(grpc.RpcError) as unary:
            stub.GetJob(queue_service_pb2.GetJobRequest(job_id="j1"), timeout=10)
        with pytest.raises(grpc.RpcError) as stream:
            list(stub.WatchJobs(queue_service_pb2.WatchJobsRequest(), timeout=10))
    assert_unauthenticated(unary.value)
    assert_unauthenticated(stream.value)


def test_server_refuses_wrong_token(server_address: str) -> None:
    with open_channel("queue", server_address, env={"STABLENEW_TOKEN": "nope"}) as channel:
        stub = queue_service_pb2_grpc.QueueServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.GetJob(queue_service_pb2.GetJobRequest(job_id="j1"), timeout=10)
    assert_unauthenticated(caught.value)


def test_server_passes_the_right_token(server_address: str) -> None:
    with open_channel("queue", server_address, env={"STABLENEW_TOKEN": TOKEN}) as channel:
        stub = queue_service_pb2_grpc.QueueServiceStub(channel)
        with pytest.raises(grpc.RpcError) as unary:
            stub.GetJob(queue_service_pb2.GetJobRequest(job_id="j1"), timeout=10)
        with pytest.raises(grpc.RpcError) as stream:
            list(stub.WatchJobs(queue_service_pb2.WatchJobsRequest(), timeout=10))
    assert_reached_handler(unary.value)
    assert_reached_handler(stream.value)


def test_server_health_needs_no_token(server_address: str) -> None:
    with open_channel("queue", server_address, env={}) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", QUEUE.full_name):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


def _list_services(channel: grpc.Channel, metadata: Metadata = ()) -> list[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    requests = iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    replies = list(stub.ServerReflectionInfo(requests, timeout=10, metadata=metadata))
    return [s.name for s in replies[0].list_services_response.service]


def test_server_reflection_needs_the_token(server_address: str) -> None:
    with grpc.insecure_channel(server_address) as channel:
        with pytest.raises(grpc.RpcError) as caught:
            _list_services(channel)
        assert_unauthenticated(caught.value)
        assert QUEUE.full_name in _list_services(channel, RIGHT)


def test_open_channel_sends_the_token_on_bidi_streams(server_address: str) -> None:
    with open_channel("queue", server_address, env={"STABLENEW_TOKEN": TOKEN}) as channel:
        assert QUEUE.full_name in _list_services(channel)


def test_auth_exemption_is_only_for_health() -> None:
    # A method merely named like health in another service gets no exemption.
    interceptor = BearerTokenInterceptor(TOKEN)

    def behavior(request: Any, context: grpc.ServicerContext) -> str:
        return "ran"

    exempt = interceptor.wrap(behavior, "/grpc.health.v1.Health/Check", False)
    assert exempt is behavior
    guarded = interceptor.wrap(behavior, "/stablenew.v1.QueueService/Health", False)
    assert guarded is not behavior
