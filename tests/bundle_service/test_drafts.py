"""Drafts over gRPC: CreateDraft, GetDraft, ListDrafts, AddPart, RemovePart, ClearDraft, and the
bundle summary every draft response carries."""

from __future__ import annotations

import base64
from functools import partial

import pytest

from stablenew.contract.errors import Code
from stablenew.v1 import bundle_service_pb2 as pb
from stablenew.v1 import pipeline_pb2
from tests.bundle_service.conftest import Stack
from tests.bundle_service.harness import BundleHarness, rpc_error, txt2img_config, unique

STAGES = pipeline_pb2.StageFlags


def _tamper(token: str) -> str:
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[-2] ^= 0x01  # one bit of the position, the signature left as it was
    return base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")


# --- CreateDraft / GetDraft ---------------------------------------------------------------


def test_create_draft_starts_empty_at_revision_one(stack: Stack) -> None:
    draft = stack.bundle.stub.CreateDraft(pb.CreateDraftRequest(display_name="gui 1")).draft
    assert draft.draft_id
    assert draft.display_name == "gui 1"
    assert draft.revision == 1
    assert list(draft.parts) == []
    assert draft.summary.part_count == 0
    assert draft.summary.job_count == 0
    assert draft.summary.batch_summary == "no jobs"
    assert draft.HasField("create_time") and draft.HasField("update_time")
    assert stack.bundle.draft(draft.draft_id) == draft


def test_create_draft_is_idempotent_per_request_id(stack: Stack) -> None:
    stub, request_id = stack.bundle.stub, unique("create-")
    first = stub.CreateDraft(pb.CreateDraftRequest(display_name="a", request_id=request_id))
    again = stub.CreateDraft(pb.CreateDraftRequest(display_name="b", request_id=request_id))
    assert again.draft.draft_id == first.draft.draft_id
    assert again.draft.display_name == "a"
    other = stub.CreateDraft(pb.CreateDraftRequest(display_name="a", request_id=unique("c-")))
    plain_1 = stub.CreateDraft(pb.CreateDraftRequest(display_name="a"))
    plain_2 = stub.CreateDraft(pb.CreateDraftRequest(display_name="a"))
    ids = {first.draft.draft_id, other.draft.draft_id, plain_1.draft.draft_id,
           plain_2.draft.draft_id}
    assert len(ids) == 4


def test_get_unknown_draft_is_not_found(stack: Stack) -> None:
    details = rpc_error(lambda: stack.bundle.draft("no-such-draft"))
    assert details.code == Code.NOT_FOUND
    assert details.reason == "DRAFT_NOT_FOUND"
    assert details.metadata == {"draft_id": "no-such-draft"}


def test_get_draft_without_an_id_names_the_field(stack: Stack) -> None:
    details = rpc_error(lambda: stack.bundle.draft(""))
    assert details.code == Code.INVALID_ARGUMENT
    assert [v.field for v in details.violations] == ["draft_id"]


def test_several_drafts_are_independent(stack: Stack) -> None:
    bundle = stack.bundle
    gui, cli = bundle.new_draft("gui"), bundle.new_draft("cli")
    bundle.add_manual(gui.draft_id, "a lighthouse", txt2img_config())
    bundle.add_manual(gui.draft_id, "a harbor", txt2img_config())
    bundle.add_manual(cli.draft_id, "a glacier", txt2img_config())
    assert bundle.draft(gui.draft_id).summary.part_count == 2
    assert bundle.draft(cli.draft_id).summary.part_count == 1
    bundle.stub.ClearDraft(pb.ClearDraftRequest(draft_id=gui.draft_id))
    assert bundle.draft(cli.draft_id).summary.positive_preview == "a glacier"


# --- ListDrafts -----------------------------------------------------------------------------


def _all_drafts(bundle: BundleHarness, page_size: int) -> list[pb.ListDraftsResponse]:
    pages, token = [], ""
    while True:
        page = bundle.stub.ListDrafts(pb.ListDraftsRequest(page_size=page_size,
                                                           page_token=token))
        pages.append(page)
        token = page.next_page_token
        if not token:
            return pages


def test_list_drafts_pages_through_every_draft_once(stack: Stack) -> None:
    mine = {stack.bundle.new_draft().draft_id for _ in range(7)}
    pages = _all_drafts(stack.bundle, 3)
    seen = [draft.draft_id for page in pages for draft in page.drafts]
    assert len(seen) == len(set(seen))
    assert mine <= set(seen)
    assert all(len(page.drafts) == 3 for page in pages[:-1])
    assert 1 <= len(pages[-1].drafts) <= 3
    assert all(page.next_page_token for page in pages[:-1])
    # Each listed draft carries its summary, as every draft response does.
    assert all(draft.HasField("summary") for page in pages for draft in page.drafts)
    one_page = stack.bundle.stub.ListDrafts(pb.ListDraftsRequest(page_size=1000))
    assert [draft.draft_id for draft in one_page.drafts] == seen


