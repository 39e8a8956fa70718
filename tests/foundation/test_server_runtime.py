"""The common server runtime (stablenew.runtime.server.Server) on real loopback ports: health,
reflection, graceful shutdown, error statuses, request ids and message limits."""

from __future__ import annotations

import dataclasses
import json
import logging
import socket
import threading
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from stablenew.bundle import app as bundle_app
from stablenew.contract.errors import Code, ErrorReason, FieldViolation, ServiceError
from stablenew.history import app as history_app
from stablenew.queue import app as queue_app
from stablenew.runner import app as runner_app
from stablenew.runtime.channel import open_channel
from stablenew.runtime.interceptors import REQUEST_ID_KEY
from stablenew.runtime.json_logging import JsonFormatter
from stablenew.runtime.rich_status import details_of
from stablenew.runtime.server import Server, ServiceSpec, StartupError
from stablenew.runtime.settings import ServerSettings
from stablenew.v1 import (
    bundle_service_pb2,
    history_service_pb2,
    pipeline_pb2,
    queue_service_pb2,
    queue_service_pb2_grpc,
    runner_service_pb2,
)
from tests.foundation.pending import pending_service

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
FOUR_MB = 4 * 1024 * 1024

BUILDERS: dict[str, tuple[Callable[..., ServiceSpec], str]] = {
    "bundle": (bundle_app.build, "stablenew.v1.BundleService"),
    "queue": (queue_app.build, "stablenew.v1.QueueService"),
    "runner": (runner_app.build, "stablenew.v1.RunnerService"),
    "history": (history_app.build, "stablenew.v1.HistoryService"),
}
CONTRACTS: dict[str, Any] = {
    "bundle": bundle_service_pb2, "queue": queue_service_pb2,
    "runner": runner_service_pb2, "history": history_service_pb2,
}
QUEUE = queue_service_pb2.DESCRIPTOR.services_by_name["QueueService"]
PROBE = "stablenew.test.Probe"


def settings_for(service: str, data_dir: Path, **changes: Any) -> ServerSettings:
    settings = ServerSettings.load(service, env={}, address="127.0.0.1:0",
                                   data_dir=str(data_dir))
    return dataclasses.replace(settings, **changes)


# --- the four services as `stablenew serve` builds them -----------------------------------------


@pytest.fixture(scope="module")
def app_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    servers: dict[str, Server] = {}
    try:
        # The queue first: the others follow it (the history is SERVING once caught up).
        for name in ("queue", "bundle", "runner", "history"):
            build = BUILDERS[name][0]
            settings = settings_for(name, tmp_path_factory.mktemp(f"{name}-data"))
            env = {"STABLENEW_QUEUE_ADDR": f"127.0.0.1:{servers['queue'].port}"} if servers else {}
            server = Server(settings, build(settings, env))
            server.start()
            servers[name] = server
        yield servers
    finally:
        for server in servers.values():
            server.stop(grace=1)


@pytest.fixture(scope="module")
def app_channels(app_servers: dict[str, Server]) -> Iterator[dict[str, grpc.Channel]]:
    channels = {name: open_channel(name, f"127.0.0.1:{server.port}", env={})
                for name, server in app_servers.items()}
    yield channels
    for channel in channels.values():
        channel.close()


@pytest.mark.parametrize("service", BUILDERS)
def test_start_returns_the_bound_port(app_servers: dict[str, Server], service: str) -> None:
    assert app_servers[service].port > 0


@pytest.mark.parametrize("service", BUILDERS)
def test_health_is_serving_after_start(app_channels: dict[str, grpc.Channel],
                                       service: str) -> None:
    stub = health_pb2_grpc.HealthStub(app_channels[service])
    for name in ("", BUILDERS[service][1]):
        reply = stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=10)
        assert reply.status == SERVING, name


