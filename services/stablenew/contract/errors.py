"""The error vocabulary every layer shares, with no transport in it.

Domains, stores and cores raise `ServiceError` (or one of the helpers below) with a canonical
`Code`, an `ErrorReason` from errors.proto and, for bad input, the fields at fault. The server
runtime turns it into a rich gRPC status (google.rpc.Status with ErrorInfo and BadRequest); the
SDK decodes that status back into the same parts. Nothing here imports grpc.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

ERROR_DOMAIN = "stablenew.v1"


class Code(Enum):
    """The canonical status codes the services answer with (google.rpc.Code)."""

    OK = code_pb2.OK
    CANCELLED = code_pb2.CANCELLED
    UNKNOWN = code_pb2.UNKNOWN
    INVALID_ARGUMENT = code_pb2.INVALID_ARGUMENT
    DEADLINE_EXCEEDED = code_pb2.DEADLINE_EXCEEDED
    NOT_FOUND = code_pb2.NOT_FOUND
    ALREADY_EXISTS = code_pb2.ALREADY_EXISTS
    PERMISSION_DENIED = code_pb2.PERMISSION_DENIED
    RESOURCE_EXHAUSTED = code_pb2.RESOURCE_EXHAUSTED
    FAILED_PRECONDITION = code_pb2.FAILED_PRECONDITION
    ABORTED = code_pb2.ABORTED
    OUT_OF_RANGE = code_pb2.OUT_OF_RANGE
    UNIMPLEMENTED = code_pb2.UNIMPLEMENTED
    INTERNAL = code_pb2.INTERNAL
    UNAVAILABLE = code_pb2.UNAVAILABLE
    DATA_LOSS = code_pb2.DATA_LOSS
    UNAUTHENTICATED = code_pb2.UNAUTHENTICATED


class ErrorReason(Enum):
    """errors.proto's ErrorReason without its prefix: the ErrorInfo reason strings.

    The values are the proto enum numbers; a test keeps both lists equal.
    """

    UNSPECIFIED = 0
    INVALID_FIELD = 1
    UNAUTHENTICATED = 2
    NOT_IMPLEMENTED = 3
    JOB_NOT_FOUND = 4
    DRAFT_NOT_FOUND = 5
    PACK_NOT_FOUND = 6
    PART_NOT_FOUND = 7
    IMAGE_NOT_FOUND = 8
    ILLEGAL_TRANSITION = 9
    LEASE_NOT_CURRENT = 10
    DRAFT_EMPTY = 11
    DRAFT_REVISION_MISMATCH = 12
    INVALID_STAGE_PLAN = 13
    CONFIG_HASH_MISMATCH = 14
    INVALID_PAGE_TOKEN = 15
    PACK_INVALID = 16
    UNRESOLVED_TOKEN = 17
    PATH_OUTSIDE_ROOT = 18
    SEQUENCE_PRUNED = 19
    WEBUI_UNAVAILABLE = 20
    DEPENDENCY_UNAVAILABLE = 21
    WEBUI_OUT_OF_MEMORY = 22
    TOO_MANY_VARIANTS = 23
    STORAGE_FAILURE = 24
    CONSUMER_NOT_FOUND = 25
    CONSUMER_ALREADY_EXISTS = 26


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request: its path (e.g. `config.steps`) and what is wrong with it."""

    field: str
    description: str


@dataclass
class ServiceError(Exception):
    """An error a use case reports to its caller, whatever the transport."""

    code: Code
    reason: ErrorReason
    message: str
    violations: Sequence[FieldViolation] = ()
    metadata: Mapping[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.code.name} {self.reason.name}: {self.message}"


def invalid_argument(field_path: str, description: str) -> ServiceError:
    """INVALID_ARGUMENT INVALID_FIELD naming one field."""
    return ServiceError(
        Code.INVALID_ARGUMENT,
        ErrorReason.INVALID_FIELD,
        f"{field_path}: {description}",
        violations=[FieldViolation(field_path, description)],
    )


def required(value: str, field_path: str) -> str:
    """`value`, or INVALID_ARGUMENT naming the field when it is empty."""
    if not value:
        raise invalid_argument(field_path, "required")
    return value


def not_implemented(what: str) -> ServiceError:
    return ServiceError(Code.UNIMPLEMENTED, ErrorReason.NOT_IMPLEMENTED, what)


def to_status_proto(error: ServiceError) -> status_pb2.Status:
    """The google.rpc.Status a client receives for `error`."""
    info = error_details_pb2.ErrorInfo(
        reason=error.reason.name, domain=ERROR_DOMAIN, metadata=dict(error.metadata)
    )
    details = [_pack(info)]
    if error.violations:
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=violation.field, description=violation.description)
                for violation in error.violations
            ]
        )
        details.append(_pack(bad_request))
    return status_pb2.Status(code=error.code.value, message=error.message, details=details)


def _pack(message: error_details_pb2.ErrorInfo | error_details_pb2.BadRequest) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


@dataclass(frozen=True)
class ErrorDetails:
    """What a client reads back from a failed call. `reason` is the ErrorInfo reason string
    (empty for a plain status, e.g. one from gRPC itself), kept as text so that a reason newer
    than this code is still shown."""

    code: Code
    message: str
    reason: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    violations: Sequence[FieldViolation] = ()


def details_from_status(status: status_pb2.Status) -> ErrorDetails:
    """Decode a google.rpc.Status: its ErrorInfo reason and metadata, its BadRequest fields."""
    reason, metadata, violations = "", {}, []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason, metadata = info.reason, dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            violations = [FieldViolation(v.field, v.description)
                          for v in bad_request.field_violations]
    return ErrorDetails(Code(status.code), status.message, reason, metadata, violations)
