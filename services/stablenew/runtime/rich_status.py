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
    ServiceError,
    details_from_status,
    to_status_proto,
)


def grpc_code(code: Code) -> grpc.StatusCode:
    return grpc.StatusCode[code.name]


def to_grpc_status(error: ServiceError) -> grpc.Status:
    """What the server answers for a use case's ServiceError."""
    return rpc_status.to_status(to_status_proto(error))


def details_of(error: grpc.RpcError) -> ErrorDetails:
    """Decode the rich status of a failed call; plain statuses give an empty reason."""
    call = cast(grpc.Call, error)
    status = rpc_status.from_call(call)
    if status is None:
        return ErrorDetails(Code[call.code().name], call.details() or "")
    return details_from_status(status)
