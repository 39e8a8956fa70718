"""Where the services are and how to reach them, read like the services read it.

The variable names and defaults are the deployment's (docs/API.md, "Configuration"):
`STABLENEW_<SERVICE>_ADDR` for each service's `host:port`, `STABLENEW_TOKEN` for the bearer token,
`STABLENEW_TLS_CA` for the CA bundle a client trusts (else `STABLENEW_TLS_CERT`, the servers'
certificate itself, as its own root in a self-signed deployment) and
`STABLENEW_MAX_MESSAGE_BYTES` for the message size limit, `STABLENEW_RUNNER_TLS_NAME` for the
name runners' certificates carry. Arguments win over variables, variables over the defaults.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from stablenew.contract.endpoints import (
    DEFAULT_ADDRESSES,
    DEFAULT_MAX_MESSAGE_BYTES,
    SERVICE_NAMES,
    TLS_TRUST_VARIABLES,
    address_variable,
)

_PEM_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"
_MAX_PORT = 65535


class ConfigError(ValueError):
    """A client setting that cannot work; the message names the setting and where it came from."""


def _checked_address(value: str, source: str) -> str:
    """`value` stripped, once it reads as host:port with a port a client can dial."""
    address = value.strip()
    host, separator, port = address.rpartition(":")
    if not separator or not host:
        raise ConfigError(f"{source}: {value!r} is not host:port (example: 127.0.0.1:50052)")
    if not (port.isascii() and port.isdigit() and 0 < int(port) <= _MAX_PORT):
        raise ConfigError(f"{source}: port {port!r} in {value!r} is not a number 1..65535")
    return address


def _read_certificate(path_text: str, source: str) -> bytes:
    path = Path(path_text).expanduser()
    try:
        content = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"{source}: cannot read {path}: {error.strerror or error}") from None
    if _PEM_CERTIFICATE not in content:
        raise ConfigError(f"{source}: {path} holds no PEM certificate")
    return content


def trust_setting(env: Mapping[str, str]) -> tuple[str, str]:
    """(path, variable) of the first TLS trust variable set; ("", "") for plaintext (the rule
    by which a client built from `env` dials with TLS)."""
    return next(((env[name], name) for name in TLS_TRUST_VARIABLES if env.get(name)), ("", ""))


def _message_limit(env: Mapping[str, str]) -> int:
    text = env.get("STABLENEW_MAX_MESSAGE_BYTES", "")
    if not text:
        return DEFAULT_MAX_MESSAGE_BYTES
    if not (text.isascii() and text.isdigit() and int(text) > 0):
        raise ConfigError(f"STABLENEW_MAX_MESSAGE_BYTES: {text!r} is not a positive whole number")
    return int(text)


@dataclass(frozen=True)
class ClientConfig:
    """Everything a client needs to dial the four services.

    Attributes:
        addresses: `host:port` of each service, keyed "bundle", "queue", "runner", "history".
        token: The bearer token sent with every call, or None for no authentication.
        tls_root_certificate: PEM bytes of the trusted roots; None for a plaintext channel.
        timeout: Deadline in seconds of every unary call (streams have none).
        max_message_bytes: Send and receive limit per message.
        runner_tls_name: The name a runner's certificate is checked against instead of the
            host dialled (runners are dialled at the pod addresses they advertise, which
            their certificate cannot name); None checks the host dialled.
    """

    addresses: Mapping[str, str]
    token: str | None
    tls_root_certificate: bytes | None
    timeout: float
    max_message_bytes: int
    runner_tls_name: str | None = None

    @classmethod
    def load(
        cls,
        *,
        bundle_address: str | None = None,
        queue_address: str | None = None,
        runner_address: str | None = None,
        history_address: str | None = None,
        token: str | None = None,
        tls_ca: str | os.PathLike[str] | None = None,
        timeout: float = 30.0,
        env: Mapping[str, str] | None = None,
    ) -> ClientConfig:
        """The configuration from arguments, then `STABLENEW_*` variables, then defaults.

        Args:
            bundle_address: The bundle service's `host:port`.
            queue_address: The queue service's `host:port`.
            runner_address: The runner service's `host:port`.
            history_address: The history service's `host:port`.
            token: Bearer token; else `STABLENEW_TOKEN` (empty means none).
            tls_ca: PEM file of the trusted root certificates (a CA bundle); else
                `STABLENEW_TLS_CA`, else `STABLENEW_TLS_CERT`.
            timeout: Deadline in seconds of every unary call.
            env: The variables to read; `os.environ` when None.

        Raises:
            ConfigError: An address, the certificate file or a limit cannot work.
        """
        env = os.environ if env is None else env
        given = {"bundle": bundle_address, "queue": queue_address,
                 "runner": runner_address, "history": history_address}
        addresses = {}
        for service in SERVICE_NAMES:
            variable = address_variable(service)
            value, source = given[service], f"{service}_address"
            if not value:
                value, source = env.get(variable) or DEFAULT_ADDRESSES[service], variable
            addresses[service] = _checked_address(value, source)
        if not timeout > 0:
            raise ConfigError(f"timeout: {timeout!r} must be greater than 0")
        certificate_path, certificate_source = (
            (os.fspath(tls_ca), "tls_ca") if tls_ca else trust_setting(env))
        return cls(
            addresses=addresses,
            token=token or env.get("STABLENEW_TOKEN") or None,
            tls_root_certificate=(_read_certificate(certificate_path, certificate_source)
                                  if certificate_path else None),
            timeout=timeout,
            max_message_bytes=_message_limit(env),
            runner_tls_name=env.get("STABLENEW_RUNNER_TLS_NAME", "").strip() or None,
        )

    @property
    def channel_options(self) -> list[tuple[str, int]]:
        """gRPC channel options: the message limits, matching the servers', and a reconnect
        back-off capped at 2 s (gRPC's default grows to 2 minutes, during which a restarted
        service would stay unreachable for this client)."""
        return [("grpc.max_send_message_length", self.max_message_bytes),
                ("grpc.max_receive_message_length", self.max_message_bytes),
                ("grpc.initial_reconnect_backoff_ms", 100),
                ("grpc.max_reconnect_backoff_ms", 2000)]

    def options_for(self, service: str) -> list[tuple[str, int | str]]:
        """The channel options for dialling `service`: `channel_options`, and for a runner over
        TLS the name its certificate must carry, when `runner_tls_name` sets one."""
        options: list[tuple[str, int | str]] = list(self.channel_options)
        if service == "runner" and self.runner_tls_name and self.tls_root_certificate:
            options.append(("grpc.ssl_target_name_override", self.runner_tls_name))
        return options

    @property
    def call_metadata(self) -> tuple[tuple[str, str], ...]:
        """The metadata sent with every call: the bearer token, when there is one."""
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()
