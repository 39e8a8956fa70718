"""Packs over gRPC: ListPacks, GetPack and AddPackParts (all or selected rows, prepend text,
config overrides), and malformed packs, each of which gets a clear error while the server keeps
serving."""

from __future__ import annotations

import shutil
from functools import partial
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from stablenew.bundle.app import expansion_limits, offer_cache_seconds
from stablenew.contract.errors import Code
from stablenew.runtime.settings import ConfigError
from stablenew.v1 import bundle_service_pb2 as pb
from stablenew.v1 import pipeline_pb2
from tests.bundle_service.conftest import Stack
from tests.bundle_service.harness import (
    BundleHarness,
    full_job,
    preset,
    rpc_error,
    txt2img_config,
    unique,
    write_pack,
)
from tests.service_harness import open_test_channel

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "packs"


@pytest.fixture(scope="module")
def castles(stack: Stack) -> str:
    """The example pack, as the demo ships it: castles.txt with its castles.json."""
    for name in ("castles.txt", "castles.json"):
        shutil.copy(EXAMPLES / name, stack.packs_dir / name)
    return "castles"


def _serving(stack: Stack) -> None:
    """The server still answers: health, ListPacks, and a draft round trip."""
    with open_test_channel(stack.bundle.address) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="stablenew.v1.BundleService"), timeout=5)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    stack.bundle.stub.ListPacks(pb.ListPacksRequest(page_size=1000), timeout=10)
    draft = stack.bundle.new_draft()
    stack.bundle.add_manual(draft.draft_id, "still serving", txt2img_config())


# --- ListPacks / GetPack --------------------------------------------------------------------


def test_get_pack_returns_rows_matrix_and_defaults(stack: Stack, castles: str) -> None:
    pack = stack.bundle.stub.GetPack(pb.GetPackRequest(pack_id=castles)).pack
    assert (pack.pack_id, pack.name, pack.format) == ("castles", "Castles", pb.PACK_FORMAT_TXT)
    assert [row.index for row in pack.rows] == [0, 1]
    assert pack.rows[0].positive == ("masterpiece, best quality, a [[job]] guarding a [[place]]"
                                     " at dawn, <lora:detail_tweaker:0.6>")
    assert pack.rows[0].negative == "blurry, lowres, watermark, text"
    assert pack.rows[0].line == 2
    assert [(tag.kind, tag.name, tag.weight) for tag in pack.rows[0].tags] == [
        (pipeline_pb2.PromptTag.KIND_LORA, "detail_tweaker", 0.6)]
    assert pack.matrix.enabled and pack.matrix.mode == pb.MATRIX_MODE_FANOUT
    assert pack.matrix.limit == 8
    assert [(slot.name, list(slot.values)) for slot in pack.matrix.slots] == [
        ("job", ["knight", "wizard"]), ("place", ["gate", "tower"])]
    assert pack.defaults.stages == pipeline_pb2.StageFlags(
        txt2img_enabled=True, adetailer_enabled=True, upscale_enabled=True)
    assert pack.defaults.txt2img.model == "v1-5-pruned-emaonly"
    assert pack.HasField("modify_time")


def test_list_packs_pages_with_tokens(stack: Stack, castles: str) -> None:
    for number in range(3):
        write_pack(stack.packs_dir, f"{unique('listed_')}.tsv", f"a prompt {number}\tblurry\n")
    everything = stack.bundle.stub.ListPacks(pb.ListPacksRequest(page_size=1000)).packs
    assert castles in [pack.pack_id for pack in everything]
    paged: list[pb.PackSummary] = []
    token = ""
    while True:
        page = stack.bundle.stub.ListPacks(pb.ListPacksRequest(page_size=2, page_token=token))
        assert len(page.packs) <= 2
        paged.extend(page.packs)
        token = page.next_page_token
        if not token:
            break
    assert [p.pack_id for p in paged] == [p.pack_id for p in everything]
    assert [p.pack_id for p in everything] == sorted(p.pack_id for p in everything)
    first = stack.bundle.stub.ListPacks(pb.ListPacksRequest(page_size=1)).next_page_token
    details = rpc_error(lambda: stack.bundle.stub.ListPacks(
        pb.ListPacksRequest(page_size=1, page_token=first[:-2] + "xx")))
    assert (details.code, details.reason) == (Code.INVALID_ARGUMENT,
                                              "INVALID_PAGE_TOKEN")


