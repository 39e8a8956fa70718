"""Configuration shared by every service and client: flags first, then STABLENEW_* variables.

Bad configuration is a ConfigError with a message a user can act on; the CLI turns it into
exit code 2 before any server starts.
"""

from __future__ import annotations

import math
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

DEFAULT_WEBUI_URL = "http://127.0.0.1:7860"
DEFAULT_DATA_DIR = ".stablenew"
MAX_PORT = 65535
# What STABLENEW_SQLITE_SYNCHRONOUS may say (sqlite_db.py holds the databases to it).
SYNCHRONOUS_LEVELS = ("NORMAL", "FULL")


class ConfigError(ValueError):
    """A setting that cannot work, named with where it came from."""


def _whole_number(text: str) -> int | None:
    """ASCII digits only: str.isdigit() also takes characters like '²' that int() refuses."""
    return int(text) if text.isascii() and text.isdigit() else None


def parse_address(value: str, source: str) -> tuple[str, int]:
    """Split host:port (IPv6 as [::1]:port) and check the port; port 0 picks a free port."""
    host, sep, port_text = value.strip().rpartition(":")
    if not sep or not host:
        raise ConfigError(f"{source}: {value!r} is not host:port (example: 127.0.0.1:50052)")
    port = _whole_number(port_text)
    if port is None or port > MAX_PORT:
        raise ConfigError(f"{source}: port {port_text!r} in {value!r} is not a number 0..65535")
    if host.startswith("[") != host.endswith("]"):
        raise ConfigError(f"{source}: unbalanced brackets in {value!r}")
    if ":" in host and not host.startswith("["):
        raise ConfigError(f"{source}: write an IPv6 address in brackets, e.g. [::1]:50052")
    return host, port


def service_address(service: str, env: Mapping[str, str], flag: str | None = None) -> str:
    """The address of a service: the flag, else its STABLENEW_*_ADDR, else the default."""
    if flag:
        parse_address(flag, "--address")
        return flag.strip()
    variable = address_variable(service)
    value = env.get(variable) or DEFAULT_ADDRESSES[service]
    parse_address(value, variable)
    return value.strip()


def _readable_pem(path_text: str, source: str, marker: bytes) -> Path:
    """The path, once it is known to be readable and to hold a PEM block of the right kind."""
    path = Path(path_text).expanduser()
    try:
        content = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"{source}: cannot read {path}: {error.strerror or error}") from None
    if marker not in content:
        kind = marker.decode().strip("-")
        raise ConfigError(f"{source}: {path} holds no PEM {kind.lower()}")
    return path


CERTIFICATE_MARKER = b"-----BEGIN CERTIFICATE-----"
PRIVATE_KEY_MARKER = b"PRIVATE KEY-----"


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path

    def read(self) -> tuple[bytes, bytes]:
        return self.key.read_bytes(), self.cert.read_bytes()


def tls_files(
    env: Mapping[str, str], cert_flag: str | None = None, key_flag: str | None = None
) -> TlsFiles | None:
    """Both of certificate and key, or neither; both must be readable."""
    cert = cert_flag or env.get("STABLENEW_TLS_CERT", "")
    key = key_flag or env.get("STABLENEW_TLS_KEY", "")
    if not cert and not key:
        return None
    if not cert or not key:
        raise ConfigError("TLS needs both STABLENEW_TLS_CERT and STABLENEW_TLS_KEY (or neither)")
    return TlsFiles(
        cert=_readable_pem(cert, "STABLENEW_TLS_CERT", CERTIFICATE_MARKER),
        key=_readable_pem(key, "STABLENEW_TLS_KEY", PRIVATE_KEY_MARKER),
    )


def trusted_certificate(env: Mapping[str, str]) -> Path | None:
    """The PEM file a client trusts as its roots (a client never needs the key); None means
    plaintext."""
    for variable in TLS_TRUST_VARIABLES:
        path = env.get(variable, "")
        if path:
            return _readable_pem(path, variable, CERTIFICATE_MARKER)
    return None


def positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name, "")
    if not text:
        return default
    value = _whole_number(text)
    if value is None or value <= 0:
        raise ConfigError(f"{name}: {text!r} is not a positive whole number")
    return value


def positive_float(env: Mapping[str, str], name: str, default: float) -> float:
    return _finite_float(env, name, default, zero_allowed=False)


def non_negative_float(env: Mapping[str, str], name: str, default: float) -> float:
    """A number of 0 or more (0 typically meaning "never wait" or "do not cache")."""
    return _finite_float(env, name, default, zero_allowed=True)


def sqlite_synchronous(env: Mapping[str, str]) -> str:
    """STABLENEW_SQLITE_SYNCHRONOUS: NORMAL (unset or empty) or FULL."""
    value = env.get("STABLENEW_SQLITE_SYNCHRONOUS") or "NORMAL"
    if value not in SYNCHRONOUS_LEVELS:
        raise ConfigError(f"STABLENEW_SQLITE_SYNCHRONOUS: {value!r} is not one of "
                          f"{', '.join(SYNCHRONOUS_LEVELS)}")
    return value


def _finite_float(env: Mapping[str, str], name: str, default: float, zero_allowed: bool) -> float:
    text = env.get(name, "")
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{name}: {text!r} is not a number") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero_allowed):
        bound = "0 or more" if zero_allowed else "greater than 0"
        raise ConfigError(f"{name}: {text!r} must be a finite number {bound}")
    return value


@dataclass(frozen=True)
class ServerSettings:
    """Everything the common runtime needs to start one service."""

    service: str
    address: str
    data_dir: Path
    token: str | None
    tls: TlsFiles | None
    # Threads: every open stream (watchers, long-polls) holds one, so the pool is sized for
    # them plus the unary calls. max_concurrent_rpcs defaults to the pool size so an RPC that
    # would wait for a thread is refused at once with RESOURCE_EXHAUSTED instead.
    max_workers: int
    max_concurrent_rpcs: int
    grace_seconds: float
    max_message_bytes: int
    webui_url: str
    # NORMAL or FULL, for the services with a database.
    sqlite_synchronous: str = "NORMAL"

    @classmethod
    def load(
        cls,
        service: str,
        env: Mapping[str, str] | None = None,
        address: str | None = None,
        data_dir: str | None = None,
    ) -> ServerSettings:
        env = os.environ if env is None else env
        if service not in SERVICE_NAMES:
            raise ConfigError(f"unknown service {service!r}; one of {', '.join(SERVICE_NAMES)}")
        workers = positive_int(env, "STABLENEW_MAX_WORKERS", 64)
        return cls(
            service=service,
            address=service_address(service, env, address),
            data_dir=Path(data_dir or env.get("STABLENEW_DATA_DIR") or DEFAULT_DATA_DIR),
            token=env.get("STABLENEW_TOKEN") or None,
            tls=tls_files(env),
            max_workers=workers,
            max_concurrent_rpcs=positive_int(env, "STABLENEW_MAX_CONCURRENT_RPCS", workers),
            grace_seconds=positive_float(env, "STABLENEW_GRACE_SECONDS", 3.0),
            max_message_bytes=positive_int(env, "STABLENEW_MAX_MESSAGE_BYTES",
                                           DEFAULT_MAX_MESSAGE_BYTES),
            webui_url=env.get("STABLENEW_WEBUI_URL") or DEFAULT_WEBUI_URL,
            sqlite_synchronous=sqlite_synchronous(env),
        )
