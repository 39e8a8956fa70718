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


def open_channel(
    service: str,
    address: str | None = None,
    env: Mapping[str, str] | None = None,
) -> grpc.Channel:
    """A channel to `service` ("queue", ...) with message limits matching the servers'."""
    env = os.environ if env is None else env
    target = service_address(service, env, address)
    options = [
        ("grpc.max_send_message_length", DEFAULT_MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", DEFAULT_MAX_MESSAGE_BYTES),
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