# --- AddPackParts ---------------------------------------------------------------------------


def test_add_every_row_of_a_pack(stack: Stack, castles: str) -> None:
    draft = stack.bundle.new_draft()
    response = stack.bundle.add_pack(draft.draft_id, castles)
    pack_source = pipeline_pb2.PROMPT_SOURCE_PACK
    assert [(p.prompt_pack_id, p.row_index, p.prompt_source) for p in response.parts] == [
        (castles, 0, pack_source), (castles, 1, pack_source)]
    assert [p.estimated_images for p in response.parts] == [4, 1]  # 2 x 2 fanout, plain row
    summary = response.draft.summary
    assert (summary.part_count, summary.job_count, summary.estimated_images) == (2, 5, 5)
    assert summary.positive_preview == ("masterpiece, best quality, a knight guarding a gate at"
                                        " dawn, <lora:detail_tweaker:0.6>")
    assert summary.negative_preview == "blurry, lowres, watermark, text"
    assert summary.stage_summary == "txt2img → adetailer → upscale"
    assert summary.batch_summary == "5 jobs, batch 1, 1 iteration each: 5 images"
    jobs, _ = stack.bundle.preview_all(draft.draft_id, 2)
    assert [job.origin.variant_index for job in jobs] == [0, 1, 2, 3, 0]
    assert {job.origin.pack_name for job in jobs} == {"Castles"}
    assert all(job.seed >= 0 for job in jobs)  # -1 in the pack, concrete in every job
    assert all("[[" not in job.prompt for job in jobs)


def test_add_selected_rows_with_prepend_text_and_overrides(stack: Stack, castles: str) -> None:
    draft = stack.bundle.new_draft()
    overrides = pipeline_pb2.PipelineConfig(
        txt2img=pipeline_pb2.Txt2ImgConfig(steps=33, width=768, seed=77), batch_size=2)
    response = stack.bundle.add_pack(draft.draft_id, castles, rows=[1, 0],
                                     prepend="cinematic", overrides=overrides)
    assert [p.row_index for p in response.parts] == [1, 0]
    assert all(p.prepend_text == "cinematic" for p in response.parts)
    assert all(p.config == overrides for p in response.parts)
    jobs, _ = stack.bundle.preview_all(draft.draft_id, 10)
    assert [job.origin.row_index for job in jobs] == [1, 0, 0, 0, 0]
    assert jobs[0].prompt == "cinematic, watercolor lighthouse on a cliff, stormy sea"
    assert all(job.prompt.startswith("cinematic, ") for job in jobs)
    # Set fields replace the pack's defaults; unset ones (model, stages) keep them.
    assert {(job.steps, job.width, job.height, job.seed, job.batch_size) for job in jobs} == {
        (33, 768, 512, 77, 2)}
    assert {job.model for job in jobs} == {"v1-5-pruned-emaonly"}
    assert {tuple(job.stage_plan) for job in jobs} == {(
        pipeline_pb2.STAGE_TYPE_TXT2IMG, pipeline_pb2.STAGE_TYPE_ADETAILER,
        pipeline_pb2.STAGE_TYPE_UPSCALE)}
    assert response.draft.summary.estimated_images == 5 * 2