def test_list_drafts_refuses_tampered_and_foreign_tokens(stack: Stack) -> None:
    for _ in range(3):
        stack.bundle.new_draft()
    token = stack.bundle.stub.ListDrafts(pb.ListDraftsRequest(page_size=1)).next_page_token
    assert token
    draft = stack.bundle.new_draft()
    stack.bundle.add_manual(draft.draft_id, "one", txt2img_config())
    stack.bundle.add_manual(draft.draft_id, "two", txt2img_config())
    preview_token = stack.bundle.stub.PreviewDraft(pb.PreviewDraftRequest(
        draft_id=draft.draft_id, page_size=1)).next_page_token
    for bad in (_tamper(token), "not-a-token", token[:-3], preview_token):
        details = rpc_error(partial(stack.bundle.stub.ListDrafts,
                                    pb.ListDraftsRequest(page_size=1, page_token=bad)))
        assert details.code == Code.INVALID_ARGUMENT
        assert details.reason == "INVALID_PAGE_TOKEN"
        assert [v.field for v in details.violations] == ["page_token"]


def test_list_drafts_page_size_rules(stack: Stack) -> None:
    details = rpc_error(lambda: stack.bundle.stub.ListDrafts(pb.ListDraftsRequest(page_size=-1)))
    assert details.code == Code.INVALID_ARGUMENT
    assert [v.field for v in details.violations] == ["page_size"]
    huge = stack.bundle.stub.ListDrafts(pb.ListDraftsRequest(page_size=1_000_000))
    assert len(huge.drafts) <= 1000


# --- AddPart --------------------------------------------------------------------------------


def test_add_part_adds_a_manual_prompt_with_its_config(stack: Stack) -> None:
    bundle = stack.bundle
    draft = bundle.new_draft()
    config = txt2img_config(width=768, height=512, steps=30, seed=1234, batch_size=2, n_iter=3,
                            adetailer=True, upscale=True)
    response = bundle.add_manual(draft.draft_id, "a lighthouse <lora:detail_tweaker:0.6>",
                                 config, negative="blurry")
    part = response.part
    assert part.part_id
    assert part.prompt_source == pipeline_pb2.PROMPT_SOURCE_MANUAL
    assert (part.prompt, part.negative_prompt) == ("a lighthouse <lora:detail_tweaker:0.6>",
                                                   "blurry")
    # The config as the part runs it: the ADetailer pass with the extension's defaults of the
    # fields it left unset.
    expected = pipeline_pb2.PipelineConfig()
    expected.CopyFrom(config)
    (detection,) = expected.adetailer.passes
    detection.mask_blur, detection.dilate_erode = 4, 4
    detection.inpaint_only_masked, detection.inpaint_padding = True, 32
    assert part.config == expected
    assert part.estimated_images == 2 * 3
    summary = response.draft.summary
    assert response.draft.revision == draft.revision + 1
    assert [p.part_id for p in response.draft.parts] == [part.part_id]
    assert (summary.part_count, summary.job_count, summary.estimated_images) == (1, 1, 6)
    assert summary.positive_preview == "a lighthouse <lora:detail_tweaker:0.6>"
    assert summary.negative_preview == "blurry"
    assert summary.stage_summary == "txt2img → adetailer → upscale"
    assert summary.batch_summary == "1 job, batch 2, 3 iterations each: 6 images"
    assert list(summary.errors) == []


def _flags(**stages: bool) -> pipeline_pb2.PipelineConfig:
    """A config complete for every stage (a detection pass, an upscaler) with `stages` on."""
    config = txt2img_config(adetailer=True, upscale=True)
    config.stages.CopyFrom(STAGES(**stages))
    return config


def _with(**changes: int | float) -> pipeline_pb2.PipelineConfig:
    config = txt2img_config()
    for path, value in changes.items():
        target = config if path in ("batch_size", "n_iter") else config.txt2img
        setattr(target, path, value)
    return config


def _adetailer_without_pass() -> pipeline_pb2.PipelineConfig:
    config = txt2img_config(adetailer=True)
    del config.adetailer.passes[:]
    return config


def _upscale_without_upscaler() -> pipeline_pb2.PipelineConfig:
    config = txt2img_config(upscale=True)
    config.upscale.upscaler = ""
    return config


