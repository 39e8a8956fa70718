"""The contract's error vocabulary matches errors.proto and google.rpc, and survives the trip
through a google.rpc.Status."""

from __future__ import annotations

import grpc
from google.rpc import code_pb2

from stablenew.contract.errors import (
    Code,
    ErrorReason,
    FieldViolation,
    ServiceError,
    details_from_status,
    to_status_proto,
)
from stablenew.runtime.rich_status import grpc_code
from stablenew.v1 import errors_pb2


def test_error_reasons_are_the_proto_enum_without_its_prefix() -> None:
    proto = {name.removeprefix("ERROR_REASON_"): number
             for name, number in errors_pb2.ErrorReason.items()}
    assert {reason.name: reason.value for reason in ErrorReason} == proto


def test_codes_are_the_canonical_codes_and_grpc_knows_each() -> None:
    canonical = {name: number for name, number in code_pb2.Code.items()}
    assert {code.name: code.value for code in Code} == canonical
    for code in Code:
        assert grpc_code(code) == grpc.StatusCode[code.name]
        assert grpc_code(code).value[0] == code.value


def test_a_service_error_round_trips_through_a_status() -> None:
    error = ServiceError(Code.NOT_FOUND, ErrorReason.JOB_NOT_FOUND, "job j1 is not known",
                         violations=[FieldViolation("job_id", "no such job")],
                         metadata={"job_id": "j1"})
    details = details_from_status(to_status_proto(error))
    assert details.code is Code.NOT_FOUND
    assert details.reason == "JOB_NOT_FOUND"
    assert details.message == "job j1 is not known"
    assert details.metadata == {"job_id": "j1"}
    assert list(details.violations) == [FieldViolation("job_id", "no such job")]
    assert str(error) == "NOT_FOUND JOB_NOT_FOUND: job j1 is not known"
