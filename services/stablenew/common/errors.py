"""Rich gRPC errors: a canonical status code, a google.rpc.Status with an ErrorInfo reason and,
for bad input, a BadRequest naming the field.

Servicers raise ServiceError (or use the helpers); the request interceptor turns it into the
status the client sees, so no servicer builds status details by hand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import cast

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from stablenew.v1 import errors_pb2

ERROR_DOMAIN = "stablenew.v1"


def reason_name(reason: int) -> str:
    """ErrorReason value -> the ErrorInfo reason string, e.g. JOB_NOT_FOUND."""
    return errors_pb2.ErrorReason.Name(reason).removeprefix("ERROR_REASON_")  # type: ignore[arg-type]


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


@dataclass
class ServiceError(Exception):
    """An error a servicer reports to its caller."""

    code: grpc.StatusCode
    reason: int
    message: str
    violations: Sequence[FieldViolation] = ()
    metadata: Mapping[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.code.name} {reason_name(self.reason)}: {self.message}"

    def to_status(self) -> grpc.Status:
        info = error_details_pb2.ErrorInfo(
            reason=reason_name(self.reason), domain=ERROR_DOMAIN, metadata=dict(self.metadata)
        )
        details = [_pack(info)]
        if self.violations:
            bad_request = error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=v.field, description=v.description
                    )
                    for v in self.violations
                ]
            )
            details.append(_pack(bad_request))
        status = status_pb2.Status(
            code=getattr(code_pb2, self.code.name), message=self.message, details=details
        )
        return rpc_status.to_status(status)


def _pack(message: error_details_pb2.ErrorInfo | error_details_pb2.BadRequest) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def invalid_argument(field_path: str, description: str) -> ServiceError:
    return ServiceError(
        grpc.StatusCode.INVALID_ARGUMENT,
        errors_pb2.ERROR_REASON_INVALID_FIELD,
        f"{field_path}: {description}",
        violations=[FieldViolation(field_path, description)],
    )


def required(value: str, field_path: str) -> str:
    """`value`, or INVALID_ARGUMENT naming the field when it is empty."""
    if not value:
        raise invalid_argument(field_path, "required")
    return value


def not_implemented(what: str) -> ServiceError:
    return ServiceError(
        grpc.StatusCode.UNIMPLEMENTED, errors_pb2.ERROR_REASON_NOT_IMPLEMENTED, what
    )


@dataclass(frozen=True)
class ErrorDetails:
    """What a client reads back from a failed call."""

    code: grpc.StatusCode
    message: str
    reason: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    violations: Sequence[FieldViolation] = ()


def details_of(error: grpc.RpcError) -> ErrorDetails:
    """Decode the rich status of a failed call; plain statuses give an empty reason."""
    call = cast(grpc.Call, error)
    code = call.code()
    status = rpc_status.from_call(call)
    if status is None:
        return ErrorDetails(code, call.details() or "")
    result = ErrorDetails(code, status.message)
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            result = ErrorDetails(code, status.message, info.reason, dict(info.metadata),
                                  result.violations)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            violations = [FieldViolation(v.field, v.description)
                          for v in bad_request.field_violations]
            result = ErrorDetails(code, status.message, result.reason, result.metadata, violations)
    return result
