"""Packs and drafts through the SDK, against the real bundle service: every method, its typed
results and its errors."""

from __future__ import annotations

from typing import Any

import pytest

from stablenew.contract import model
from stablenew.sdk import (
    DraftEmptyError,
    DraftNotFoundError,
    DraftRevisionMismatchError,
    InvalidArgumentError,
    InvalidStagePlanError,
    JobState,
    NormalizedJob,
    PackFormat,
    PackNotFoundError,
    PartNotFoundError,
    Priority,
    PromptSource,
    RowErrorReason,
    RowErrorsError,
    RunMode,
)
from stablenew.v1 import bundle_service_pb2
from tests.bundle_service.harness import preset, unique, write_pack
from tests.sdk.harness import PACK_ID, PACK_ROWS, Stack, new_draft

MANUAL_CONFIG = {"stages.txt2img_enabled": True, "txt2img": {"steps": 4, "seed": 42}}


def test_packs_are_listed_and_read(client: Any) -> None:
    summary = next(pack for pack in client.packs.list(page_size=1) if pack.pack_id == PACK_ID)
    assert (summary.name, summary.format, summary.row_count) == ("Castles", PackFormat.TXT, 3)
    assert isinstance(summary.proto, bundle_service_pb2.PackSummary)
    pack = client.packs.get(PACK_ID)
    assert [row.positive for row in pack.rows] == list(PACK_ROWS)
    assert isinstance(pack.defaults, model.PipelineConfig)
    assert pack.defaults.stages.txt2img_enabled
    assert pack.proto.pack_id == PACK_ID


def test_an_unknown_pack_is_pack_not_found(client: Any) -> None:
    with pytest.raises(PackNotFoundError) as caught:
        client.packs.get("no-such-pack")
    assert caught.value.reason == "PACK_NOT_FOUND"


def test_a_draft_is_created_once_per_request_id_and_listed(client: Any) -> None:
    request_id = unique("create-")
    draft = client.drafts.create(display_name="mine", request_id=request_id)
    assert client.drafts.create(display_name="mine", request_id=request_id) == draft
    assert client.drafts.get(draft.draft_id).display_name == "mine"
    assert draft.draft_id in {d.draft_id for d in client.drafts.list(page_size=2)}


def test_parts_are_added_removed_and_cleared(client: Any) -> None:
    draft = client.drafts.create()
    draft = client.drafts.add_part(draft.draft_id, "a red fox", negative="blurry",
                                   config=MANUAL_CONFIG)
    manual = draft.parts[-1]
    assert (manual.prompt_source, manual.prompt, manual.negative_prompt) == (
        PromptSource.MANUAL, "a red fox", "blurry")
    assert manual.config.txt2img.steps == 4
    draft = client.drafts.add_pack(draft.draft_id, PACK_ID, rows=[0, 2], prepend="oil,",
                                   overrides={"txt2img.steps": 6})
    assert [(p.row_index, p.prepend_text, p.config.txt2img.steps) for p in draft.parts[1:]] == [
        (0, "oil,", 6), (2, "oil,", 6)]
    assert draft.summary.part_count == 3
    revision = draft.revision
    draft = client.drafts.remove_part(draft.draft_id, manual.part_id)
    assert [p.prompt_pack_id for p in draft.parts] == [PACK_ID, PACK_ID]
    assert draft.revision > revision
    assert client.drafts.clear(draft.draft_id).parts == []


def test_a_config_field_that_does_not_exist_is_refused_before_the_call(client: Any) -> None:
    draft = client.drafts.create()
    with pytest.raises(InvalidArgumentError) as caught:
        client.drafts.add_part(draft.draft_id, "x", config={"txt2img.stepz": 4})
    assert caught.value.reason == "INVALID_FIELD"
    assert [v.field for v in caught.value.violations] == ["config"]
    assert "stepz" in caught.value.violations[0].description
    assert client.drafts.get(draft.draft_id).parts == []


def test_a_config_without_a_stage_is_an_invalid_stage_plan(client: Any) -> None:
    draft = client.drafts.create()
    with pytest.raises(InvalidStagePlanError) as caught:
        client.drafts.add_part(draft.draft_id, "x", config={"txt2img.steps": 4})
    assert caught.value.violations


def test_a_row_that_does_not_exist_names_the_field(client: Any) -> None:
    draft = client.drafts.create()
    with pytest.raises(InvalidArgumentError) as caught:
        client.drafts.add_pack(draft.draft_id, PACK_ID, rows=[0, 7])
    assert [v.field for v in caught.value.violations] == ["row_indices[1]"]


def test_unknown_drafts_and_parts(client: Any) -> None:
    with pytest.raises(DraftNotFoundError):
        client.drafts.get("no-such-draft")
    draft = client.drafts.create()
    with pytest.raises(PartNotFoundError):
        client.drafts.remove_part(draft.draft_id, "no-such-part")