def test_overrides_that_switch_stages_replace_the_pack_plan(stack: Stack, castles: str) -> None:
    draft = stack.bundle.new_draft()
    only_txt2img = pipeline_pb2.PipelineConfig(
        stages=pipeline_pb2.StageFlags(txt2img_enabled=True))
    response = stack.bundle.add_pack(draft.draft_id, castles, rows=[1], overrides=only_txt2img)
    assert response.draft.summary.stage_summary == "txt2img"
    jobs, _ = stack.bundle.preview_all(draft.draft_id, 10)
    assert list(jobs[0].stage_plan) == [pipeline_pb2.STAGE_TYPE_TXT2IMG]
    assert list(jobs[0].adetailer_passes) == []


def _inpainting(adetailer_pass: pipeline_pb2.AdetailerPass) -> tuple[int, int, bool, int]:
    return (adetailer_pass.mask_blur, adetailer_pass.dilate_erode,
            adetailer_pass.inpaint_only_masked, adetailer_pass.inpaint_padding)


def test_the_preview_shows_the_extensions_defaults_for_what_the_pack_leaves_unset(
        stack: Stack, castles: str) -> None:
    draft = stack.bundle.new_draft()
    stack.bundle.add_pack(draft.draft_id, castles, rows=[1])

    jobs, _ = stack.bundle.preview_all(draft.draft_id, 10)

    assert [_inpainting(p) for p in jobs[0].adetailer_passes] == [(4, 4, True, 32)]
    defaults = stack.bundle.stub.GetPack(pb.GetPackRequest(pack_id=castles)).pack.defaults
    (detection,) = defaults.adetailer.passes
    assert _inpainting(detection) == (4, 4, True, 32) and detection.HasField("inpaint_padding")


def test_an_override_pass_keeps_what_it_sets_even_zero_and_gets_defaults_for_the_rest(
        stack: Stack, castles: str) -> None:
    draft = stack.bundle.new_draft()
    unset = pipeline_pb2.AdetailerPass(model="face_yolov8n.pt")
    zeros = pipeline_pb2.AdetailerPass(model="hand_yolov8n.pt", mask_blur=0, dilate_erode=0,
                                       inpaint_only_masked=False, inpaint_padding=0)
    overrides = pipeline_pb2.PipelineConfig(
        adetailer=pipeline_pb2.AdetailerConfig(passes=[unset, zeros]))
    response = stack.bundle.add_pack(draft.draft_id, castles, rows=[1], overrides=overrides)

    jobs, _ = stack.bundle.preview_all(draft.draft_id, 10)
    assert [_inpainting(p) for p in jobs[0].adetailer_passes] == [(4, 4, True, 32),
                                                                  (0, 0, False, 0)]
    # The draft gives the overrides back with every such field set, so sending them again
    # (a client copying a part) keeps the zeros.
    (part,) = response.parts
    echoed = part.config.adetailer.passes
    assert [_inpainting(p) for p in echoed] == [(4, 4, True, 32), (0, 0, False, 0)]
    assert all(p.HasField("mask_blur") and p.HasField("inpaint_only_masked") for p in echoed)
    again = stack.bundle.new_draft()
    stack.bundle.add_pack(again.draft_id, castles, rows=[1], overrides=part.config)
    copied, _ = stack.bundle.preview_all(again.draft_id, 10)
    assert [_inpainting(p) for p in copied[0].adetailer_passes] == [(4, 4, True, 32),
                                                                    (0, 0, False, 0)]


def test_row_index_out_of_range_names_the_index(stack: Stack, castles: str) -> None:
    draft = stack.bundle.new_draft()
    for rows, field in (([0, 2], "row_indices[1]"), ([-1], "row_indices[0]"),
                        ([1, 0, 99], "row_indices[2]")):
        details = rpc_error(partial(stack.bundle.add_pack, draft.draft_id, castles, rows=rows))
        assert details.code == Code.INVALID_ARGUMENT
        assert details.reason == "INVALID_FIELD"
        assert [v.field for v in details.violations] == [field]
        assert "0..1" in details.message
    assert stack.bundle.draft(draft.draft_id) == draft


