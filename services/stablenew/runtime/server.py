"""The server bootstrap every service uses: grpcio's threaded server with health, reflection,
auth, request logging, deliberate message limits, TLS, and graceful shutdown on SIGTERM."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from stablenew.runtime.interceptors import BearerTokenInterceptor, RequestContextInterceptor
from stablenew.runtime.settings import ServerSettings

log = logging.getLogger("stablenew.server")


class StartupError(RuntimeError):
    """The server could not start (the port is taken, say); the message says why."""


@dataclass
class ServiceSpec:
    """What a service plugs into the runtime."""

    name: str
    # Fully qualified proto service names, e.g. "stablenew.v1.QueueService".
    proto_services: Sequence[str]
    register: Callable[[grpc.Server], None]
    # Called once health says NOT_SERVING, before draining: end streams and long-polls so the
    # grace period is not spent waiting for calls that never end on their own.
    on_draining: Callable[[], None] = field(default=lambda: None)
    # Called after the server stopped taking calls: close databases, stop background threads.
    on_stop: Callable[[], None] = field(default=lambda: None)
    # Called once the server is SERVING, with the server: background work that decides the
    # service's health (server.health) starts here.
    on_started: Callable[[Server], None] = field(default=lambda _server: None)


def grpc_options(settings: ServerSettings) -> list[tuple[str, int]]:
    """Message limits set on purpose (a 10,000-job bundle passes 4 MB), no port sharing:
    without it a second server on a taken port would start silently; and the keepalive pings of
    runtime.channel accepted on a quiet stream (by default a server answers pings more often
    than every 5 minutes without data by closing the connection)."""
    return [
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.so_reuseport", 0),
        ("grpc.http2.min_ping_interval_without_data_ms", 1000),
    ]


class Server:
    """One service's gRPC server: start, report health, stop gracefully."""

    def __init__(self, settings: ServerSettings, spec: ServiceSpec) -> None:
        self.settings = settings
        self.spec = spec
        self.health = health.HealthServicer()
        # The first interceptor is the outermost: the request context also logs (and gives a
        # request id to) the calls that auth refuses.
        interceptors: list[grpc.ServerInterceptor[Any, Any]] = [RequestContextInterceptor()]
        if settings.token:
            interceptors.append(BearerTokenInterceptor(settings.token))
        self._server = grpc.server(
            futures.ThreadPoolExecutor(
                max_workers=settings.max_workers, thread_name_prefix=f"{spec.name}-rpc"
            ),
            interceptors=interceptors,
            options=grpc_options(settings),
            maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
        )
        self.port = 0

    def _bind(self) -> int:
        address = self.settings.address
        try:
            if self.settings.tls:
                credentials = grpc.ssl_server_credentials([self.settings.tls.read()])
                port = self._server.add_secure_port(address, credentials)
            else:
                port = self._server.add_insecure_port(address)
        except RuntimeError as error:
            raise StartupError(f"cannot listen on {address}: {error}") from None
        if port == 0:
            raise StartupError(f"cannot listen on {address}: the address is taken or invalid")
        return port

    def _set_health(self, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType) -> None:
        for name in ("", *self.spec.proto_services):
            self.health.set(name, status)

    def start(self) -> int:
        """Bind, start and report SERVING; returns the bound port (useful with port 0)."""
        self.spec.register(self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        reflection.enable_server_reflection(
            (*self.spec.proto_services, health.SERVICE_NAME, reflection.SERVICE_NAME),
            self._server,
        )
        self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        self.port = self._bind()
        self._server.start()
        self._set_health(health_pb2.HealthCheckResponse.SERVING)
        self.spec.on_started(self)
        log.info("serving %s", self.spec.name,
                 extra={"address": self.settings.address, "port": self.port,
                        "tls": self.settings.tls is not None,
                        "auth": self.settings.token is not None})
        return self.port

    def stop(self, grace: float | None = None) -> None:
        """NOT_SERVING first, so probes stop routing here, then drain calls within the grace."""
        grace = self.settings.grace_seconds if grace is None else grace
        self.health.enter_graceful_shutdown()
        self.spec.on_draining()
        self._server.stop(grace).wait()
        self.spec.on_stop()
        log.info("stopped %s", self.spec.name)


def serve_until_signal(server: Server) -> None:
    """Run in the foreground until SIGTERM or SIGINT, then stop gracefully."""
    stop_requested = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        stop_requested.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    server.start()
    stop_requested.wait()
    server.stop()
