"""The one mapping between the contract's ServiceError and gRPC: a rich status out of the
server (google.rpc.Status with ErrorInfo and BadRequest), and its decoding from a failed call
the services make to each other."""

from __future__ import annotations

from typing import cast

import grpc
from grpc_status import rpc_status

from stablenew.contract.errors import (
    Code,
    ErrorDetails,
    FieldViolation,
    ServiceError,
    details_from_status,
    to_status_proto,
)


def grpc_code(code: Code) -> grpc.StatusCode:
    return grpc.StatusCode[code.name]


# A status travels in the trailers, and clients refuse metadata over 8 KiB (gRPC's default):
# an error that echoes a huge input (a 20,000-character id) must still arrive as itself.
MAX_MESSAGE_CHARS = 1000
MAX_DETAIL_CHARS = 200
MAX_VIOLATIONS = 10


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _fitting(error: ServiceError) -> ServiceError:
    """The error with every text clipped, so its status fits in the trailers."""
    violations = [FieldViolation(_clip(v.field, MAX_DETAIL_CHARS),
                                 _clip(v.description, MAX_DETAIL_CHARS))
                  for v in error.violations[:MAX_VIOLATIONS]]
    metadata = {_clip(key, MAX_DETAIL_CHARS): _clip(value, MAX_DETAIL_CHARS)
                for key, value in list(error.metadata.items())[:MAX_VIOLATIONS]}
    # A plain ServiceError: a subclass may have an __init__ of its own.
    return ServiceError(error.code, error.reason, _clip(error.message, MAX_MESSAGE_CHARS),
                        violations, metadata)


def to_grpc_status(error: ServiceError) -> grpc.Status:
    """What the server answers for a use case's ServiceError, clipped to fit the trailers."""
    return rpc_status.to_status(to_status_proto(_fitting(error)))


def details_of(error: grpc.RpcError) -> ErrorDetails:
    """Decode the rich status of a failed call; plain statuses give an empty reason."""
    call = cast(grpc.Call, error)
    status = rpc_status.from_call(call)
    if status is None:
        return ErrorDetails(Code[call.code().name], call.details() or "")
    return details_from_status(status)
