"""Typed exceptions for failed calls.

The status code picks the class (`NotFoundError`, `FailedPreconditionError`, ...); where the
services' `ErrorInfo` reason says more, a subclass of that class names it (`JobNotFoundError`,
`DraftRevisionMismatchError`, ...), so callers can catch as broadly or as narrowly as they like.
Every exception carries the code, the reason string, the message, the ErrorInfo metadata, the
BadRequest field violations and the server's request id (for its logs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Self

import grpc
from grpc_status import rpc_status

from stablenew.contract.errors import Code, ErrorDetails, FieldViolation, details_from_status

__all__ = [
    "AlreadyExistsError",
    "CancelledError",
    "Code",
    "ConfigHashMismatchError",
    "ConsumerAlreadyExistsError",
    "ConsumerNotFoundError",
    "DeadlineExceededError",
    "DependencyUnavailableError",
    "DraftEmptyError",
    "DraftNotFoundError",
    "DraftRevisionMismatchError",
    "FailedPreconditionError",
    "FieldViolation",
    "IllegalTransitionError",
    "ImageNotFoundError",
    "InternalError",
    "InvalidArgumentError",
    "InvalidPageTokenError",
    "InvalidStagePlanError",
    "JobNotFoundError",
    "NotFoundError",
    "OutOfRangeError",
    "PackInvalidError",
    "PackNotFoundError",
    "PartNotFoundError",
    "PathOutsideRootError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "RowErrorsError",
    "SequencePrunedError",
    "StableNewError",
    "StorageFailureError",
    "TooManyVariantsError",
    "UnauthenticatedError",
    "UnavailableError",
    "UnimplementedError",
    "UnresolvedTokenError",
    "WaitTimeoutError",
    "WebuiOutOfMemoryError",
    "WebuiUnavailableError",
    "error_from_rpc",
]

_REQUEST_ID_HEADER = "x-request-id"


class StableNewError(Exception):
    """Base of every error the SDK raises for a failed call.

    Attributes:
        code: The canonical status code.
        reason: The ErrorInfo reason (e.g. "JOB_NOT_FOUND"); empty when the status carried none
            (an error from gRPC itself, such as an unreachable server).
        message: The server's message.
        metadata: The ErrorInfo metadata (e.g. `job_id`, `oldest_sequence`).
        violations: The BadRequest field violations: which request fields were wrong and why.
        request_id: The request id the server logged the call under, when it sent one.
        service: The service the failed call went to ("queue", ...); empty for an error the
            SDK raised itself.
        address: The `host:port` the failed call dialled; empty as `service` is.
    """

    #: The status code this class stands for (set on every subclass).
    CODE: ClassVar[Code] = Code.UNKNOWN

    def __init__(self, details: ErrorDetails, request_id: str = "") -> None:
        self.code = details.code
        self.reason = details.reason
        self.message = details.message
        self.metadata: Mapping[str, str] = dict(details.metadata)
        self.violations: Sequence[FieldViolation] = tuple(details.violations)
        self.request_id = request_id
        self.service = ""
        self.address = ""
        super().__init__(self._text())

    @classmethod
    def local(cls, message: str, reason: str = "",
              violations: Sequence[FieldViolation] = (),
              metadata: Mapping[str, str] | None = None) -> Self:
        """An error the SDK raises itself, before or instead of a call, with this class's code.

        Args:
            message: What went wrong.
            reason: An ErrorInfo-style reason, e.g. "INVALID_FIELD".
            violations: The arguments at fault.
            metadata: Extra facts, as ErrorInfo metadata.
        """
        return cls(ErrorDetails(cls.CODE, message, reason, metadata or {}, violations))

    def _text(self) -> str:
        # A reason that only repeats the code (UNAUTHENTICATED) is said once.
        reason = self.reason if self.reason != self.code.name else ""
        head = " ".join(part for part in (self.code.name, reason) if part)
        fields = "; ".join(f"{v.field}: {v.description}" for v in self.violations)
        text = f"{head}: {self.message}" if self.message else head
        if fields and fields not in self.message:
            text += f" ({fields})"
        return text


class CancelledError(StableNewError):
    """CANCELLED: the call was cancelled (by the client, or a stream by the server)."""

    CODE = Code.CANCELLED


class InvalidArgumentError(StableNewError):
    """INVALID_ARGUMENT: a request field is wrong; `violations` name the fields."""

    CODE = Code.INVALID_ARGUMENT


class NotFoundError(StableNewError):
    """NOT_FOUND: the named job, draft, pack, part or image does not exist."""

    CODE = Code.NOT_FOUND


class AlreadyExistsError(StableNewError):
    """ALREADY_EXISTS."""

    CODE = Code.ALREADY_EXISTS


class PermissionDeniedError(StableNewError):
    """PERMISSION_DENIED: e.g. an image path outside the runner's output root."""

    CODE = Code.PERMISSION_DENIED


