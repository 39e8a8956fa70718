"""What every command shares: exit codes, one-line errors, and `--json` output.

Exit codes (docs/CLI.md): 0 ok; 1 the job failed (or a service failed in a way the user cannot
fix: an internal error); 2 usage or validation error, an unknown pack, draft or job included,
bad configuration and a wrong token too; 3 a service unreachable; 130 interrupted by Ctrl-C.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Mapping
from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from stablenew.contract.endpoints import address_variable
from stablenew.contract.errors import Code
from stablenew.sdk import StableNewError
from stablenew.sdk.config import trust_setting

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130

_EXIT_BY_CODE = {
    Code.INVALID_ARGUMENT: EXIT_USAGE,
    Code.NOT_FOUND: EXIT_USAGE,
    Code.FAILED_PRECONDITION: EXIT_USAGE,
    Code.ALREADY_EXISTS: EXIT_USAGE,
    Code.OUT_OF_RANGE: EXIT_USAGE,
    Code.PERMISSION_DENIED: EXIT_USAGE,
    Code.UNAUTHENTICATED: EXIT_USAGE,
    Code.UNAVAILABLE: EXIT_UNREACHABLE,
    Code.DEADLINE_EXCEEDED: EXIT_UNREACHABLE,
}
# RESOURCE_EXHAUSTED is bad input only when the reason says so; else the server is at its bound.
_USAGE_REASONS = {"TOO_MANY_VARIANTS"}


class CliError(Exception):
    """A failure the user can act on: one line on standard error, then the exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def exit_code_for(error: StableNewError) -> int:
    """The exit code of a failed call (see the module docstring)."""
    if error.reason in _USAGE_REASONS:
        return EXIT_USAGE
    return _EXIT_BY_CODE.get(error.code, EXIT_FAILED)


def error_line(error: StableNewError) -> str:
    """One line: what failed and why, the fields at fault included."""
    if error.code is Code.UNAVAILABLE and not error.reason and error.service:
        return unreachable_line(error)
    return " ".join(str(error).split())


# What gRPC's text says when the server answered but the TLS handshake failed: a certificate
# not signed by the trusted CA, or a name it does not carry.
_TLS_FAILURE_MARKS = ("handshake", "certificate", "verification")
# A TLS client dialling a plaintext server: its hello is answered with something that is not TLS.
_PLAINTEXT_ANSWER_MARK = "wrong_version_number"
# A plaintext client dialling a TLS server: the server closes the connection without a word.
_CLOSED_MARK = "socket closed"


def _last_clause(message: str) -> str:
    """gRPC's text ends with the most specific reason ("Connection refused"), sometimes
    followed by a bare "OK"."""
    clauses = [clause.strip().rstrip(".]") for clause in message.split(": ")]
    meaningful = [clause for clause in clauses if clause not in ("", "OK")]
    return meaningful[-1] if meaningful else message


def client_uses_tls() -> bool:
    """Whether the CLI dials with TLS: a trust setting is in its environment (as for the SDK)."""
    return bool(trust_setting(os.environ)[0])


def service_at(service: str, address: str) -> str:
    """How a message names a service it could not reach: "the queue service at host:port"."""
    return f"the {service} service at {address}"


def tls_mismatch(where: str, message: str, tls: bool) -> str:
    """What gRPC's failed-connection `message` says about TLS between this client (`tls`) and
    `where`, and what to do about it; "" when it says nothing about TLS."""
    lowered = message.lower()
    if tls and _PLAINTEXT_ANSWER_MARK in lowered:
        return (f"{where} does not serve TLS (it answered the TLS handshake in plaintext); "
                "unset STABLENEW_TLS_CA and STABLENEW_TLS_CERT to dial it in plaintext, or "
                "give it STABLENEW_TLS_CERT and STABLENEW_TLS_KEY")
    if tls and any(mark in lowered for mark in _TLS_FAILURE_MARKS):
        return (f"the TLS handshake with {where} failed ({_last_clause(message)}); check that "
                "STABLENEW_TLS_CA holds the CA that signed its certificate and that the "
                "certificate names that address")
    if not tls and _CLOSED_MARK in lowered:
        return (f"{where} closed the connection ({_last_clause(message)}), as a server that "
                "serves TLS does to a plaintext client; if it serves TLS, set STABLENEW_TLS_CA "
                "to the CA that signed its certificate")
    return ""


def unreachable_line(error: StableNewError) -> str:
    """gRPC's own "failed to connect" as one line naming the service, its address, the cause
    (the last clause of gRPC's text) and what to do about it."""
    where = service_at(error.service, error.address)
    mismatch = tls_mismatch(where, error.message, client_uses_tls())
    if mismatch:
        return f"UNAVAILABLE: {mismatch}"
    return (f"UNAVAILABLE: cannot reach {where} ({_last_clause(error.message)}); start the "
            f"services with `stablenew up`, or set {address_variable(error.service)} to where "
            "it runs")


def fail(message: str) -> None:
    """Print `stablenew: message` on standard error."""
    print(f"stablenew: {' '.join(message.split())}", file=sys.stderr)


def as_data(value: Any) -> Any:
    """A JSON-ready form: messages in their proto3 JSON form (field names as in the .proto),
    objects with a `.proto` as that message, mappings and sequences element by element."""
    if isinstance(value, Message):
        return MessageToDict(value, preserving_proto_field_name=True)
    proto = getattr(value, "proto", None)
    if isinstance(proto, Message):
        return MessageToDict(proto, preserving_proto_field_name=True)
    if isinstance(value, Mapping):
        return {str(key): as_data(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [as_data(item) for item in value]
    return value


def print_json(value: Any, lines: bool = False) -> None:
    """`value` as one indented JSON document, or as one compact line (for streams)."""
    data = as_data(value)
    if lines:
        print(json.dumps(data, ensure_ascii=False, separators=(",", ":")), flush=True)
    else:
        print(json.dumps(data, ensure_ascii=False, indent=2))


def table(rows: Iterable[Iterable[object]], header: Iterable[str]) -> None:
    """Left-aligned columns wide enough for their longest cell; the last column is not padded."""
    text = [[str(cell) for cell in header]] + [[str(cell) for cell in row] for row in rows]
    if len(text) == 1:
        return
    widths = [max(len(row[i]) for row in text) for i in range(len(text[0]) - 1)]
    for row in text:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[-1]]).rstrip())