def test_unknown_pack_or_draft_is_not_found(stack: Stack, castles: str) -> None:
    draft = stack.bundle.new_draft()
    details = rpc_error(lambda: stack.bundle.add_pack(draft.draft_id, "no_such_pack"))
    assert (details.code, details.reason) == (Code.NOT_FOUND, "PACK_NOT_FOUND")
    assert details.metadata == {"pack_id": "no_such_pack"}
    assert "no_such_pack" in details.message
    details = rpc_error(lambda: stack.bundle.stub.GetPack(pb.GetPackRequest(pack_id="nope")))
    assert (details.code, details.reason) == (Code.NOT_FOUND, "PACK_NOT_FOUND")
    details = rpc_error(lambda: stack.bundle.add_pack("no-such-draft", castles))
    assert (details.code, details.reason) == (Code.NOT_FOUND, "DRAFT_NOT_FOUND")
    details = rpc_error(lambda: stack.bundle.add_pack(draft.draft_id, ""))
    assert [v.field for v in details.violations] == ["prompt_pack_id"]


@pytest.mark.parametrize(("extension", "text"), [
    ("txt", "a lighthouse on a cliff\nneg: blurry\n\na harbor at night\n"),
    ("tsv", "a lighthouse on a cliff\tblurry\na harbor at night\n"),
])
def test_a_plain_pack_is_added_and_previewed_with_no_overrides(stack: Stack, extension: str,
                                                               text: str) -> None:
    """A prompt file without a .json runs txt2img with the built-in defaults."""
    pack_id = unique("plain_")
    write_pack(stack.packs_dir, f"{pack_id}.{extension}", text)
    pack = stack.bundle.stub.GetPack(pb.GetPackRequest(pack_id=pack_id)).pack
    assert pack.defaults.stages == pipeline_pb2.StageFlags(txt2img_enabled=True)
    assert list(pack.errors) == []

    draft = stack.bundle.new_draft()
    added = stack.bundle.add_pack(draft.draft_id, pack_id).draft
    assert (added.summary.job_count, added.summary.stage_summary) == (2, "txt2img")
    assert list(added.summary.errors) == []
    jobs, pages = stack.bundle.preview_all(draft.draft_id, 50)

    assert [(job.prompt, job.negative_prompt) for job in jobs] == [
        ("a lighthouse on a cliff", "blurry"), ("a harbor at night", "")]
    for job in jobs:
        assert list(job.stage_plan) == [pipeline_pb2.STAGE_TYPE_TXT2IMG]
        assert (job.sampler_name, job.steps, job.cfg_scale, job.width, job.height) == (
            "Euler", 20, 7.0, 512, 512)
        assert (job.batch_size, job.n_iter, job.model) == (1, 1, "")
        assert job.seed >= 0
    queued = stack.bundle.enqueue(draft.draft_id, expected_revision=pages[-1].draft_revision)
    assert list(full_job(stack.queue, queued.job_id).entries) == jobs


def test_overrides_apply_on_top_of_a_plain_pack(stack: Stack) -> None:
    pack_id = unique("plain_")
    write_pack(stack.packs_dir, f"{pack_id}.txt", "a lighthouse\n")
    overrides = pipeline_pb2.PipelineConfig(txt2img=pipeline_pb2.Txt2ImgConfig(
        model="sd_xl_base_1.0", steps=30, width=768, seed=5))
    draft = stack.bundle.new_draft()
    stack.bundle.add_pack(draft.draft_id, pack_id, overrides=overrides)
    stack.bundle.add_pack(draft.draft_id, pack_id, overrides=txt2img_config(adetailer=True))

    (first, second), _pages = stack.bundle.preview_all(draft.draft_id, 50)

    assert (first.model, first.steps, first.width, first.height, first.seed) == (
        "sd_xl_base_1.0", 30, 768, 512, 5)
    assert list(first.stage_plan) == [pipeline_pb2.STAGE_TYPE_TXT2IMG]
    assert list(second.stage_plan) == [pipeline_pb2.STAGE_TYPE_TXT2IMG,
                                       pipeline_pb2.STAGE_TYPE_ADETAILER]


