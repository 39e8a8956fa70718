"""Every RPC of every service answers UNIMPLEMENTED with reason NOT_IMPLEMENTED until it is built.

Served through pytest-grpc's fixtures, with the production request interceptor so the rich
status is produced exactly as in a real server.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor

from stablenew.contract.errors import Code
from stablenew.runtime.interceptors import REQUEST_ID_KEY, RequestContextInterceptor
from stablenew.runtime.rich_status import details_of
from stablenew.v1 import (
    bundle_service_pb2,
    history_service_pb2,
    queue_service_pb2,
    runner_service_pb2,
)
from tests.foundation.pending import pending_service

grpc_max_workers = 4

SERVICES: list[ServiceDescriptor] = [
    bundle_service_pb2.DESCRIPTOR.services_by_name["BundleService"],
    queue_service_pb2.DESCRIPTOR.services_by_name["QueueService"],
    runner_service_pb2.DESCRIPTOR.services_by_name["RunnerService"],
    history_service_pb2.DESCRIPTOR.services_by_name["HistoryService"],
]
METHODS: list[MethodDescriptor] = [m for service in SERVICES for m in service.methods]
STREAMING = [m for m in METHODS if m.server_streaming]


def missing_text(service: ServiceDescriptor) -> str:
    return f"the {service.name} work (test marker {service.name.lower()}-pending)"


class ContractStub:
    """Calls any RPC of the contract by its descriptor (the generated stubs, generalised)."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._channel = channel

    @staticmethod
    def path(method: MethodDescriptor) -> str:
        return f"/{method.containing_service.full_name}/{method.name}"

    @staticmethod
    def request(method: MethodDescriptor) -> Any:
        return message_factory.GetMessageClass(method.input_type)()

    def unary(self, method: MethodDescriptor,
              metadata: tuple[tuple[str, str], ...] = ()) -> tuple[Any, grpc.Call]:
        response_class = message_factory.GetMessageClass(method.output_type)
        call = self._channel.unary_unary(
            self.path(method),
            request_serializer=lambda message: message.SerializeToString(),
            response_deserializer=response_class.FromString,
        )
        response, state = call.with_call(self.request(method), timeout=10, metadata=metadata)
        return response, state

    def stream(self, method: MethodDescriptor,
               metadata: tuple[tuple[str, str], ...] = ()) -> list[Any]:
        response_class = message_factory.GetMessageClass(method.output_type)
        call = self._channel.unary_stream(
            self.path(method),
            request_serializer=lambda message: message.SerializeToString(),
            response_deserializer=response_class.FromString,
        )
        return list(call(self.request(method), timeout=10, metadata=metadata))

    def invoke(self, method: MethodDescriptor,
               metadata: tuple[tuple[str, str], ...] = ()) -> Any:
        if method.server_streaming:
            return self.stream(method, metadata)
        return self.unary(method, metadata)[0]


@pytest.fixture(scope="module")
def grpc_interceptors() -> list[grpc.ServerInterceptor[Any, Any]]:
    return [RequestContextInterceptor()]


@pytest.fixture(scope="module")
def grpc_servicer() -> tuple[grpc.GenericRpcHandler[Any, Any], ...]:
    return tuple(pending_service(service, missing_text(service)) for service in SERVICES)


@pytest.fixture(scope="module")
def grpc_add_to_server() -> Callable[[tuple[grpc.GenericRpcHandler[Any, Any], ...],
                                      grpc.Server], None]:
    def add(handlers: tuple[grpc.GenericRpcHandler[Any, Any], ...],
            server: grpc.Server) -> None:
        server.add_generic_rpc_handlers(handlers)

    return add


@pytest.fixture(scope="module")
def grpc_stub_cls() -> type[ContractStub]:
    return ContractStub


def test_the_contract_has_rpcs_of_both_shapes() -> None:
    # Guards the parametrisation below: if it were empty, nothing would be checked.
    assert {service.name for service in SERVICES} == {
        "BundleService", "QueueService", "RunnerService", "HistoryService"}
    assert len(METHODS) >= 4 * 4
    assert {m.name for m in STREAMING} >= {"WatchJobs", "ReadImage", "ExportHistory",
                                           "WatchHistory"}
    assert not any(m.client_streaming for m in METHODS)


@pytest.mark.parametrize(
    "method", METHODS, ids=[f"{m.containing_service.name}.{m.name}" for m in METHODS])
def test_every_rpc_is_unimplemented_with_a_reason(
    grpc_stub: ContractStub, method: MethodDescriptor
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        grpc_stub.invoke(method)
    details = details_of(caught.value)
    service = method.containing_service
    assert details.code == Code.UNIMPLEMENTED
    assert details.reason == "NOT_IMPLEMENTED"
    assert f"{service.name}.{method.name}" in details.message
    assert missing_text(service) in details.message
    assert not details.violations


@pytest.mark.parametrize(
    "method", STREAMING, ids=[f"{m.containing_service.name}.{m.name}" for m in STREAMING])
def test_streaming_rpcs_refuse_before_sending_anything(
    grpc_stub: ContractStub, grpc_channel: grpc.Channel, method: MethodDescriptor
) -> None:
    response_class = message_factory.GetMessageClass(method.output_type)
    call = grpc_channel.unary_stream(
        ContractStub.path(method),
        request_serializer=lambda message: message.SerializeToString(),
        response_deserializer=response_class.FromString,
    )
    responses = iter(call(ContractStub.request(method), timeout=10))
    with pytest.raises(grpc.RpcError) as caught:
        next(responses)
    assert details_of(caught.value).reason == "NOT_IMPLEMENTED"


def test_request_id_is_echoed_on_a_refused_call(grpc_stub: ContractStub) -> None:
    method = SERVICES[1].methods_by_name["GetJob"]
    with pytest.raises(grpc.RpcError) as caught:
        grpc_stub.unary(method, metadata=((REQUEST_ID_KEY, "pending-test-1"),))
    call: Any = caught.value
    assert (REQUEST_ID_KEY, "pending-test-1") in tuple(call.initial_metadata())


def test_unknown_method_is_plain_unimplemented(grpc_channel: grpc.Channel) -> None:
    call = grpc_channel.unary_unary("/stablenew.v1.QueueService/NoSuchMethod",
                                    request_serializer=None, response_deserializer=None)
    with pytest.raises(grpc.RpcError) as caught:
        call(b"", timeout=10)
    details = details_of(caught.value)
    assert details.code == Code.UNIMPLEMENTED
    assert details.reason == ""
