"""Bad input at the bundle's request edge: each case here once answered INTERNAL, or left a
draft nobody could read. Refused with the field named, and nothing changes."""

from __future__ import annotations

import grpc
import pytest

from stablenew.bundle.servicer import MAX_DRAFT_BYTES
from stablenew.contract.errors import Code
from stablenew.contract.request_limits import MAX_TEXT_CHARS
from stablenew.v1 import bundle_service_pb2 as pb
from stablenew.v1 import job_pb2
from tests.bundle_service.conftest import Stack
from tests.bundle_service.harness import rpc_error, txt2img_config


def _fields(details: object) -> list[str]:
    return [violation.field for violation in details.violations]  # type: ignore[attr-defined]


@pytest.mark.parametrize("field, value", [("run_mode", -1), ("source", 99), ("priority", -1)])
def test_enqueue_with_an_unknown_enum_number_is_refused(stack: Stack, field: str,
                                                        value: int) -> None:
    draft = stack.bundle.new_draft()
    stack.bundle.add_manual(draft.draft_id, "a lighthouse", txt2img_config())
    request = pb.EnqueueDraftRequest(draft_id=draft.draft_id, run_mode=job_pb2.RUN_MODE_QUEUE)
    setattr(request, field, value)
    details = rpc_error(lambda: stack.bundle.stub.EnqueueDraft(request, timeout=10))
    assert details.code == Code.INVALID_ARGUMENT
    assert _fields(details) == [field]


def test_an_unknown_upscale_mode_in_a_part_is_refused(stack: Stack) -> None:
    draft = stack.bundle.new_draft()
    config = txt2img_config()
    config.upscale.mode = 99  # type: ignore[assignment]
    details = rpc_error(lambda: stack.bundle.stub.AddPart(pb.AddPartRequest(
        draft_id=draft.draft_id, prompt="a lighthouse", config=config), timeout=10))
    assert details.code == Code.INVALID_ARGUMENT
    assert _fields(details) == ["config"]


def test_ids_and_prompts_have_limits(stack: Stack) -> None:
    stub = stack.bundle.stub
    details = rpc_error(lambda: stub.GetDraft(pb.GetDraftRequest(draft_id="d" * 20_000)))
    assert (details.code, _fields(details)) == (Code.INVALID_ARGUMENT, ["draft_id"])
    draft = stack.bundle.new_draft()
    details = rpc_error(lambda: stub.AddPart(pb.AddPartRequest(
        draft_id=draft.draft_id, prompt="x" * (MAX_TEXT_CHARS + 1), config=txt2img_config())))
    assert (details.code, _fields(details)) == (Code.INVALID_ARGUMENT, ["prompt"])
    assert list(stack.bundle.draft(draft.draft_id).parts) == []


def test_a_part_that_would_make_the_draft_unreadable_is_refused(stack: Stack) -> None:
    bundle = stack.bundle
    draft = bundle.new_draft()
    prompt = "a castle on a hill, " * (MAX_TEXT_CHARS // 20)
    added = 0
    while True:
        request = pb.AddPartRequest(draft_id=draft.draft_id, prompt=prompt,
                                    negative_prompt=prompt, config=txt2img_config())
        try:
            bundle.stub.AddPart(request, timeout=30)
        except grpc.RpcError:  # the refusal, examined below
            break
        added += 1
        assert added < 100, "the draft kept growing"
    details = rpc_error(lambda: bundle.stub.AddPart(request, timeout=30))
    assert details.code == Code.RESOURCE_EXHAUSTED
    assert _fields(details) == ["prompt"]
    assert "more than" in details.message and "a client can read" in details.message
    readable = bundle.draft(draft.draft_id)
    assert len(readable.parts) == added
    assert readable.ByteSize() <= MAX_DRAFT_BYTES  # what a client with gRPC's defaults reads