BAD_CONFIGS = [
    pytest.param(_with(width=500), ["config.txt2img.width"], id="width-500"),
    pytest.param(_with(height=4104), ["config.txt2img.height"], id="height-too-big"),
    pytest.param(_with(steps=-1), ["config.txt2img.steps"], id="steps-negative"),
    pytest.param(_with(steps=151), ["config.txt2img.steps"], id="steps-151"),
    pytest.param(_with(cfg_scale=31.0), ["config.txt2img.cfg_scale"], id="cfg-31"),
    pytest.param(_with(batch_size=9), ["config.batch_size"], id="batch-9"),
    pytest.param(_with(seed=-5), ["config.txt2img.seed"], id="seed-minus-5"),
    pytest.param(_with(width=500, steps=-1), ["config.txt2img.width", "config.txt2img.steps"],
                 id="two-fields"),
    pytest.param(_flags(adetailer_enabled=True), ["config.stages"], id="adetailer-alone"),
    pytest.param(_flags(adetailer_enabled=True, upscale_enabled=True), ["config.stages"],
                 id="adetailer-upscale-no-generation"),
    pytest.param(_flags(), ["config.stages"], id="no-stage"),
    pytest.param(pipeline_pb2.PipelineConfig(), ["config.stages"], id="empty-config"),
    pytest.param(_adetailer_without_pass(), ["config.adetailer.passes"], id="adetailer-no-pass"),
    pytest.param(_upscale_without_upscaler(), ["config.upscale.upscaler"], id="no-upscaler"),
]


@pytest.mark.parametrize(("config", "fields"), BAD_CONFIGS)
def test_add_part_with_a_bad_config_names_the_fields(stack: Stack,
                                                     config: pipeline_pb2.PipelineConfig,
                                                     fields: list[str]) -> None:
    draft = stack.bundle.new_draft()
    details = rpc_error(lambda: stack.bundle.add_manual(draft.draft_id, "a castle", config))
    assert details.code == Code.INVALID_ARGUMENT
    # A plan that cannot run has its own reason (API.md), other bad values are INVALID_FIELD.
    plan_wrong = fields == ["config.stages"]
    assert details.reason == ("INVALID_STAGE_PLAN" if plan_wrong else "INVALID_FIELD")
    assert [v.field for v in details.violations] == fields
    assert all(v.description for v in details.violations)
    assert stack.bundle.draft(draft.draft_id) == draft  # nothing was added


def _img2img_with(resize_mode: int) -> pipeline_pb2.PipelineConfig:
    config = txt2img_config()
    config.stages.img2img_enabled = True
    config.img2img.resize_mode = pipeline_pb2.ResizeMode.ValueType(resize_mode)
    return config


def _upscale_mode(mode: int) -> pipeline_pb2.PipelineConfig:
    config = txt2img_config(upscale=True)
    config.upscale.mode = pipeline_pb2.UpscaleMode.ValueType(mode)
    return config


@pytest.mark.parametrize(("config", "enum_name"), [
    pytest.param(_img2img_with(7), "ResizeMode", id="resize-mode-7"),
    pytest.param(_img2img_with(-1), "ResizeMode", id="resize-mode-negative"),
    pytest.param(_upscale_mode(9), "UpscaleMode", id="upscale-mode-9"),
])
def test_an_enum_value_this_version_does_not_know_is_refused(
        stack: Stack, config: pipeline_pb2.PipelineConfig, enum_name: str) -> None:
    draft = stack.bundle.new_draft()
    details = rpc_error(lambda: stack.bundle.add_manual(draft.draft_id, "a castle", config))
    assert (details.code, details.reason) == (Code.INVALID_ARGUMENT, "INVALID_FIELD")
    [violation] = details.violations
    assert violation.field == "config" and enum_name in violation.description
    details = rpc_error(lambda: stack.bundle.add_pack(draft.draft_id, "any", overrides=config))
    assert [v.field for v in details.violations] == ["config_overrides"]
    assert stack.bundle.draft(draft.draft_id) == draft  # nothing was added


def test_each_resize_mode_reaches_the_normalized_job(stack: Stack) -> None:
    draft = stack.bundle.new_draft()
    modes = list(pipeline_pb2.ResizeMode.values())
    for mode in modes:
        stack.bundle.add_manual(draft.draft_id, "a castle", _img2img_with(mode))
    jobs, _ = stack.bundle.preview_all(draft.draft_id, 10)
    assert [job.img2img.resize_mode for job in jobs] == modes
    assert len({job.config_hash for job in jobs}) == len(modes)


