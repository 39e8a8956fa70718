"""List paging as AIP-158 describes it: page_size 0 means the default, larger than the maximum
is lowered to it, negative is INVALID_ARGUMENT; page tokens are opaque and signed keyset
positions, so page 10,000 costs what page 1 costs and a tampered token is refused."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from stablenew.contract.errors import (
    Code,
    ErrorReason,
    FieldViolation,
    ServiceError,
    invalid_argument,
)
from stablenew.runtime.sqlite_db import Transaction

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000

T = TypeVar("T")


def page_size(
    requested: int, default: int = DEFAULT_PAGE_SIZE, maximum: int = MAX_PAGE_SIZE
) -> int:
    if requested < 0:
        raise invalid_argument("page_size", f"must not be negative (got {requested})")
    if requested == 0:
        return default
    return min(requested, maximum)


def stored_secret(db: sqlite3.Connection, read: Callable[[str, str], str],
                  write: Callable[[str, str], None]) -> bytes:
    """The database's page-token secret, made on first use and kept, so tokens stay valid
    across restarts (read/write: the store's key-value settings)."""
    with Transaction(db):
        secret = read("page_token_secret", "")
        if not secret:
            secret = secrets.token_hex(32)
            write("page_token_secret", secret)
    return bytes.fromhex(secret)


class PageTokens:
    """Encodes a keyset position (a JSON list) into a token bound to one list and one secret."""

    def __init__(self, secret: bytes, scope: str) -> None:
        self._secret = secret
        self._scope = scope.encode()

    def _signature(self, body: bytes) -> bytes:
        return hmac.new(self._secret, self._scope + b"\0" + body, hashlib.sha256).digest()[:16]

    def encode(self, position: list[Any]) -> str:
        body = json.dumps(position, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(self._signature(body) + body).decode().rstrip("=")

    def decode(self, token: str) -> list[Any] | None:
        """None for an empty token (the first page); INVALID_ARGUMENT for anything not ours."""
        if not token:
            return None
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            signature, body = raw[:16], raw[16:]
            if not hmac.compare_digest(signature, self._signature(body)):
                raise ValueError("signature")
            position = json.loads(body)
            if not isinstance(position, list):
                raise ValueError("shape")
        except (ValueError, binascii.Error):
            raise ServiceError(Code.INVALID_ARGUMENT, ErrorReason.INVALID_PAGE_TOKEN,
                "page_token: not a token this list issued (tampered, or from another list)",
                violations=[FieldViolation("page_token", "not a token this list issued")],
            ) from None
        return position


def page_by_name(tokens: PageTokens, token: str, size: int,
                 read_after: Callable[[str, int], Sequence[T]],
                 name_of: Callable[[T], str]) -> tuple[list[T], str]:
    """One page of a list in the order of a unique name (an id), and the next page's token
    ("" on the last). `read_after(after, limit)` answers at most `limit` items named after
    `after` ("" for the first page), in name order; one more than the page is read to know
    whether another page follows."""
    position = tokens.decode(token)
    items = read_after(str(position[0]) if position else "", size + 1)
    page = list(items[:size])
    return page, tokens.encode([name_of(page[-1])]) if len(items) > size else ""
