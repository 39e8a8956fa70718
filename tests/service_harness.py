"""One service's real gRPC server in the test process, over one data directory: built by the
service's own `app.build` and started, stopped and restarted the way `stablenew serve` runs it.
The per-service harnesses (tests/<service>/harness.py) add their stubs and conveniences."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import ClassVar, Self, TypeVar

import grpc

from stablenew.contract.endpoints import DEFAULT_MAX_MESSAGE_BYTES
from stablenew.runtime.server import Server, ServiceSpec
from stablenew.runtime.settings import ServerSettings

T = TypeVar("T")

CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", DEFAULT_MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", DEFAULT_MAX_MESSAGE_BYTES),
]


def open_test_channel(address: str) -> grpc.Channel:
    """A plain loopback channel with the services' message size limit."""
    return grpc.insecure_channel(address, CHANNEL_OPTIONS)


def wait_for(probe: Callable[[], T | None], what: str, timeout: float = 30.0,
             interval: float = 0.02) -> T:
    """The first truthy value `probe` returns; AssertionError naming `what` after `timeout`
    (a bound that only catches a hang: on a healthy machine the wait is short)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class ServiceHarness:
    """Subclasses name the service, give `build` (the service's app.build) and make their
    stubs in `connect`."""

    service: ClassVar[str]
    stop_grace: ClassVar[float] = 0.5

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = dict(env)
        self.server: Server | None = None
        self.channel: grpc.Channel | None = None
        self.address = ""

    def build(self, settings: ServerSettings, env: Mapping[str, str]) -> ServiceSpec:
        raise NotImplementedError

    def connect(self, channel: grpc.Channel) -> None:
        raise NotImplementedError

    def start(self) -> Self:
        settings = ServerSettings.load(self.service, env=self.env)
        self.server = Server(settings, self.build(settings, self.env))
        self.address = f"127.0.0.1:{self.server.start()}"
        self.channel = open_test_channel(self.address)
        self.connect(self.channel)
        return self

    def stop(self, grace: float | None = None) -> None:
        if self.channel is not None:
            self.channel.close()
        if self.server is not None:
            self.server.stop(grace=self.stop_grace if grace is None else grace)
        self.server = self.channel = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @contextmanager
    def running(self) -> Iterator[Self]:
        """Started for the `with` block, stopped after it whatever happens."""
        self.start()
        try:
            yield self
        finally:
            self.stop()