@pytest.mark.parametrize("service", BUILDERS)
def test_health_of_an_unknown_service_is_not_found(app_channels: dict[str, grpc.Channel],
                                                   service: str) -> None:
    stub = health_pb2_grpc.HealthStub(app_channels[service])
    with pytest.raises(grpc.RpcError) as caught:
        stub.Check(health_pb2.HealthCheckRequest(service="stablenew.v1.NoSuchService"),
                   timeout=10)
    assert details_of(caught.value).code == Code.NOT_FOUND


def reflect(channel: grpc.Channel,
            request: reflection_pb2.ServerReflectionRequest) -> Any:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    replies = list(stub.ServerReflectionInfo(iter([request]), timeout=10))
    assert len(replies) == 1
    return replies[0]


@pytest.mark.parametrize("service", BUILDERS)
def test_reflection_lists_the_service(app_channels: dict[str, grpc.Channel],
                                      service: str) -> None:
    reply = reflect(app_channels[service],
                    reflection_pb2.ServerReflectionRequest(list_services=""))
    names = {s.name for s in reply.list_services_response.service}
    assert BUILDERS[service][1] in names
    assert "grpc.health.v1.Health" in names
    assert "grpc.reflection.v1alpha.ServerReflection" in names


@pytest.mark.parametrize("service", BUILDERS)
def test_reflection_describes_every_rpc(app_channels: dict[str, grpc.Channel],
                                        service: str) -> None:
    full_name = BUILDERS[service][1]
    reply = reflect(app_channels[service],
                    reflection_pb2.ServerReflectionRequest(file_containing_symbol=full_name))
    assert not reply.HasField("error_response"), reply.error_response
    files = [descriptor_pb2.FileDescriptorProto.FromString(raw)
             for raw in reply.file_descriptor_response.file_descriptor_proto]
    package, _, short_name = full_name.rpartition(".")
    found = [s for f in files if f.package == package for s in f.service if s.name == short_name]
    assert len(found) == 1, [f.name for f in files]

    expected = CONTRACTS[service].DESCRIPTOR.services_by_name[short_name]
    assert [m.name for m in found[0].method] == [m.name for m in expected.methods]
    assert len(found[0].method) > 0
    for method in found[0].method:
        contract = expected.methods_by_name[method.name]
        assert method.server_streaming == contract.server_streaming
        assert method.input_type.lstrip(".") == contract.input_type.full_name


# --- a probe service of our own: errors, request ids, message limits ---------------------------


class NoSuchThingError(ServiceError):
    """A domain's own error type with an __init__ of its own, as services define them."""

    def __init__(self, name: str) -> None:
        super().__init__(Code.NOT_FOUND, ErrorReason.PACK_NOT_FOUND, f"no {name}",
                         metadata={"name": name})