def test_a_pack_that_switches_every_stage_off_needs_overrides_that_bring_them(
        stack: Stack) -> None:
    pack_id = unique("off_")
    write_pack(stack.packs_dir, f"{pack_id}.txt", "a lighthouse\n\na harbor\n")
    write_pack(stack.packs_dir, f"{pack_id}.json",
               {"preset_data": {"pipeline": {"txt2img_enabled": False}}})
    draft = stack.bundle.new_draft()
    details = rpc_error(lambda: stack.bundle.add_pack(draft.draft_id, pack_id))
    assert (details.code, details.reason) == (Code.INVALID_ARGUMENT, "INVALID_STAGE_PLAN")
    # The caller fixes it through the request's config_overrides.
    assert "config_overrides.stages" in [v.field for v in details.violations]
    response = stack.bundle.add_pack(draft.draft_id, pack_id, overrides=txt2img_config())
    assert response.draft.summary.job_count == 2


def test_an_unknown_key_in_a_sibling_json_is_a_pack_error(stack: Stack) -> None:
    pack_id = unique("typo_")
    write_pack(stack.packs_dir, f"{pack_id}.txt", "a lighthouse\n")
    write_pack(stack.packs_dir, f"{pack_id}.json", {"preset_data": {"txt2img": {"stpes": 30}}})
    draft = stack.bundle.new_draft()

    details = rpc_error(lambda: stack.bundle.add_pack(draft.draft_id, pack_id))

    assert (details.code, details.reason) == (Code.INVALID_ARGUMENT, "PACK_INVALID")
    assert details.message.startswith(
        f"{pack_id}.json (preset_data.txt2img.stpes): unknown key 'stpes'; ")
    assert stack.bundle.draft(draft.draft_id) == draft


# --- rows that cannot run -------------------------------------------------------------------


def test_a_row_with_an_unresolved_token_makes_no_job_and_is_reported(stack: Stack) -> None:
    pack_id = unique("tokens_")
    write_pack(stack.packs_dir, f"{pack_id}.txt",
               "# the second row uses a slot nobody defined\n"
               "a [[job]] at the gate\n\n"
               "a [[villain]] in the tower\nneg: blurry\n\n"
               "a lighthouse\n")
    write_pack(stack.packs_dir, f"{pack_id}.json", {
        "pack_data": {"matrix": {"slots": [{"name": "job", "values": ["knight", "wizard"]}]}},
        "preset_data": preset()})
    draft = stack.bundle.new_draft()
    response = stack.bundle.add_pack(draft.draft_id, pack_id)
    summary = response.draft.summary
    assert (summary.part_count, summary.job_count) == (3, 3)
    [error] = summary.errors
    assert (error.prompt_pack_id, error.row_index, error.line) == (pack_id, 1, 4)
    assert error.part_id == response.parts[1].part_id
    assert error.reason == pb.ROW_ERROR_REASON_UNRESOLVED_TOKEN
    assert f"{pack_id} row 1 (line 4)" in error.message and "[[villain]]" in error.message
    assert [p.estimated_images for p in response.parts] == [2, 0, 1]
    jobs, _ = stack.bundle.preview_all(draft.draft_id, 2)
    assert [job.origin.row_index for job in jobs] == [0, 0, 2]
    assert all("[[" not in job.prompt + job.negative_prompt for job in jobs)
    job = stack.bundle.enqueue(draft.draft_id)
    assert job.entry_count == 3


def test_a_draft_of_only_unrunnable_rows_cannot_be_enqueued(stack: Stack) -> None:
    pack_id = unique("unrunnable_")
    write_pack(stack.packs_dir, f"{pack_id}.tsv", "a [[who]] at dawn\tblurry\n")
    draft = stack.bundle.new_draft()
    response = stack.bundle.add_pack(draft.draft_id, pack_id, overrides=txt2img_config())
    assert response.draft.summary.job_count == 0
    assert [e.reason for e in response.draft.summary.errors] == [
        pb.ROW_ERROR_REASON_UNRESOLVED_TOKEN]
    details = rpc_error(lambda: stack.bundle.enqueue(draft.draft_id))
    assert (details.code, details.reason) == (Code.FAILED_PRECONDITION, "DRAFT_EMPTY")


