"""Typed exceptions for failed calls: the status code picks the class, the ErrorInfo reason
and BadRequest field violations ride along."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import grpc

from stablenew.contract.errors import Code, ErrorDetails, FieldViolation
from stablenew.runtime.rich_status import details_of

T = TypeVar("T")


class StableNewError(Exception):
    def __init__(self, details: ErrorDetails) -> None:
        super().__init__(f"{details.code.name} {details.reason}: {details.message}".strip())
        self.code = details.code
        self.reason = details.reason
        self.message = details.message
        self.metadata = dict(details.metadata)
        self.violations: list[FieldViolation] = list(details.violations)


class NotFoundError(StableNewError):
    pass


class InvalidArgumentError(StableNewError):
    pass


class FailedPreconditionError(StableNewError):
    pass


class UnavailableError(StableNewError):
    pass


class UnauthenticatedError(StableNewError):
    pass


_BY_CODE: dict[Code, type[StableNewError]] = {
    Code.NOT_FOUND: NotFoundError,
    Code.INVALID_ARGUMENT: InvalidArgumentError,
    Code.FAILED_PRECONDITION: FailedPreconditionError,
    Code.UNAVAILABLE: UnavailableError,
    Code.DEADLINE_EXCEEDED: UnavailableError,
    Code.UNAUTHENTICATED: UnauthenticatedError,
}


def typed(error: grpc.RpcError) -> StableNewError:
    details = details_of(error)
    return _BY_CODE.get(details.code, StableNewError)(details)


def calling(call: Callable[[], T]) -> T:
    """Run one call; a failure comes out as a typed StableNewError."""
    try:
        return call()
    except grpc.RpcError as error:
        raise typed(error) from None
