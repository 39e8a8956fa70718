"""The contract changes recorded against the released v1 contract keep its wire form: a client
built from the released protos (their buf image, protos/released/v1.binpb) and today's services
read each other's bytes. docs/API.md, "Contract checks"."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

from stablenew.contract.proto_mapping import to_proto
from stablenew.v1 import bundle_service_pb2, job_pb2, pipeline_pb2
from tests.foundation.test_config_hash import castle_job

RELEASED = Path(__file__).resolve().parents[2] / "protos" / "released" / "v1.binpb"


@cache
def _released_pool() -> descriptor_pool.DescriptorPool:
    # A buf image is a FileDescriptorSet with extra fields that a FileDescriptorSet skips.
    files = descriptor_pb2.FileDescriptorSet.FromString(RELEASED.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        pool.Add(file)
    return pool


def released(name: str) -> Any:
    """The message class `stablenew.v1.<name>` as the released contract defined it."""
    descriptor = _released_pool().FindMessageTypeByName(f"stablenew.v1.{name}")
    return message_factory.GetMessageClass(descriptor)


def as_other(message: Message, other: Any) -> Any:
    """`message` read by a program built with the other contract."""
    return other.FromString(message.SerializeToString())


@pytest.mark.parametrize("number", [0, 1, 2, 3])
def test_resize_mode_is_the_same_number_on_the_wire(number: int) -> None:
    old = released("Img2ImgConfig")(denoising_strength=0.5, resize_mode=number)
    new = pipeline_pb2.Img2ImgConfig(denoising_strength=0.5,
                                     resize_mode=pipeline_pb2.ResizeMode.ValueType(number))
    assert new.SerializeToString() == old.SerializeToString()
    assert as_other(old, pipeline_pb2.Img2ImgConfig) == new
    assert as_other(new, released("Img2ImgConfig")) == old


@pytest.mark.parametrize("number", [0, 1, 2, 3])
def test_updated_event_priority_is_the_same_number_on_the_wire(number: int) -> None:
    old = released("JobUpdatedEvent")(label="x", priority=number)
    new = job_pb2.JobUpdatedEvent(label="x", priority=job_pb2.Priority.ValueType(number))
    assert new.SerializeToString() == old.SerializeToString()
    assert as_other(old, job_pb2.JobUpdatedEvent) == new


def test_a_normalized_job_reads_the_same_with_either_contract() -> None:
    new = to_proto(castle_job())
    old = as_other(new, released("NormalizedJob"))
    assert old.SerializeToString(deterministic=True) == new.SerializeToString(deterministic=True)
    assert old.img2img.resize_mode == 1


def test_a_v1_client_still_reads_the_row_error_reason_as_its_string() -> None:
    new = bundle_service_pb2.RowError(
        part_id="p", row_index=2, message="castles row 2: [[job]]", reason_name="UNRESOLVED_TOKEN",
        reason=bundle_service_pb2.ROW_ERROR_REASON_UNRESOLVED_TOKEN)
    old = as_other(new, released("RowError"))
    assert (old.part_id, old.row_index, old.reason, old.message) == (
        "p", 2, "UNRESOLVED_TOKEN", "castles row 2: [[job]]")
    # A v1 sender's string arrives as reason_name; the enum did not exist then.
    sent = released("RowError")(row_index=2, reason="PACK_INVALID")
    received = as_other(sent, bundle_service_pb2.RowError)
    assert (received.reason_name, received.reason) == (
        "PACK_INVALID", bundle_service_pb2.ROW_ERROR_REASON_UNSPECIFIED)
