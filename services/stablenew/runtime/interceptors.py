"""Server interceptors every service runs: bearer-token auth, and the request context (request
id, one JSON log line per RPC, ServiceError -> rich status, unexpected errors -> INTERNAL)."""

from __future__ import annotations

import hmac
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import grpc
from google.protobuf.message import DecodeError

from stablenew.contract.errors import Code, ErrorReason, ServiceError
from stablenew.runtime.json_logging import request_id_var
from stablenew.runtime.rich_status import grpc_code, to_grpc_status

log = logging.getLogger("stablenew.rpc")

REQUEST_ID_KEY = "x-request-id"
# Probes must answer without credentials (Kubernetes, compose and load balancers have none).
AUTH_EXEMPT_PREFIXES = ("/grpc.health.v1.Health/",)

Behavior = Callable[[Any, grpc.ServicerContext], Any]
BehaviorWrapper = Callable[[Behavior, str, bool], Behavior]


Deserializer = Callable[[bytes], Any] | None


def _wrap_handler(
    handler: grpc.RpcMethodHandler[Any, Any], method: str, wrapper: BehaviorWrapper,
    deserializer_wrapper: Callable[[Deserializer], Deserializer] = lambda parse: parse,
) -> grpc.RpcMethodHandler[Any, Any]:
    """The same handler with its behaviour passed through wrapper(behaviour, method, streaming)
    and its request parser through deserializer_wrapper."""
    parse = deserializer_wrapper(handler.request_deserializer)
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(
            wrapper(handler.unary_unary, method, False), parse, handler.response_serializer)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(
            wrapper(handler.unary_stream, method, True), parse, handler.response_serializer)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(
            wrapper(cast(Behavior, handler.stream_unary), method, False),
            parse, handler.response_serializer)
    return grpc.stream_stream_rpc_method_handler(
        wrapper(cast(Behavior, handler.stream_stream), method, True),
        parse, handler.response_serializer)


@dataclass(frozen=True)
class UnparsableRequest:
    """Stands in for a request whose bytes do not parse, so the call can be refused as bad
    input (with a request id and a log line) instead of gRPC's own bare INTERNAL."""

    problem: str


def _tolerant(parse: Deserializer) -> Deserializer:
    if parse is None:
        return None

    def parse_or_flag(data: bytes) -> Any:
        try:
            return parse(data)
        except DecodeError as error:
            return UnparsableRequest(str(error) or "malformed message")
    return parse_or_flag


def _refuse_unparsable(request: Any) -> None:
    if isinstance(request, UnparsableRequest):
        raise ServiceError(Code.INVALID_ARGUMENT, ErrorReason.INVALID_FIELD,
                           f"the request does not parse as this method's message: "
                           f"{request.problem}")


class _WrappingInterceptor(grpc.ServerInterceptor):  # type: ignore[type-arg]
    def wrap(self, behavior: Behavior, method: str, streaming: bool) -> Behavior:
        raise NotImplementedError

    def wrap_deserializer(self, parse: Deserializer) -> Deserializer:
        return parse

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method: str = handler_call_details.method
        return _wrap_handler(handler, method, self.wrap, self.wrap_deserializer)


def _metadata_value(context: grpc.ServicerContext, key: str) -> str:
    for item in context.invocation_metadata() or ():
        if item.key == key:  # type: ignore[attr-defined]
            return str(item.value)  # type: ignore[attr-defined]
    return ""


class BearerTokenInterceptor(_WrappingInterceptor):
    """Refuses every call without `authorization: Bearer <token>` (health excepted)."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    def _authorized(self, context: grpc.ServicerContext) -> bool:
        presented = _metadata_value(context, "authorization").encode()
        return hmac.compare_digest(presented, self._expected)

    def _refuse(self, context: grpc.ServicerContext) -> None:
        error = ServiceError(Code.UNAUTHENTICATED, ErrorReason.UNAUTHENTICATED,
            "missing or wrong bearer token: set STABLENEW_TOKEN to the server's token",
        )
        context.abort_with_status(to_grpc_status(error))

    def wrap(self, behavior: Behavior, method: str, streaming: bool) -> Behavior:
        if method.startswith(AUTH_EXEMPT_PREFIXES):
            return behavior
        if streaming:
            def checked_stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                if not self._authorized(context):
                    self._refuse(context)
                yield from behavior(request, context)
            return checked_stream

        def checked(request: Any, context: grpc.ServicerContext) -> Any:
            if not self._authorized(context):
                self._refuse(context)
            return behavior(request, context)
        return checked


class RequestContextInterceptor(_WrappingInterceptor):
    """Gives every call a request id, logs its outcome and maps errors to rich statuses."""

    def wrap_deserializer(self, parse: Deserializer) -> Deserializer:
        return _tolerant(parse)

    def wrap(self, behavior: Behavior, method: str, streaming: bool) -> Behavior:
        if streaming:
            def stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                started = self._begin(context)
                try:
                    _refuse_unparsable(request)
                    yield from behavior(request, context)
                except Exception as error:  # every failure becomes a status
                    self._fail(context, method, started, error)
                self._log(context, method, started, grpc.StatusCode.OK)
            return stream

        def unary(request: Any, context: grpc.ServicerContext) -> Any:
            started = self._begin(context)
            try:
                _refuse_unparsable(request)
                response = behavior(request, context)
            except Exception as error:  # every failure becomes a status
                self._fail(context, method, started, error)
            self._log(context, method, started, grpc.StatusCode.OK)
            return response
        return unary

    @staticmethod
    def _begin(context: grpc.ServicerContext) -> float:
        request_id = _metadata_value(context, REQUEST_ID_KEY) or uuid.uuid4().hex
        request_id_var.set(request_id)
        context.send_initial_metadata(((REQUEST_ID_KEY, request_id),))
        return time.monotonic()

    @staticmethod
    def _log(
        context: grpc.ServicerContext, method: str, started: float, code: grpc.StatusCode
    ) -> None:
        elapsed_ms = round((time.monotonic() - started) * 1000, 3)
        # Probes call health every few seconds: keep them out of the info log.
        level = logging.DEBUG if method.startswith(AUTH_EXEMPT_PREFIXES) else logging.INFO
        log.log(level, "rpc %s %s", method, code.name,
                 extra={"method": method, "code": code.name, "duration_ms": elapsed_ms})

    def _fail(
        self, context: grpc.ServicerContext, method: str, started: float, error: Exception
    ) -> None:
        if isinstance(error, ServiceError):
            self._log(context, method, started, grpc_code(error.code))
            context.abort_with_status(to_grpc_status(error))
        if context.code() not in (None, grpc.StatusCode.OK):  # type: ignore[attr-defined]
            # The behaviour aborted on its own (context.abort): keep its status.
            self._log(context, method, started, context.code())  # type: ignore[attr-defined]
            raise error
        log.exception("rpc %s failed", method, extra={"method": method, "code": "INTERNAL"})
        internal = ServiceError(Code.INTERNAL, ErrorReason.UNSPECIFIED,
            f"internal error; the server log has the details under request id "
            f"{request_id_var.get()}",
        )
        context.abort_with_status(to_grpc_status(internal))