# --- malformed packs ------------------------------------------------------------------------

TEN_MB = 10 * 1024 * 1024
MALFORMED = [
    pytest.param("json", '{"pack_data": {"slots": [{"text": "a cat"},]}}',
                 ["line 1 column", "not valid JSON"], id="broken-json"),
    pytest.param("json", {"pack_data": {"slots": [{"text": "a cat"}]},
                          "preset_data": {"pipeline": {"txt2img_enabled": True,
                                                       "controlnet_enabled": True}}},
                 ["preset_data.pipeline.controlnet_enabled", "unknown stage 'controlnet'"],
                 id="unknown-stage"),
    pytest.param("json", {"pack_data": {"slots": [{"text": 42}]}},
                 ["pack_data.slots[0].text"], id="wrong-json-type"),
    pytest.param("json", {"pack_data": {"slots": [{"positive": "a cat"}]}},
                 ["(pack_data.slots[0].positive): unknown key 'positive'; a row takes text"],
                 id="unknown-row-key"),
    pytest.param("json", {"pack_data": {"slots": [{"text": "a cat"}]},
                          "preset_data": {"txt2img": {"sampler": "Euler a"}}},
                 ["(preset_data.txt2img.sampler): unknown key 'sampler'"],
                 id="unknown-preset-key"),
    pytest.param("txt", ("a castle on a hill\n\n" * 600_000)[:TEN_MB],
                 ["10,485,760 bytes", "limit"], id="ten-megabytes"),
    pytest.param("txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 8,
                 ["binary data"], id="binary-junk"),
    pytest.param("tsv", bytes(range(0x80, 0x100)) * 16, ["not valid UTF-8"], id="not-utf8"),
    pytest.param("txt", "a cat\n\x07bell\n", ["control character"], id="control-character"),
]


@pytest.mark.parametrize(("extension", "content", "fragments"), MALFORMED)
def test_a_malformed_pack_gets_a_clear_error(stack: Stack, extension: str,
                                             content: str | bytes | dict[str, object],
                                             fragments: list[str]) -> None:
    pack_id = unique("bad_")
    file_name = f"{pack_id}.{extension}"
    write_pack(stack.packs_dir, file_name, content)
    draft = stack.bundle.new_draft()
    for call in (lambda: stack.bundle.add_pack(draft.draft_id, pack_id),
                 lambda: stack.bundle.stub.GetPack(pb.GetPackRequest(pack_id=pack_id))):
        details = rpc_error(call)
        assert details.code == Code.INVALID_ARGUMENT
        assert details.reason == "PACK_INVALID"
        assert details.metadata == {"pack_id": pack_id}
        assert file_name in details.message
        for fragment in fragments:
            assert fragment in details.message
    listed = [p for p in stack.bundle.stub.ListPacks(pb.ListPacksRequest(page_size=1000)).packs
              if p.pack_id == pack_id]
    assert len(listed) == 1 and file_name in listed[0].error_message
    assert stack.bundle.draft(draft.draft_id) == draft
    _serving(stack)


@pytest.mark.parametrize("pack_id", ["../castles", "../../etc/passwd", "..", "a/b", "a\\b",
                                     ".hidden", "x" * 201, "bad\nname"])
