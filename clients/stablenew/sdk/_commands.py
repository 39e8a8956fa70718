"""What an SDK operation asks its driver to do.

Every operation of the SDK (a paged list, an enqueue with its checks, a watch that reconnects,
a download) is written once, as a generator that yields these commands and gets the answers
back; `stablenew.sdk.transport` runs it synchronously (`Client`) or on asyncio (`AsyncClient`).
So the two clients share every line of logic and differ only in how a call is made. A failed
call is thrown into the generator as a `StableNewError`.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from google.protobuf.message import Message

T = TypeVar("T")


@dataclass(frozen=True)
class Unary:
    """Call a unary RPC of `service` ("bundle", ...), at `address` when given (another
    runner), and answer its response."""

    service: str
    method: str
    request: Message
    address: str = ""


@dataclass(frozen=True)
class Open:
    """Start a server-streaming RPC; answers a handle for `Next`. `timeout` bounds the whole
    stream (None: no deadline, as watchers need)."""

    service: str
    method: str
    request: Message
    timeout: float | None = None
    address: str = ""


@dataclass(frozen=True)
class Next:
    """The next message of an open stream, or None when it ended."""

    stream: Any


@dataclass(frozen=True)
class Sleep:
    """Wait (a reconnect's back-off)."""

    seconds: float


@dataclass(frozen=True)
class Notify(Generic[T]):
    """Call a user's callback; the asyncio driver awaits it when it returns an awaitable."""

    callback: Callable[[T], Any]
    value: T


@dataclass(frozen=True)
class Emit(Generic[T]):
    """One item of a flow (a listing, a watch) for the caller."""

    value: T


Command = Unary | Open | Next | Sleep | Notify[Any]

# An operation: commands out, answers in, a result at the end.
Op = Generator[Command, Any, T]
# A flow: like an operation, and it emits items instead of returning a result.
Flow = Generator[Command | Emit[T], Any, None]