def test_the_preview_is_read_page_by_page(client: Any) -> None:
    draft = new_draft(client)
    preview = client.drafts.preview(draft.draft_id, page_size=1)
    assert (preview.summary.job_count, preview.draft_revision, preview.errors) == (
        3, draft.revision, [])
    jobs = list(preview.jobs)
    assert [job.index for job in jobs] == [0, 1, 2]
    assert all(isinstance(job, NormalizedJob) and job.seed != -1 for job in jobs)
    assert [job.proto.config_hash for job in jobs] == [job.config_hash for job in jobs]


def test_an_adetailer_pass_keeps_the_zeros_a_mapping_sets(client: Any) -> None:
    # A mapping (or a message) tells a field left out from one set to 0; a twin cannot, and
    # its zeros of these four fields are "not set": the extension's defaults.
    draft = client.drafts.create(display_name=unique("sdk-adetailer-"))
    detailed = {"stages": {"txt2img_enabled": True, "adetailer_enabled": True},
                "txt2img": {"steps": 4}}
    client.drafts.add_part(draft.draft_id, "a mapping", config=detailed | {"adetailer": {
        "passes": [{"model": "face_yolov8n.pt", "mask_blur": 0, "inpaint_only_masked": False}]}})
    twin = model.PipelineConfig(
        stages=model.StageFlags(txt2img_enabled=True, adetailer_enabled=True),
        txt2img=model.Txt2ImgConfig(steps=4),
        adetailer=model.AdetailerConfig([model.AdetailerPass(model="face_yolov8n.pt")]))
    client.drafts.add_part(draft.draft_id, "a twin", config=twin)

    jobs = list(client.drafts.preview(draft.draft_id).jobs)

    inpainting = [[(p.mask_blur, p.dilate_erode, p.inpaint_only_masked, p.inpaint_padding)
                   for p in job.adetailer_passes] for job in jobs]
    assert inpainting == [[(0, 4, False, 32)], [(4, 4, True, 32)]]


def test_a_preview_of_a_draft_changed_meanwhile_is_refused(client: Any) -> None:
    draft = new_draft(client)
    jobs = client.drafts.preview(draft.draft_id, page_size=1).jobs
    next(jobs)
    client.drafts.add_part(draft.draft_id, "a newt", config=MANUAL_CONFIG)
    with pytest.raises(InvalidArgumentError) as caught:
        list(jobs)
    assert [v.field for v in caught.value.violations] == ["page_token"]


def test_enqueue_submits_what_was_previewed(client: Any, paused: None) -> None:
    draft = new_draft(client, rows=[1])
    preview = client.drafts.preview(draft.draft_id)
    job = client.drafts.enqueue(draft.draft_id, run_mode="queue", priority=Priority.HIGH,
                                label="sdk-label", expected_revision=preview.draft_revision,
                                request_id=unique("enqueue-"))
    assert (job.state, job.priority, job.label, job.entry_count) == (
        JobState.QUEUED, Priority.HIGH, "sdk-label", 1)
    assert (job.origin.run_mode, job.origin.draft_id) == (RunMode.QUEUE, draft.draft_id)
    queued = client.queue.get(job.job_id)
    assert [e.config_hash for e in queued.entries] == [j.config_hash for j in preview.jobs]


def test_enqueue_of_a_changed_draft_is_refused(client: Any) -> None:
    draft = new_draft(client)
    client.drafts.add_part(draft.draft_id, "a newt", config=MANUAL_CONFIG)
    with pytest.raises(DraftRevisionMismatchError):
        client.drafts.enqueue(draft.draft_id, expected_revision=draft.revision)


def test_enqueue_of_an_empty_draft_is_refused(client: Any) -> None:
    draft = client.drafts.create()
    with pytest.raises(DraftEmptyError):
        client.drafts.enqueue(draft.draft_id)


def test_an_unknown_enum_name_is_refused_before_the_call(client: Any) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        client.drafts.enqueue("any-draft", run_mode="sideways")
    assert [v.field for v in caught.value.violations] == ["run_mode"]


def test_rows_that_make_no_job_block_the_enqueue_unless_skipped(
        client: Any, stack: Stack, paused: None) -> None:
    pack_id = unique("holes")
    write_pack(stack.packs_dir, f"{pack_id}.txt", "a good row\n\na __nowhere__ row\n")
    write_pack(stack.packs_dir, f"{pack_id}.json", {"preset_data": preset(steps=4)})
    draft = client.drafts.create()
    draft = client.drafts.add_pack(draft.draft_id, pack_id)
    with pytest.raises(RowErrorsError) as caught:
        client.drafts.enqueue(draft.draft_id)
    assert [(e.row_index, e.reason) for e in caught.value.row_errors] == [
        (1, RowErrorReason.UNRESOLVED_TOKEN)]
    assert caught.value.reason == "ROW_ERRORS"
    job = client.drafts.enqueue(draft.draft_id, skip_bad_rows=True)
    assert job.entry_count == 1