def test_steps_zero_means_not_set_and_gets_the_default(stack: Stack) -> None:
    """Proto3 cannot tell 0 from unset, so 0 steps is "the default" (20), as
    pipeline_rules documents, not an error."""
    draft = stack.bundle.new_draft()
    stack.bundle.add_manual(draft.draft_id, "a castle", _with(steps=0))
    jobs, _ = stack.bundle.preview_all(draft.draft_id, 10)
    assert [job.steps for job in jobs] == [20]


def test_add_part_needs_a_prompt_and_a_known_draft(stack: Stack) -> None:
    draft = stack.bundle.new_draft()
    details = rpc_error(lambda: stack.bundle.add_manual(draft.draft_id, "   ", txt2img_config()))
    assert details.code == Code.INVALID_ARGUMENT
    assert [v.field for v in details.violations] == ["prompt"]
    details = rpc_error(lambda: stack.bundle.add_manual("nope", "a castle", txt2img_config()))
    assert (details.code, details.reason) == (Code.NOT_FOUND, "DRAFT_NOT_FOUND")


def test_a_token_in_a_manual_prompt_is_reported_and_never_sent(stack: Stack) -> None:
    draft = stack.bundle.new_draft()
    stack.bundle.add_manual(draft.draft_id, "a lighthouse", txt2img_config())
    response = stack.bundle.add_manual(draft.draft_id, "a [[job]] at the gate", txt2img_config())
    summary = response.draft.summary
    assert summary.job_count == 1
    [error] = summary.errors
    assert error.part_id == response.part.part_id
    assert error.reason == pb.ROW_ERROR_REASON_UNRESOLVED_TOKEN
    assert "[[job]]" in error.message
    jobs, pages = stack.bundle.preview_all(draft.draft_id, 10)
    assert [job.prompt for job in jobs] == ["a lighthouse"]
    assert list(pages[0].summary.errors) == [error]


def test_row_errors_still_carry_the_v1_string_reason(stack: Stack) -> None:
    # RowError.reason was a string (field 5) in the released v1 contract: clients built against
    # it read the same name there, now reason_name; the enum is field 7.
    draft = stack.bundle.new_draft()
    response = stack.bundle.add_manual(draft.draft_id, "a [[job]] at the gate", txt2img_config())
    [error] = response.draft.summary.errors
    assert (error.reason, error.reason_name) == (pb.ROW_ERROR_REASON_UNRESOLVED_TOKEN,
                                                 "UNRESOLVED_TOKEN")
    [page] = stack.bundle.preview_pages(draft.draft_id, 10)
    assert [e.reason_name for e in page.summary.errors] == ["UNRESOLVED_TOKEN"]
    v1_field_5 = b"\x2a\x10UNRESOLVED_TOKEN"  # tag (5 << 3) | 2, length 16, the string
    assert v1_field_5 in error.SerializeToString()


def test_add_part_is_idempotent_per_request_id(stack: Stack) -> None:
    draft = stack.bundle.new_draft()
    request = pb.AddPartRequest(draft_id=draft.draft_id, prompt="a castle",
                                config=txt2img_config(), request_id=unique("add-"))
    first = stack.bundle.stub.AddPart(request)
    again = stack.bundle.stub.AddPart(request)
    assert again.part.part_id == first.part.part_id
    assert stack.bundle.draft(draft.draft_id).summary.part_count == 1


def test_bad_input_images_are_named_by_their_request_field(stack: Stack) -> None:
    draft = stack.bundle.new_draft()
    upscale_only = pipeline_pb2.PipelineConfig(
        stages=STAGES(upscale_enabled=True),
        upscale=pipeline_pb2.UpscaleConfig(upscaler="Lanczos", factor=2))
    given = rpc_error(lambda: stack.bundle.add_manual(draft.draft_id, "x", txt2img_config(),
                                                      images=["in/a.png"]))
    escaping = rpc_error(lambda: stack.bundle.add_manual(draft.draft_id, "x", upscale_only,
                                                         images=["../a.png"]))
    missing = rpc_error(lambda: stack.bundle.add_manual(draft.draft_id, "x", upscale_only))
    assert [v.field for v in given.violations] == ["input_images"]
    assert [v.field for v in escaping.violations] == ["input_images[0]"]
    assert [v.field for v in missing.violations] == ["input_images"]