class Probe:
    """Handlers that behave badly on purpose, registered through ServiceSpec.register."""

    def __init__(self) -> None:
        self.slow_started = threading.Event()
        self.slow_release = threading.Event()

    @staticmethod
    def echo(request: bytes, context: grpc.ServicerContext) -> bytes:
        return request

    @staticmethod
    def boom(request: bytes, context: grpc.ServicerContext) -> bytes:
        raise RuntimeError("secret detail 7f3a: the disk caught fire")

    @staticmethod
    def bad_input(request: bytes, context: grpc.ServicerContext) -> bytes:
        raise ServiceError(Code.INVALID_ARGUMENT, ErrorReason.INVALID_STAGE_PLAN,
            "entries[3].stage_plan: ADETAILER needs a generation stage before it",
            violations=[
                FieldViolation("entries[3].stage_plan", "ADETAILER needs a generation stage"),
                FieldViolation("entries[5].prompt", "must not be empty"),
            ],
            metadata={"entry_index": "3"},
        )

    @staticmethod
    def own_error(request: bytes, context: grpc.ServicerContext) -> bytes:
        raise NoSuchThingError("lighthouse")

    @staticmethod
    def huge_error(request: bytes, context: grpc.ServicerContext) -> bytes:
        huge_id = "j" * 20_000
        raise ServiceError(Code.NOT_FOUND, ErrorReason.JOB_NOT_FOUND, f"job {huge_id} not found",
                           violations=[FieldViolation("job_id", huge_id)] * 50,
                           metadata={"job_id": huge_id})

    @staticmethod
    def abort(request: bytes, context: grpc.ServicerContext) -> bytes:
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, "aborted on purpose")
        raise AssertionError("abort returned")

    @staticmethod
    def stream_boom(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        yield b"first"
        raise RuntimeError("secret detail 9c1d: stream broke")

    def slow(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self.slow_started.set()
        self.slow_release.wait(timeout=20)
        return b"finished"

    def handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        unary = grpc.unary_unary_rpc_method_handler
        return grpc.method_handlers_generic_handler(PROBE, {
            "Echo": unary(self.echo),
            "Boom": unary(self.boom),
            "BadInput": unary(self.bad_input),
            "Abort": unary(self.abort),
            "HugeError": unary(self.huge_error),
            "OwnError": unary(self.own_error),
            "Slow": unary(self.slow),
            "StreamBoom": grpc.unary_stream_rpc_method_handler(self.stream_boom),
        })


def probe_spec(probe: Probe, calls: list[str] | None = None,
               on_draining: Callable[[], None] | None = None) -> ServiceSpec:
    """The probe plus a pending QueueService, as one service would register them."""
    handlers = (probe.handler(), pending_service(QUEUE, "runtime tests"))
    record = calls if calls is not None else []
    return ServiceSpec(
        name="queue",
        proto_services=[QUEUE.full_name],
        register=lambda server: server.add_generic_rpc_handlers(handlers),
        on_draining=on_draining or (lambda: record.append("draining")),
        on_stop=lambda: record.append("stopped"),
    )


class CapturedLog(logging.Handler):
    """Formats records as the JSON log does, at emit time (when the request id is known)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter("queue"))
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture(scope="module")
def rpc_log() -> Iterator[CapturedLog]:
    handler = CapturedLog()
    logger = logging.getLogger("stablenew.rpc")
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(previous)


@pytest.fixture(scope="module")
def probe_server(tmp_path_factory: pytest.TempPathFactory,
                 rpc_log: CapturedLog) -> Iterator[Server]:
    server = Server(settings_for("queue", tmp_path_factory.mktemp("probe")), probe_spec(Probe()))
    server.start()
    yield server
    server.stop(grace=1)


@pytest.fixture(scope="module")
def probe_channel(probe_server: Server) -> Iterator[grpc.Channel]:
    with open_channel("queue", f"127.0.0.1:{probe_server.port}", env={}) as channel:
        yield channel


def unary(channel: grpc.Channel, method: str) -> grpc.UnaryUnaryMultiCallable[Any, Any]:
    """A probe method with raw bytes in and out."""
    return channel.unary_unary(f"/{PROBE}/{method}", request_serializer=None,
                               response_deserializer=None)


def health_now(server: Server, service: str = "") -> int:
    """The status the server's HealthServicer holds right now (no RPC needed)."""
    # Check only touches the context for an unknown service.
    reply = server.health.Check(health_pb2.HealthCheckRequest(service=service),
                                typing.cast(grpc.ServicerContext, None))
    status: int = reply.status
    return status


def test_request_id_sent_by_the_client_is_echoed(probe_channel: grpc.Channel) -> None:
    reply, call = unary(probe_channel, "Echo").with_call(
        b"hello", timeout=10, metadata=((REQUEST_ID_KEY, "client-chosen-42"),))
    assert reply == b"hello"
    assert (REQUEST_ID_KEY, "client-chosen-42") in tuple(call.initial_metadata())


def test_request_id_is_made_up_when_absent(probe_channel: grpc.Channel) -> None:
    _, first = unary(probe_channel, "Echo").with_call(b"", timeout=10)
    _, second = unary(probe_channel, "Echo").with_call(b"", timeout=10)
    ids = [dict(call.initial_metadata()).get(REQUEST_ID_KEY) for call in (first, second)]
    assert all(isinstance(value, str) and len(value) >= 16 for value in ids), ids
    assert ids[0] != ids[1]


def test_request_id_is_echoed_on_failure(probe_channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        unary(probe_channel, "BadInput")(b"", timeout=10,
                                         metadata=((REQUEST_ID_KEY, "failing-7"),))
    call: Any = caught.value
    assert (REQUEST_ID_KEY, "failing-7") in tuple(call.initial_metadata())


def test_unexpected_exception_is_internal_with_request_id(
    probe_channel: grpc.Channel, rpc_log: CapturedLog
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        unary(probe_channel, "Boom")(b"", timeout=10, metadata=((REQUEST_ID_KEY, "boom-1"),))
    details = details_of(caught.value)
    assert details.code == Code.INTERNAL
    assert "boom-1" in details.message
    assert "secret detail" not in details.message  # internals stay in the server log
    # ...where the promised details are, under that request id.
    logged = [line for line in rpc_log.lines if line.get("request_id") == "boom-1"]
    assert any("secret detail 7f3a" in line.get("exception", "") for line in logged), logged


def test_request_bytes_that_do_not_parse_are_invalid_argument(
    probe_channel: grpc.Channel, rpc_log: CapturedLog
) -> None:
    submit = probe_channel.unary_unary(f"/{QUEUE.full_name}/SubmitJob", request_serializer=None,
                                       response_deserializer=None)
    with pytest.raises(grpc.RpcError) as caught:
        submit(b"\xff\xff\xff", timeout=10, metadata=((REQUEST_ID_KEY, "garbage-1"),))
    details = details_of(caught.value)
    assert (details.code, details.reason) == (Code.INVALID_ARGUMENT, "INVALID_FIELD")
    assert "does not parse" in details.message
    call: Any = caught.value
    assert (REQUEST_ID_KEY, "garbage-1") in tuple(call.initial_metadata())
    logged = [line for line in rpc_log.lines if line.get("request_id") == "garbage-1"]
    assert [line.get("code") for line in logged] == ["INVALID_ARGUMENT"], logged


def test_a_domain_error_subclass_arrives_as_itself(probe_channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        unary(probe_channel, "OwnError")(b"", timeout=10)
    details = details_of(caught.value)
    assert (details.code, details.reason, details.message) == (
        Code.NOT_FOUND, "PACK_NOT_FOUND", "no lighthouse")
    assert details.metadata == {"name": "lighthouse"}


def test_an_error_echoing_a_huge_input_still_arrives_as_itself(
    probe_channel: grpc.Channel,
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        unary(probe_channel, "HugeError")(b"", timeout=10)
    details = details_of(caught.value)
    assert (details.code, details.reason) == (Code.NOT_FOUND, "JOB_NOT_FOUND")
    assert details.message.startswith("job jjj") and "20014 characters" in details.message
    assert details.metadata["job_id"].startswith("jjj")
    assert 0 < len(details.violations) <= 10


def test_a_stream_request_that_does_not_parse_is_invalid_argument(
    probe_channel: grpc.Channel,
) -> None:
    watch = probe_channel.unary_stream(f"/{QUEUE.full_name}/WatchJobs", request_serializer=None,
                                       response_deserializer=None)
    with pytest.raises(grpc.RpcError) as caught:
        list(watch(b"\x08", timeout=10))  # a varint field with its value cut off
    assert details_of(caught.value).code == Code.INVALID_ARGUMENT


def test_unexpected_exception_in_a_stream_is_internal(probe_channel: grpc.Channel) -> None:
    call = probe_channel.unary_stream(f"/{PROBE}/StreamBoom", request_serializer=None,
                                      response_deserializer=None)
    received: list[bytes] = []
    with pytest.raises(grpc.RpcError) as caught:
        received.extend(call(b"", timeout=10, metadata=((REQUEST_ID_KEY, "stream-boom-1"),)))
    assert received == [b"first"]
    details = details_of(caught.value)
    assert details.code == Code.INTERNAL
    assert "stream-boom-1" in details.message
    assert "secret detail" not in details.message


def test_service_error_with_field_violations(probe_channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        unary(probe_channel, "BadInput")(b"", timeout=10)
    details = details_of(caught.value)
    assert details.code == Code.INVALID_ARGUMENT
    assert details.reason == "INVALID_STAGE_PLAN"
    assert details.metadata == {"entry_index": "3"}
    assert details.message.startswith("entries[3].stage_plan")
    assert list(details.violations) == [
        FieldViolation("entries[3].stage_plan", "ADETAILER needs a generation stage"),
        FieldViolation("entries[5].prompt", "must not be empty"),
    ]


def test_handler_abort_keeps_its_status(probe_channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        unary(probe_channel, "Abort")(b"", timeout=10)
    details = details_of(caught.value)
    assert details.code == Code.FAILED_PRECONDITION
    assert details.message == "aborted on purpose"


def big_submit_request(entries: int) -> queue_service_pb2.SubmitJobRequest:
    entry = pipeline_pb2.NormalizedJob(
        prompt="a castle on a hill at dawn, intricate detail, volumetric light, " * 6,
        negative_prompt="blurry, lowres, watermark",
        stage_plan=[pipeline_pb2.STAGE_TYPE_TXT2IMG, pipeline_pb2.STAGE_TYPE_ADETAILER],
        seed=1234567890, model="v1-5-pruned-emaonly", sampler_name="DPM++ 2M",
        width=512, height=768, steps=30, cfg_scale=7.0,
        config_hash="ab" * 32,
    )
    request = queue_service_pb2.SubmitJobRequest(label="big bundle")
    for index in range(entries):
        added = request.entries.add()
        added.CopyFrom(entry)
        added.index = index
    return request


@pytest.fixture(scope="module")
def ten_thousand_jobs() -> queue_service_pb2.SubmitJobRequest:
    request = big_submit_request(10_000)
    assert request.ByteSize() > FOUR_MB
    return request


def test_a_bundle_over_4mb_reaches_the_handler(
    probe_channel: grpc.Channel, ten_thousand_jobs: queue_service_pb2.SubmitJobRequest
) -> None:
    stub = queue_service_pb2_grpc.QueueServiceStub(probe_channel)
    with pytest.raises(grpc.RpcError) as caught:
        stub.SubmitJob(ten_thousand_jobs, timeout=30)
    details = details_of(caught.value)
    assert details.code == Code.UNIMPLEMENTED, details
    assert details.reason == "NOT_IMPLEMENTED"


def test_a_reply_over_4mb_reaches_the_client(probe_channel: grpc.Channel) -> None:
    payload = b"x" * (FOUR_MB + 1024)
    assert unary(probe_channel, "Echo")(payload, timeout=30) == payload


def test_a_plain_channel_would_refuse_that_reply(probe_server: Server) -> None:
    # The reason open_channel raises its limits: gRPC's default receive limit is 4 MB.
    with (grpc.insecure_channel(f"127.0.0.1:{probe_server.port}") as channel,
          pytest.raises(grpc.RpcError) as caught):
        unary(channel, "Echo")(b"x" * (FOUR_MB + 1024), timeout=30)
    assert details_of(caught.value).code == Code.RESOURCE_EXHAUSTED


LIMIT = 1_000_000


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    settings = settings_for("queue", tmp_path_factory.mktemp("limited"), max_message_bytes=LIMIT)
    server = Server(settings, probe_spec(Probe()))
    server.start()
    yield server
    server.stop(grace=1)


def test_a_request_over_the_configured_limit_is_refused(
    limited_server: Server, ten_thousand_jobs: queue_service_pb2.SubmitJobRequest
) -> None:
    with open_channel("queue", f"127.0.0.1:{limited_server.port}", env={}) as channel:
        stub = queue_service_pb2_grpc.QueueServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.SubmitJob(ten_thousand_jobs, timeout=30)
    assert details_of(caught.value).code == Code.RESOURCE_EXHAUSTED


def labelled_request(size: int) -> queue_service_pb2.SubmitJobRequest:
    """A request of exactly `size` serialized bytes (a label of the right length)."""
    request = queue_service_pb2.SubmitJobRequest(label="x" * size)
    request.label = "x" * (size - (request.ByteSize() - size))
    assert request.ByteSize() == size
    return request


@pytest.mark.parametrize(("size", "code"), [
    (LIMIT - 1, Code.UNIMPLEMENTED),
    (LIMIT, Code.UNIMPLEMENTED),
    (LIMIT + 1, Code.RESOURCE_EXHAUSTED),
])
def test_the_configured_limit_boundary(limited_server: Server, size: int,
                                       code: Code) -> None:
    with open_channel("queue", f"127.0.0.1:{limited_server.port}", env={}) as channel:
        stub = queue_service_pb2_grpc.QueueServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.SubmitJob(labelled_request(size), timeout=30)
    assert details_of(caught.value).code == code


# --- start and stop -----------------------------------------------------------------------------


def test_taken_port_is_a_startup_error(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        settings = dataclasses.replace(settings_for("queue", tmp_path),
                                       address=f"127.0.0.1:{port}")
        server = Server(settings, probe_spec(Probe()))
        with pytest.raises(StartupError, match=f"127.0.0.1:{port}"):
            server.start()


def test_stop_reports_not_serving_before_draining(tmp_path: Path) -> None:
    seen: dict[str, int] = {}
    calls: list[str] = []
    holder: list[Server] = []

    def on_draining() -> None:
        for name in ("", QUEUE.full_name):
            seen[name] = health_now(holder[0], name)
        calls.append("draining")

    server = Server(settings_for("queue", tmp_path), probe_spec(Probe(), calls, on_draining))
    holder.append(server)
    server.start()
    server.stop(grace=1)
    assert seen == {"": NOT_SERVING, QUEUE.full_name: NOT_SERVING}
    assert calls == ["draining", "stopped"]


def test_health_watch_sees_not_serving_during_stop(tmp_path: Path) -> None:
    server = Server(settings_for("queue", tmp_path), probe_spec(Probe()))
    server.start()
    stopper = threading.Thread(target=server.stop, kwargs={"grace": 10}, daemon=True)
    try:
        with open_channel("queue", f"127.0.0.1:{server.port}", env={}) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            watches = [stub.Watch(health_pb2.HealthCheckRequest(service=name), timeout=20)
                       for name in ("", QUEUE.full_name)]
            try:
                assert [next(w).status for w in watches] == [SERVING, SERVING]
                stopper.start()
                assert [next(w).status for w in watches] == [NOT_SERVING, NOT_SERVING]
            finally:
                for watch in watches:
                    watch.cancel()
    finally:
        if stopper.ident is None:  # failed before the stop began: stop here instead
            server.stop(grace=0)
        stopper.join(timeout=15)
    assert not stopper.is_alive()


def test_stop_lets_a_call_in_flight_finish(tmp_path: Path) -> None:
    probe = Probe()
    calls: list[str] = []
    draining = threading.Event()

    def on_draining() -> None:
        calls.append("draining")
        draining.set()

    server = Server(settings_for("queue", tmp_path), probe_spec(probe, calls, on_draining))
    server.start()
    with open_channel("queue", f"127.0.0.1:{server.port}", env={}) as channel:
        future = unary(channel, "Slow").future(b"", timeout=20)
        assert probe.slow_started.wait(timeout=10)
        stopper = threading.Thread(target=server.stop, kwargs={"grace": 15}, daemon=True)
        stopper.start()
        try:
            assert draining.wait(timeout=10)
            # Stop is waiting for the call: health says NOT_SERVING, on_stop has not run.
            assert health_now(server) == NOT_SERVING
            assert "stopped" not in calls
        finally:
            probe.slow_release.set()
        assert future.result(timeout=15) == b"finished"
        stopper.join(timeout=15)
    assert not stopper.is_alive()
    assert calls == ["draining", "stopped"]
