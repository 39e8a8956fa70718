"""The bundle domain types stay twins of bundle_service.proto, so the gRPC edge can convert them
with the generic mapping; reason names are ErrorReason names."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any

import pytest

from stablenew.bundle.domain import BundleSummary, Reason, RowError
from stablenew.bundle.packs.model import (
    MatrixMode,
    MatrixSlot,
    Pack,
    PackFormat,
    PackMatrix,
    PackRow,
    PackSummary,
)
from stablenew.contract.model import PromptTag, PromptTagKind
from stablenew.contract.proto_mapping import fill_proto, from_proto
from stablenew.v1 import bundle_service_pb2 as pb
from stablenew.v1 import errors_pb2

TWINS: list[tuple[type[Any], Any]] = [
    (MatrixSlot, pb.MatrixSlot), (PackMatrix, pb.PackMatrix), (PackRow, pb.PackRow),
    (PackSummary, pb.PackSummary), (Pack, pb.Pack), (RowError, pb.RowError),
    (BundleSummary, pb.BundleSummary),
]


@pytest.mark.parametrize(("domain", "message"), TWINS)
def test_field_names_match_the_proto(domain: type[Any], message: Any) -> None:
    # A deprecated field is kept only for old clients: the edge fills it, the domain has none.
    names = {field.name for field in dataclasses.fields(domain)}
    assert names == {field.name for field in message.DESCRIPTOR.fields
                     if not field.GetOptions().deprecated}


def test_the_only_deprecated_field_is_the_v1_row_error_reason() -> None:
    deprecated = [field.full_name for _, message in TWINS for field in message.DESCRIPTOR.fields
                  if field.GetOptions().deprecated]
    assert deprecated == ["stablenew.v1.RowError.reason_name"]


@pytest.mark.parametrize(("domain", "prefix", "generated"), [
    (PackFormat, "PACK_FORMAT_", pb.PackFormat), (MatrixMode, "MATRIX_MODE_", pb.MatrixMode),
    (Reason, "ROW_ERROR_REASON_", pb.RowErrorReason),
])
def test_enum_numbers_match_the_proto(domain: type[IntEnum], prefix: str, generated: Any) -> None:
    assert {f"{prefix}{member.name}": member.value for member in domain} == dict(generated.items())


def test_reasons_are_error_reason_names() -> None:
    declared = errors_pb2.ErrorReason.DESCRIPTOR.values_by_name
    names = {name.removeprefix("ERROR_REASON_") for name in declared}
    assert {reason.name for reason in Reason} <= names


@pytest.mark.parametrize("value", [
    PackRow(index=2, positive="a <lora:x:0.5>", negative="b",
            tags=[PromptTag(PromptTagKind.LORA, "x", 0.5)], line=7),
    PackMatrix(enabled=True, mode=MatrixMode.ROTATE, limit=3,
               slots=[MatrixSlot("job", ["knight", "wizard"])]),
    PackSummary(pack_id="castles", name="Castles", format=PackFormat.TXT, row_count=2,
                modify_time=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC), error_message=""),
    RowError(part_id="p", prompt_pack_id="castles", row_index=1, line=4,
             reason=Reason.UNRESOLVED_TOKEN, message="castles row 1 (line 4): ..."),
    BundleSummary(part_count=1, job_count=2, estimated_images=4, positive_preview="a",
                  negative_preview="b", stage_summary="txt2img", batch_summary="...",
                  errors=[RowError(part_id="p", reason=Reason.PACK_INVALID, message="m")]),
])
def test_the_generic_mapping_round_trips_them(value: Any) -> None:
    message = dict(TWINS)[type(value)]()

    fill_proto(value, message)

    assert from_proto(type(value), message) == value
