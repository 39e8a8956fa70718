"""A structured fuzz of every RPC of the four services: requests drawn from each method's
input descriptor (tests/fuzz/message_strategies.py) sent to running servers, the answers
counted per status code. INTERNAL and UNKNOWN are the findings: no input may reach them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings

from stablenew.v1 import (
    bundle_service_pb2,
    history_service_pb2,
    queue_service_pb2,
    runner_service_pb2,
)
from tests.fuzz.message_strategies import message_strategy

SERVICES: Mapping[str, ServiceDescriptor] = {
    "bundle": bundle_service_pb2.DESCRIPTOR.services_by_name["BundleService"],
    "queue": queue_service_pb2.DESCRIPTOR.services_by_name["QueueService"],
    "runner": runner_service_pb2.DESCRIPTOR.services_by_name["RunnerService"],
    "history": history_service_pb2.DESCRIPTOR.services_by_name["HistoryService"],
}
FINDINGS = frozenset({grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN})
CALL_SECONDS = 5.0
STREAM_MESSAGES = 3


@dataclass
class RpcReport:
    """What one RPC answered: a count per status code, and the first requests that found
    something (INTERNAL or UNKNOWN) with the message the server gave."""

    method: str
    codes: Counter[str] = field(default_factory=Counter)
    findings: list[tuple[str, str]] = field(default_factory=list)

    def record(self, code: grpc.StatusCode, request: Message, details: str) -> None:
        self.codes[code.name] += 1
        if code in FINDINGS and len(self.findings) < 3:
            self.findings.append((_short(request), details))


def _short(request: Message, limit: int = 300) -> str:
    text = str(request).replace("\n", " ")
    return text if len(text) <= limit else f"{text[:limit]}..."


def _call(channel: grpc.Channel, method: MethodDescriptor, request: Message) -> grpc.StatusCode:
    """Send one request; the status code it ends with (OK for a stream that keeps going)."""
    path = f"/{method.containing_service.full_name}/{method.name}"
    if method.server_streaming:
        stream: Any = channel.unary_stream(path, request_serializer=_serialize,
                                           response_deserializer=bytes)(
            request, timeout=CALL_SECONDS)
        for count, _ in enumerate(stream, 1):
            if count >= STREAM_MESSAGES:
                stream.cancel()
                break
        return grpc.StatusCode.OK
    channel.unary_unary(path, request_serializer=_serialize, response_deserializer=bytes)(
        request, timeout=CALL_SECONDS)
    return grpc.StatusCode.OK


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


def fuzz_method(channel: grpc.Channel, method: MethodDescriptor, examples: int,
                seed: int = 0) -> RpcReport:
    """`examples` drawn requests to one method."""
    report = RpcReport(f"{method.containing_service.name}.{method.name}")

    @settings(max_examples=examples, database=None, deadline=None, derandomize=seed == 0,
              suppress_health_check=list(HealthCheck))
    @given(message_strategy(method.input_type))
    def send(request: Message) -> None:
        try:
            code, details = _call(channel, method, request), ""
        except grpc.RpcError as error:
            call: Any = error
            code, details = call.code(), call.details() or ""
        report.record(code, request, details)

    send()
    return report


def fuzz_services(addresses: Mapping[str, str], examples: int) -> Iterator[RpcReport]:
    """Every RPC of every service at `addresses` (service name -> host:port)."""
    for service, address in addresses.items():
        with grpc.insecure_channel(address) as channel:
            for method in SERVICES[service].methods:
                yield fuzz_method(channel, method, examples)


def histogram(reports: list[RpcReport]) -> Counter[str]:
    total: Counter[str] = Counter()
    for report in reports:
        total.update(report.codes)
    return total
