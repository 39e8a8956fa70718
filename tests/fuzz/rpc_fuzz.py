"""A structured fuzz of every RPC of the four services: requests drawn from each method's
input descriptor (tests/fuzz/message_strategies.py) sent to running servers, the answers
counted per status code. INTERNAL and UNKNOWN are the findings: no input may reach them.

Hypothesis draws the requests one after the other, but they are sent through a small pool of
concurrent calls: long-polls and streams (LeaseJob, WatchJobs, WatchHistory) wait out their
deadline when nothing happens, and a sequential run would spend most of its time waiting."""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
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
# A call that is still waiting after this (a long-poll, a stream with nothing to send) ends
# DEADLINE_EXCEEDED on the client's side; that is counted, not a finding.
CALL_SECONDS = 2.0
STREAM_MESSAGES = 3
CONCURRENT_CALLS = 8


@dataclass
class RpcReport:
    """What one RPC answered: a count per status code, and the first requests that found
    something (INTERNAL or UNKNOWN) with the message the server gave."""

    method: str
    codes: Counter[str] = field(default_factory=Counter)
    findings: list[tuple[str, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, code: grpc.StatusCode, request: Message, details: str) -> None:
        with self._lock:
            self.codes[code.name] += 1
            if code in FINDINGS and len(self.findings) < 3:
                self.findings.append((_short(request), details[:300]))

    @property
    def found(self) -> int:
        """How many calls ended INTERNAL or UNKNOWN."""
        return sum(self.codes[code.name] for code in FINDINGS)


_RUN = re.compile(r"(.)\1{19,}")


def _short(request: Message, limit: int = 300) -> str:
    """The request on one line, a long run of one character written as `x*5000`."""
    text = _RUN.sub(lambda run: f"{run.group(1)}*{len(run.group(0))}",
                    str(request).replace("\n", " "))
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


def _answer(channel: grpc.Channel, method: MethodDescriptor,
            request: Message) -> tuple[grpc.StatusCode, str]:
    try:
        return _call(channel, method, request), ""
    except grpc.RpcError as error:
        call: Any = error
        return call.code(), call.details() or ""


class _Sender:
    """At most CONCURRENT_CALLS requests in flight (so drawn requests, some of them megabytes,
    are not queued up in memory)."""

    def __init__(self, pool: ThreadPoolExecutor) -> None:
        self.pool = pool
        self.slots = threading.Semaphore(CONCURRENT_CALLS)
        self.pending: list[Future[None]] = []

    def send(self, channel: grpc.Channel, method: MethodDescriptor, request: Message,
             report: RpcReport) -> None:
        self.slots.acquire()
        self.pending.append(self.pool.submit(self._send, channel, method, request, report))

    def _send(self, channel: grpc.Channel, method: MethodDescriptor, request: Message,
              report: RpcReport) -> None:
        try:
            code, details = _answer(channel, method, request)
            report.record(code, request, details)
        finally:
            self.slots.release()

    def wait(self) -> None:
        """Until every request sent so far has its answer."""
        for future in self.pending:
            future.result()
        self.pending.clear()


def _draw_and_send(sender: _Sender, channel: grpc.Channel, method: MethodDescriptor,
                   examples: int, report: RpcReport) -> None:
    @settings(max_examples=examples, database=None, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(message_strategy(method.input_type))
    def send(request: Message) -> None:
        sender.send(channel, method, request, report)

    send()


def _streams_last(methods: Sequence[MethodDescriptor]) -> list[MethodDescriptor]:
    """The unary methods first: if the streams a fuzz opens exhaust a server, the other
    methods have been fuzzed on a server that still answers (the exhaustion is a finding of
    its own, seen in the streams' codes)."""
    return sorted(methods, key=lambda method: method.server_streaming)


def fuzz_services(addresses: Mapping[str, str], examples: int) -> Iterator[RpcReport]:
    """`examples` drawn requests to every RPC of every service at `addresses` (service name ->
    host:port); one report per RPC, in the order of the services and their methods."""
    with ThreadPoolExecutor(CONCURRENT_CALLS, thread_name_prefix="fuzz") as pool:
        sender = _Sender(pool)
        for service, address in addresses.items():
            with grpc.insecure_channel(address) as channel:
                methods = _streams_last(SERVICES[service].methods)
                reports = [RpcReport(f"{service}.{method.name}") for method in methods]
                for method, report in zip(methods, reports, strict=True):
                    _draw_and_send(sender, channel, method, examples, report)
                sender.wait()
                yield from reports


def describe_findings(reports: list[RpcReport]) -> str:
    """The RPCs with findings: their status counts and the first requests that found them."""
    lines = []
    for report in reports:
        if report.found:
            lines.append(f"{report.method}: {dict(report.codes)}")
            lines += [f"    request {request}\n      -> {details}"
                      for request, details in report.findings]
    return "\n".join(lines)


def histogram(reports: list[RpcReport]) -> Counter[str]:
    """The status codes of every call of every report, added up."""
    total: Counter[str] = Counter()
    for report in reports:
        total.update(report.codes)
    return total