class ResourceExhaustedError(StableNewError):
    """RESOURCE_EXHAUSTED: the server is at its bound of calls, a message is too large, the
    WebUI ran out of memory, or a pack row expands to too many variants."""

    CODE = Code.RESOURCE_EXHAUSTED


class FailedPreconditionError(StableNewError):
    """FAILED_PRECONDITION: the state of a job or draft does not allow the call."""

    CODE = Code.FAILED_PRECONDITION


class OutOfRangeError(StableNewError):
    """OUT_OF_RANGE: e.g. events asked for that the queue's log no longer keeps."""

    CODE = Code.OUT_OF_RANGE


class UnimplementedError(StableNewError):
    """UNIMPLEMENTED: the server does not implement this call (yet)."""

    CODE = Code.UNIMPLEMENTED


class InternalError(StableNewError):
    """INTERNAL (also UNKNOWN and DATA_LOSS): a server failure; `request_id` finds it in the
    server's log."""

    CODE = Code.INTERNAL


class UnavailableError(StableNewError):
    """UNAVAILABLE: the service (or one it depends on) cannot be reached; worth retrying."""

    CODE = Code.UNAVAILABLE


class DeadlineExceededError(UnavailableError, TimeoutError):
    """DEADLINE_EXCEEDED: the call's deadline passed, e.g. while connecting to a server that
    does not answer. A kind of UnavailableError: retrying may help."""

    CODE = Code.DEADLINE_EXCEEDED


class UnauthenticatedError(StableNewError):
    """UNAUTHENTICATED: no or a wrong bearer token (`STABLENEW_TOKEN`, or `token=`)."""

    CODE = Code.UNAUTHENTICATED


# --- by reason ------------------------------------------------------------------------------


class JobNotFoundError(NotFoundError):
    """NOT_FOUND JOB_NOT_FOUND."""


class DraftNotFoundError(NotFoundError):
    """NOT_FOUND DRAFT_NOT_FOUND."""


class PackNotFoundError(NotFoundError):
    """NOT_FOUND PACK_NOT_FOUND."""


class PartNotFoundError(NotFoundError):
    """NOT_FOUND PART_NOT_FOUND."""


class ImageNotFoundError(NotFoundError):
    """NOT_FOUND IMAGE_NOT_FOUND."""


class IllegalTransitionError(FailedPreconditionError):
    """FAILED_PRECONDITION ILLEGAL_TRANSITION: the job's state does not allow this; `metadata`
    has `job_id` and, for a refused state change, `state` and `target`."""


class DraftEmptyError(FailedPreconditionError):
    """FAILED_PRECONDITION DRAFT_EMPTY: no part of the draft makes a job."""


class DraftRevisionMismatchError(FailedPreconditionError):
    """FAILED_PRECONDITION DRAFT_REVISION_MISMATCH: the draft changed since the revision the
    client saw; preview again."""


class RowErrorsError(FailedPreconditionError):
    """Raised by the SDK itself (reason ROW_ERRORS) when a draft to enqueue has rows that make
    no job and `skip_bad_rows` was not given. `row_errors` lists them."""

    def __init__(self, details: ErrorDetails, request_id: str = "") -> None:
        super().__init__(details, request_id)
        #: The RowErrors (stablenew.sdk.types.RowError) of the draft.
        self.row_errors: tuple[Any, ...] = ()


class InvalidStagePlanError(InvalidArgumentError):
    """INVALID_ARGUMENT INVALID_STAGE_PLAN: no stage, or stages that cannot run in this order."""


class ConfigHashMismatchError(InvalidArgumentError):
    """INVALID_ARGUMENT CONFIG_HASH_MISMATCH."""


class InvalidPageTokenError(InvalidArgumentError):
    """INVALID_ARGUMENT INVALID_PAGE_TOKEN: a page token was altered or belongs to another
    list (or the draft changed while its preview was being paged)."""


class PackInvalidError(InvalidArgumentError):
    """INVALID_ARGUMENT PACK_INVALID: the pack or its presets cannot be used."""


class UnresolvedTokenError(InvalidArgumentError):
    """INVALID_ARGUMENT UNRESOLVED_TOKEN."""


class PathOutsideRootError(PermissionDeniedError):
    """PERMISSION_DENIED PATH_OUTSIDE_ROOT: an image path leaves the runner's output root."""


class SequencePrunedError(OutOfRangeError):
    """OUT_OF_RANGE SEQUENCE_PRUNED: the asked events are gone from the queue's log."""

    @property
    def oldest_sequence(self) -> int:
        """The oldest sequence the log still keeps (0 when the server did not say)."""
        text = self.metadata.get("oldest_sequence", "")
        return int(text) if text.isdigit() else 0


class WebuiUnavailableError(UnavailableError):
    """UNAVAILABLE WEBUI_UNAVAILABLE: the runner cannot reach its WebUI."""