def test_a_pack_id_that_could_leave_the_library_is_refused(stack: Stack, castles: str,
                                                           pack_id: str) -> None:
    (stack.packs_dir.parent / "outside.txt").write_text("a secret prompt\n", encoding="utf-8")
    draft = stack.bundle.new_draft()
    for call in (lambda: stack.bundle.add_pack(draft.draft_id, pack_id),
                 lambda: stack.bundle.stub.GetPack(pb.GetPackRequest(pack_id=pack_id))):
        details = rpc_error(call)
        assert details.code == Code.INVALID_ARGUMENT
        assert details.reason == "PACK_INVALID"
        assert "invalid pack id" in details.message
    details = rpc_error(lambda: stack.bundle.add_pack(draft.draft_id, "../outside"))
    assert "secret" not in details.message
    _serving(stack)


def test_a_draft_whose_pack_breaks_later_reports_it_and_keeps_serving(stack: Stack) -> None:
    pack_id = unique("breaks_")
    write_pack(stack.packs_dir, f"{pack_id}.tsv", "a lighthouse\tblurry\na harbor\n")
    draft = stack.bundle.new_draft()
    stack.bundle.add_pack(draft.draft_id, pack_id, overrides=txt2img_config())
    stack.bundle.add_manual(draft.draft_id, "a glacier", txt2img_config())
    write_pack(stack.packs_dir, f"{pack_id}.tsv", b"\x00\x01 junk")
    summary = stack.bundle.draft(draft.draft_id).summary
    assert summary.job_count == 1
    assert {(e.prompt_pack_id, e.row_index, e.reason) for e in summary.errors} == {
        (pack_id, 0, pb.ROW_ERROR_REASON_PACK_INVALID),
        (pack_id, 1, pb.ROW_ERROR_REASON_PACK_INVALID)}
    assert all(f"{pack_id}.tsv" in e.message for e in summary.errors)
    jobs, _ = stack.bundle.preview_all(draft.draft_id, 10)
    assert [job.prompt for job in jobs] == ["a glacier"]
    (stack.packs_dir / f"{pack_id}.tsv").unlink()
    summary = stack.bundle.draft(draft.draft_id).summary
    assert {e.reason for e in summary.errors} == {pb.ROW_ERROR_REASON_PACK_NOT_FOUND}
    _serving(stack)


def test_an_invalid_pack_preset_is_blamed_on_the_pack(stack: Stack) -> None:
    pack_id = unique("badpreset_")
    write_pack(stack.packs_dir, f"{pack_id}.json", {
        "pack_data": {"slots": [{"text": "a lighthouse"}]},
        "preset_data": preset(width=500)})
    draft = stack.bundle.new_draft()
    details = rpc_error(lambda: stack.bundle.add_pack(draft.draft_id, pack_id))
    assert (details.code, details.reason) == (Code.INVALID_ARGUMENT, "PACK_INVALID")
    assert f"{pack_id}.json" in details.message and "txt2img.width" in details.message
    assert details.metadata == {"pack_id": pack_id}
    # GetPack shows the pack with the problem of its presets (row -1: the pack as a whole).
    pack = stack.bundle.stub.GetPack(pb.GetPackRequest(pack_id=pack_id)).pack
    assert [(e.row_index, e.reason) for e in pack.errors] == [
        (-1, pb.ROW_ERROR_REASON_PACK_INVALID)]
    assert pack.errors[0].reason_name == "PACK_INVALID"  # the v1 string field
    assert "txt2img.width" in pack.errors[0].message
    # Overrides that fix the value make the pack usable.
    overrides = pipeline_pb2.PipelineConfig(txt2img=pipeline_pb2.Txt2ImgConfig(width=512))
    added = stack.bundle.add_pack(draft.draft_id, pack_id, overrides=overrides)
    assert added.draft.summary.job_count == 1


