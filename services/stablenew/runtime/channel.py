"""Client channels to the services, configured like the servers: STABLENEW_*_ADDR, the bearer
token from STABLENEW_TOKEN, TLS when STABLENEW_TLS_CA or STABLENEW_TLS_CERT is set (the CA bundle
that signed the servers' certificates; without one, the certificate itself is the trusted root,
which fits a self-signed deployment)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import grpc

from stablenew.contract.endpoints import DEFAULT_MAX_MESSAGE_BYTES
from stablenew.runtime.settings import service_address, trusted_certificate


class _AddMetadata(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[type-arg]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[type-arg]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[type-arg]
    grpc.StreamStreamClientInterceptor,  # type: ignore[type-arg]
):
    """Adds fixed metadata (the bearer token) to every kind of call (reflection streams both
    ways); works on insecure channels too."""

    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self._metadata = metadata

    def _details(self, details: Any) -> Any:
        merged = tuple(details.metadata or ()) + self._metadata
        return details._replace(metadata=merged)

    def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any,
                              request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Callable[..., Any], details: Any,
                               request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Callable[..., Any], details: Any,
                               requests: Any) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation: Callable[..., Any], details: Any,
                                requests: Any) -> Any:
        return continuation(self._details(details), requests)


# Pings on a connection that carries a long, quiet stream (the history's watch of the queue's
# log): a peer that stopped answering (a hung process, a network path that drops packets) keeps
# the connection open, so without them the stream would wait forever. A ping every 5 s, and the
# connection dropped when any ping (a flow-control one too, which otherwise has 60 s) is not
# answered within 5 s; the servers accept pings this often (runtime.server.grpc_options).
KEEPALIVE_OPTIONS = [
    ("grpc.keepalive_time_ms", 5000),
    ("grpc.keepalive_timeout_ms", 5000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.http2.ping_timeout_ms", 5000),
]


def open_channel(
    service: str,
    address: str | None = None,
    env: Mapping[str, str] | None = None,
    keepalive: bool = False,
) -> grpc.Channel:
    """A channel to `service` ("queue", ...) with message limits matching the servers'; with
    `keepalive`, a silent peer is detected by pings (KEEPALIVE_OPTIONS)."""
    env = os.environ if env is None else env
    target = service_address(service, env, address)
    options = [
        ("grpc.max_send_message_length", DEFAULT_MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", DEFAULT_MAX_MESSAGE_BYTES),
        *(KEEPALIVE_OPTIONS if keepalive else []),
    ]
    certificate = trusted_certificate(env)
    if certificate:
        credentials = grpc.ssl_channel_credentials(root_certificates=certificate.read_bytes())
        channel = grpc.secure_channel(target, credentials, options)
    else:
        channel = grpc.insecure_channel(target, options)
    token = env.get("STABLENEW_TOKEN")
    if token:
        channel = grpc.intercept_channel(channel, _AddMetadata((("authorization",
                                                                  f"Bearer {token}"),)))
    return channel