def test_an_upscale_only_part_makes_one_job_per_input_image(stack: Stack) -> None:
    draft = stack.bundle.new_draft()
    config = pipeline_pb2.PipelineConfig(
        stages=STAGES(upscale_enabled=True),
        upscale=pipeline_pb2.UpscaleConfig(upscaler="Lanczos", factor=2), batch_size=4)
    response = stack.bundle.add_manual(draft.draft_id, "", config,
                                       images=["in/a.png", "in/b.png", "in/c.png"])
    assert response.draft.summary.job_count == 3
    jobs, _ = stack.bundle.preview_all(draft.draft_id, 2)
    assert [list(job.input_images) for job in jobs] == [["in/a.png"], ["in/b.png"],
                                                         ["in/c.png"]]
    assert {(job.batch_size, job.n_iter) for job in jobs} == {(1, 1)}
    assert response.draft.summary.stage_summary == "upscale"


# --- RemovePart / ClearDraft ----------------------------------------------------------------


def test_remove_part(stack: Stack) -> None:
    bundle = stack.bundle
    draft = bundle.new_draft()
    first = bundle.add_manual(draft.draft_id, "a lighthouse", txt2img_config()).part
    second = bundle.add_manual(draft.draft_id, "a harbor", txt2img_config(n_iter=2))
    before = second.draft
    removed = bundle.stub.RemovePart(pb.RemovePartRequest(draft_id=draft.draft_id,
                                                          part_id=first.part_id)).draft
    assert removed.revision == before.revision + 1
    assert [p.part_id for p in removed.parts] == [second.part.part_id]
    assert (removed.summary.part_count, removed.summary.job_count,
            removed.summary.estimated_images) == (1, 1, 2)
    assert removed.summary.positive_preview == "a harbor"
    # The remaining part's job is the one it was (seeds come from the draft and the part).
    jobs, _ = bundle.preview_all(draft.draft_id, 10)
    assert jobs[0].origin.part_id == second.part.part_id


def test_remove_unknown_part_or_draft_is_not_found(stack: Stack) -> None:
    draft = stack.bundle.new_draft()
    details = rpc_error(lambda: stack.bundle.stub.RemovePart(
        pb.RemovePartRequest(draft_id=draft.draft_id, part_id="nope")))
    assert (details.code, details.reason) == (Code.NOT_FOUND, "PART_NOT_FOUND")
    details = rpc_error(lambda: stack.bundle.stub.RemovePart(
        pb.RemovePartRequest(draft_id="nope", part_id="nope")))
    assert (details.code, details.reason) == (Code.NOT_FOUND, "DRAFT_NOT_FOUND")
    details = rpc_error(lambda: stack.bundle.stub.RemovePart(
        pb.RemovePartRequest(draft_id=draft.draft_id)))
    assert [v.field for v in details.violations] == ["part_id"]
    assert stack.bundle.draft(draft.draft_id).revision == draft.revision


def test_clear_draft(stack: Stack) -> None:
    bundle = stack.bundle
    draft = bundle.new_draft()
    bundle.add_manual(draft.draft_id, "a lighthouse", txt2img_config())
    filled = bundle.add_manual(draft.draft_id, "a harbor", txt2img_config()).draft
    cleared = bundle.stub.ClearDraft(pb.ClearDraftRequest(draft_id=draft.draft_id)).draft
    assert cleared.revision == filled.revision + 1
    assert list(cleared.parts) == []
    assert cleared.summary == pb.BundleSummary(
        batch_summary="no jobs", name_check=pb.NameCheck(unchecked_reason="no runner is connected"))
    assert cleared.display_name == draft.display_name
    details = rpc_error(lambda: bundle.stub.ClearDraft(pb.ClearDraftRequest(draft_id="nope")))
    assert (details.code, details.reason) == (Code.NOT_FOUND, "DRAFT_NOT_FOUND")


def test_every_draft_response_carries_the_same_summary(stack: Stack) -> None:
    bundle = stack.bundle
    draft = bundle.new_draft()
    added = bundle.add_manual(draft.draft_id, "a lighthouse", txt2img_config(batch_size=2))
    kept = bundle.add_manual(draft.draft_id, "a harbor", txt2img_config(n_iter=3))
    summary = kept.draft.summary
    assert (summary.part_count, summary.job_count, summary.estimated_images) == (2, 2, 2 + 3)
    assert summary.batch_summary == "2 jobs, 5 images (mixed batch sizes)"
    assert bundle.draft(draft.draft_id).summary == summary
    preview = bundle.stub.PreviewDraft(pb.PreviewDraftRequest(draft_id=draft.draft_id))
    assert preview.summary == summary
    listed = [d for page in _all_drafts(bundle, 1000) for d in page.drafts
              if d.draft_id == draft.draft_id]
    assert [d.summary for d in listed] == [summary]
    removed = bundle.stub.RemovePart(pb.RemovePartRequest(draft_id=draft.draft_id,
                                                          part_id=added.part.part_id)).draft
    assert (removed.summary.part_count, removed.summary.estimated_images) == (1, 3)