def test_a_stage_the_presets_switch_on_without_its_settings_is_the_packs_problem(
        stack: Stack) -> None:
    pack_id = unique("noupscaler_")
    presets = preset(("txt2img", "upscale"))
    del presets["upscale"]["upscaler"]
    write_pack(stack.packs_dir, f"{pack_id}.json", {
        "pack_data": {"slots": [{"text": "a lighthouse"}]}, "preset_data": presets})
    draft = stack.bundle.new_draft()
    details = rpc_error(lambda: stack.bundle.add_pack(draft.draft_id, pack_id))
    assert (details.code, details.reason) == (Code.INVALID_ARGUMENT, "PACK_INVALID")
    assert "upscale.upscaler" in details.message and f"{pack_id}.json" in details.message
    assert not details.violations  # nothing in the request was wrong
    fixed = pipeline_pb2.PipelineConfig(upscale=pipeline_pb2.UpscaleConfig(upscaler="Lanczos"))
    added = stack.bundle.add_pack(draft.draft_id, pack_id, overrides=fixed)
    assert added.draft.summary.job_count == 1


def test_a_stage_the_overrides_switch_on_without_its_settings_is_the_callers(
        stack: Stack) -> None:
    pack_id = unique("plain_")
    write_pack(stack.packs_dir, f"{pack_id}.txt", "a lighthouse\n")  # no presets at all
    draft = stack.bundle.new_draft()
    overrides = txt2img_config()
    overrides.stages.upscale_enabled = True  # and no upscaler
    details = rpc_error(lambda: stack.bundle.add_pack(draft.draft_id, pack_id,
                                                      overrides=overrides))
    assert details.reason == "INVALID_FIELD"
    assert [v.field for v in details.violations] == ["config_overrides.upscale.upscaler"]


def test_bad_overrides_are_named_once_by_their_request_field(stack: Stack,
                                                             castles: str) -> None:
    draft = stack.bundle.new_draft()
    overrides = pipeline_pb2.PipelineConfig(txt2img=pipeline_pb2.Txt2ImgConfig(width=500))
    details = rpc_error(lambda: stack.bundle.add_pack(draft.draft_id, castles,
                                                      overrides=overrides))
    assert details.code == Code.INVALID_ARGUMENT
    assert [v.field for v in details.violations] == ["config_overrides.txt2img.width"]


def test_the_variant_cap_per_row_is_a_setting(tmp_path: Path) -> None:
    packs_dir = tmp_path / "packs"
    bundle = BundleHarness(tmp_path / "bundle", packs_dir, "127.0.0.1:1",  # no queue needed
                           env={"STABLENEW_MAX_VARIANTS_PER_ROW": "4"})
    with bundle.running():
        write_pack(packs_dir, "five.txt", "a [[colour]] kite\n")
        write_pack(packs_dir, "five.json", {"pack_data": {"matrix": {
            "enabled": True, "mode": "fanout",
            "slots": [{"name": "colour", "values": ["red", "blue", "green", "gold", "grey"]}]}}})
        draft = bundle.new_draft()
        summary = bundle.add_pack(draft.draft_id, "five", overrides=txt2img_config()).draft.summary
    assert summary.job_count == 0
    [error] = summary.errors
    assert error.reason == pb.ROW_ERROR_REASON_TOO_MANY_VARIANTS
    assert "over the cap of 4 per row" in error.message
    assert "STABLENEW_MAX_VARIANTS_PER_ROW" in error.message


@pytest.mark.parametrize(("value", "problem"), [
    ("0", "not a positive whole number"), ("lots", "not a positive whole number"),
    ("8193", "over the hard maximum of 8192")])
def test_a_bad_variant_cap_is_a_configuration_error(value: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        expansion_limits({"STABLENEW_MAX_VARIANTS_PER_ROW": value})
    assert expansion_limits({}).max_variants_per_row == 512


@pytest.mark.parametrize("value", ["-1", "soon", "inf"])
def test_a_bad_offer_cache_period_is_a_configuration_error(value: str) -> None:
    with pytest.raises(ConfigError, match="STABLENEW_OFFER_CACHE_SECONDS"):
        offer_cache_seconds({"STABLENEW_OFFER_CACHE_SECONDS": value})
    assert offer_cache_seconds({"STABLENEW_OFFER_CACHE_SECONDS": "0"}) == 0
    assert offer_cache_seconds({}) == 5
