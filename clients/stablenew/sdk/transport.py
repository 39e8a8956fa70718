"""The two drivers of the SDK's operations: one on grpc's blocking API, one on `grpc.aio`.

Each owns its channels (one per address, opened on first use, with the message limits and the
TLS root of `ClientConfig`), sends the bearer token as call metadata, gives unary calls the
configured deadline, turns every failed call into a typed `StableNewError`, and cancels the
streams an operation opened when it ends or is abandoned.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, TypeVar

import grpc
import grpc.aio

from stablenew.sdk._commands import Command, Emit, Flow, Next, Notify, Op, Open, Sleep, Unary
from stablenew.sdk.config import ClientConfig
from stablenew.sdk.errors import StableNewError, error_from_rpc
from stablenew.v1 import (
    bundle_service_pb2_grpc,
    history_service_pb2_grpc,
    queue_service_pb2_grpc,
    runner_service_pb2_grpc,
)

T = TypeVar("T")

STUBS: dict[str, Any] = {
    "bundle": bundle_service_pb2_grpc.BundleServiceStub,
    "queue": queue_service_pb2_grpc.QueueServiceStub,
    "runner": runner_service_pb2_grpc.RunnerServiceStub,
    "history": history_service_pb2_grpc.HistoryServiceStub,
}


def open_channel(config: ClientConfig, service: str, address: str, aio: bool = False) -> Any:
    """A channel (blocking, or `grpc.aio`) to `service` at `address`: plaintext, or TLS trusting
    the configured roots, with the configured options."""
    module: Any = grpc.aio if aio else grpc
    options = config.options_for(service)
    root = config.tls_root_certificate
    if root is None:
        return module.insecure_channel(address, options)
    credentials = grpc.ssl_channel_credentials(root_certificates=root)
    return module.secure_channel(address, credentials, options)


class _Channels:
    """Channels and stubs by address, made on first use; shared by both drivers."""

    def __init__(self, config: ClientConfig, aio: bool) -> None:
        self.config = config
        self._aio = aio
        self._channels: dict[str, Any] = {}
        self._stubs: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def method(self, service: str, name: str, address: str) -> Any:
        """The stub method `name` of `service` at `address` (the configured one when empty)."""
        address = address or self.config.addresses[service]
        key = (address, service)
        with self._lock:
            stub = self._stubs.get(key)
            if stub is None:
                channel = self._channels.get(address)
                if channel is None:
                    channel = self._channels[address] = open_channel(
                        self.config, service, address, self._aio)
                stub = self._stubs[key] = STUBS[service](channel)
        return getattr(stub, name)

    def take_all(self) -> list[Any]:
        """Every channel, forgotten (to close them)."""
        with self._lock:
            channels = list(self._channels.values())
            self._channels.clear()
            self._stubs.clear()
        return channels


def _target(command: Command, config: ClientConfig,
            opened: dict[int, tuple[str, str]]) -> tuple[str, str]:
    """The service and address a command calls (a stream's, for `Next`), for its errors."""
    if isinstance(command, Unary | Open):
        return command.service, command.address or config.addresses[command.service]
    if isinstance(command, Next):
        return opened.get(id(command.stream), ("", ""))
    return "", ""


class SyncTransport:
    """Runs operations with blocking calls."""

    def __init__(self, config: ClientConfig) -> None:
        self._channels = _Channels(config, aio=False)
        self.config = config

    def close(self) -> None:
        """Close every channel (calls in flight fail with CANCELLED)."""
        for channel in self._channels.take_all():
            channel.close()

    def run(self, op: Op[T]) -> T:
        """Run an operation to its result."""
        flow: Any = op
        items = self._drive(flow)
        while True:
            try:
                next(items)
            except StopIteration as stop:
                result: T = stop.value
                return result

    def iterate(self, flow: Flow[T]) -> Iterator[T]:
        """The items a flow emits, as they come."""
        yield from self._drive(flow)

    def _drive(self, flow: Any) -> Any:
        streams: list[Any] = []
        # Where each open stream goes (by the handle's id), so its errors can name it.
        opened: dict[int, tuple[str, str]] = {}
        answer: Any = None
        error: StableNewError | None = None
        try:
            while True:
                try:
                    command = flow.send(answer) if error is None else flow.throw(error)
                except StopIteration as stop:
                    return stop.value
                answer, error = None, None
                if isinstance(command, Emit):
                    yield command.value
                    continue
                try:
                    answer = self._execute(command, streams)
                except grpc.RpcError as rpc_error:
                    error = error_from_rpc(rpc_error, *_target(command, self.config, opened))
                    continue
                if isinstance(command, Open):
                    opened[id(answer)] = _target(command, self.config, opened)
        finally:
            for stream in streams:
                stream.cancel()
            flow.close()

    def _execute(self, command: Command, streams: list[Any]) -> Any:
        config = self.config
        if isinstance(command, Unary):
            method = self._channels.method(command.service, command.method, command.address)
            return method(command.request, timeout=config.timeout,
                          metadata=config.call_metadata)
        if isinstance(command, Open):
            method = self._channels.method(command.service, command.method, command.address)
            stream = method(command.request, timeout=command.timeout,
                            metadata=config.call_metadata)
            streams.append(stream)
            return stream
        if isinstance(command, Next):
            try:
                return next(command.stream)
            except StopIteration:
                return None
            except grpc.RpcError:
                streams.remove(command.stream)
                raise
        if isinstance(command, Sleep):
            time.sleep(command.seconds)
            return None
        if isinstance(command, Notify):
            command.callback(command.value)
            return None
        raise TypeError(f"unknown command {command!r}")


class AsyncTransport:
    """Runs operations on `grpc.aio`; channels open on first use, inside the event loop."""

    def __init__(self, config: ClientConfig) -> None:
        self._channels = _Channels(config, aio=True)
        self.config = config

    async def close(self) -> None:
        """Close every channel (calls in flight fail with CANCELLED)."""
        for channel in self._channels.take_all():
            await channel.close()

    async def run(self, op: Op[T]) -> T:
        """Run an operation to its result."""
        result: list[T] = []
        async for _ in self._drive(op, result):
            raise TypeError("an operation emitted an item")
        return result[0]

    async def iterate(self, flow: Flow[T]) -> AsyncIterator[T]:
        """The items a flow emits, as they come."""
        async for item in self._drive(flow, []):
            yield item

    async def _drive(self, flow: Any, result: list[Any]) -> AsyncIterator[Any]:
        streams: list[Any] = []
        # Where each open stream goes (by the handle's id), so its errors can name it.
        opened: dict[int, tuple[str, str]] = {}
        answer: Any = None
        error: StableNewError | None = None
        try:
            while True:
                try:
                    command = flow.send(answer) if error is None else flow.throw(error)
                except StopIteration as stop:
                    result.append(stop.value)
                    return
                answer, error = None, None
                if isinstance(command, Emit):
                    yield command.value
                    continue
                try:
                    answer = await self._execute(command, streams)
                except grpc.RpcError as rpc_error:
                    error = error_from_rpc(rpc_error, *_target(command, self.config, opened))
                    continue
                if isinstance(command, Open):
                    opened[id(answer)] = _target(command, self.config, opened)
        finally:
            for stream in streams:
                stream.cancel()
            flow.close()

    async def _execute(self, command: Command, streams: list[Any]) -> Any:
        config = self.config
        if isinstance(command, Unary):
            method = self._channels.method(command.service, command.method, command.address)
            return await method(command.request, timeout=config.timeout,
                                metadata=config.call_metadata)
        if isinstance(command, Open):
            method = self._channels.method(command.service, command.method, command.address)
            stream = method(command.request, timeout=command.timeout,
                            metadata=config.call_metadata)
            streams.append(stream)
            return stream
        if isinstance(command, Next):
            try:
                message = await command.stream.read()
            except grpc.RpcError:
                streams.remove(command.stream)
                raise
            return None if message is grpc.aio.EOF else message  # type: ignore[attr-defined]
        if isinstance(command, Sleep):
            await asyncio.sleep(command.seconds)
            return None
        if isinstance(command, Notify):
            outcome = command.callback(command.value)
            if inspect.isawaitable(outcome):
                await outcome
            return None
        raise TypeError(f"unknown command {command!r}")