class DependencyUnavailableError(UnavailableError):
    """UNAVAILABLE DEPENDENCY_UNAVAILABLE: a service the called one depends on is down."""


class WebuiOutOfMemoryError(ResourceExhaustedError):
    """RESOURCE_EXHAUSTED WEBUI_OUT_OF_MEMORY."""


class TooManyVariantsError(ResourceExhaustedError):
    """RESOURCE_EXHAUSTED TOO_MANY_VARIANTS."""


class StorageFailureError(InternalError):
    """INTERNAL STORAGE_FAILURE: nothing acknowledged is lost."""


class ConsumerNotFoundError(NotFoundError):
    """NOT_FOUND CONSUMER_NOT_FOUND: no such durable consumer (never created, deleted or
    expired)."""


class ConsumerAlreadyExistsError(AlreadyExistsError):
    """ALREADY_EXISTS CONSUMER_ALREADY_EXISTS."""


class WaitTimeoutError(StableNewError, TimeoutError):
    """Raised by the SDK itself (code DEADLINE_EXCEEDED, reason WAIT_TIMEOUT) when `wait` or
    `run_pack` gave up after its `timeout`; the job itself goes on. `metadata["job_id"]` names
    it."""

    CODE = Code.DEADLINE_EXCEEDED


_BY_CODE: dict[Code, type[StableNewError]] = {
    cls.CODE: cls for cls in (
        CancelledError, InvalidArgumentError, NotFoundError, AlreadyExistsError,
        PermissionDeniedError, ResourceExhaustedError, FailedPreconditionError, OutOfRangeError,
        UnimplementedError, InternalError, UnavailableError, DeadlineExceededError,
        UnauthenticatedError)
}
_BY_CODE[Code.UNKNOWN] = InternalError
_BY_CODE[Code.DATA_LOSS] = InternalError

_BY_REASON: dict[str, type[StableNewError]] = {
    "JOB_NOT_FOUND": JobNotFoundError,
    "DRAFT_NOT_FOUND": DraftNotFoundError,
    "PACK_NOT_FOUND": PackNotFoundError,
    "PART_NOT_FOUND": PartNotFoundError,
    "IMAGE_NOT_FOUND": ImageNotFoundError,
    "ILLEGAL_TRANSITION": IllegalTransitionError,
    "DRAFT_EMPTY": DraftEmptyError,
    "DRAFT_REVISION_MISMATCH": DraftRevisionMismatchError,
    "INVALID_STAGE_PLAN": InvalidStagePlanError,
    "CONFIG_HASH_MISMATCH": ConfigHashMismatchError,
    "INVALID_PAGE_TOKEN": InvalidPageTokenError,
    "PACK_INVALID": PackInvalidError,
    "UNRESOLVED_TOKEN": UnresolvedTokenError,
    "PATH_OUTSIDE_ROOT": PathOutsideRootError,
    "SEQUENCE_PRUNED": SequencePrunedError,
    "WEBUI_UNAVAILABLE": WebuiUnavailableError,
    "DEPENDENCY_UNAVAILABLE": DependencyUnavailableError,
    "WEBUI_OUT_OF_MEMORY": WebuiOutOfMemoryError,
    "TOO_MANY_VARIANTS": TooManyVariantsError,
    "STORAGE_FAILURE": StorageFailureError,
    "CONSUMER_NOT_FOUND": ConsumerNotFoundError,
    "CONSUMER_ALREADY_EXISTS": ConsumerAlreadyExistsError,
}


def error_class(code: Code, reason: str) -> type[StableNewError]:
    """The most specific class for a code and reason: the reason's class when it belongs to
    that code, else the code's class, else StableNewError."""
    by_code = _BY_CODE.get(code, StableNewError)
    by_reason = _BY_REASON.get(reason)
    if by_reason is not None and issubclass(by_reason, by_code):
        return by_reason
    return by_code


def _details(call: grpc.Call) -> ErrorDetails:
    """The rich status of a failed call; a plain one (from gRPC itself) has no reason."""
    try:
        status = rpc_status.from_call(call)
    except ValueError:  # a details trailer that disagrees with the status: trust the status
        status = None
    if status is not None:
        return details_from_status(status)
    return ErrorDetails(Code[call.code().name], call.details() or "")


def _request_id(call: grpc.Call) -> str:
    for metadata in (call.initial_metadata(), call.trailing_metadata()):
        for key, value in metadata or ():
            if key == _REQUEST_ID_HEADER:
                return str(value)
    return ""


def error_from_rpc(error: grpc.RpcError, service: str = "", address: str = "") -> StableNewError:
    """The typed exception for a failed call (sync or asyncio).

    Args:
        error: What grpc raised; it is also a `grpc.Call` for every failed call.
        service: The service called, kept on the exception.
        address: The address dialled, kept on the exception.
    """
    call: Any = error
    details = _details(call)
    typed = error_class(details.code, details.reason)(details, _request_id(call))
    typed.service, typed.address = service, address
    return typed
