"""The preview panel's view model against the real bundle service and queue: the window's
draft, the preview exactly as the service gives it, row errors, paging and the queue buttons."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from stablenew.gui.draft_model import PAGE_SIZE, DraftMemory, DraftModel
from stablenew.gui.pipeline_model import (
    FIELD_BY_KEY,
    FIELDS,
    Kind,
    ManualPart,
    PackParts,
    PipelineModel,
)
from stablenew.sdk import Client, JobSource, JobState, RowErrorReason, RunMode, StageType
from tests.bundle_service.harness import BundleHarness, unique
from tests.gui.harness import ModelHarness, write_text_pack
from tests.queue.harness import QueueHarness
from tests.sdk.harness import PACK_ID, PACK_ROWS, Stack
from tests.service_harness import wait_for


@pytest.fixture
def memory(tmp_path: Path, stack: Stack) -> DraftMemory:
    return DraftMemory(tmp_path / "gui" / "state.json", stack.bundle.address)


@pytest.fixture
def draft(models: ModelHarness, memory: DraftMemory) -> Iterator[DraftModel]:
    model = DraftModel(models.context, memory)
    model.start()
    models.settle(lambda: model.summary is not None and not model.busy, "the draft")
    yield model


def idle(models: ModelHarness, draft: DraftModel) -> None:
    models.settle(lambda: not draft.busy, "the draft's steps to finish")


TXT2IMG_ONLY = {"stages": {"txt2img_enabled": True}}


def part(prompt: str, **txt2img: object) -> ManualPart:
    return ManualPart(prompt, "", {"stages": {"txt2img_enabled": True},
                                   "txt2img": {"seed": -1, **txt2img}})


def test_the_window_keeps_its_draft(models: ModelHarness, memory: DraftMemory,
                                    draft: DraftModel) -> None:
    assert memory.get() == draft.draft_id
    again = DraftModel(models.context, memory)
    again.start()
    models.settle(lambda: again.draft_id, "the second window's draft")
    assert again.draft_id == draft.draft_id


def test_a_draft_that_is_gone_is_replaced(models: ModelHarness, memory: DraftMemory) -> None:
    memory.set("no-such-draft")
    model = DraftModel(models.context, memory)
    model.start()
    models.settle(lambda: model.draft_id, "a new draft")
    assert model.draft_id != "no-such-draft"
    assert memory.get() == model.draft_id
    assert "Started a new draft" in models.last_info()


def test_the_preview_is_what_the_service_previews(models: ModelHarness, draft: DraftModel,
                                                  client: Client) -> None:
    assert not draft.can_enqueue()
    assert draft.why_not_enqueue() == "the draft is empty"
    draft.add_part(part("a red fox in snow", steps=7))
    draft.add_pack(PackParts(PACK_ID, [0, 2], "oil painting,", {"txt2img": {"steps": 5}}))
    idle(models, draft)
    service = client.drafts.preview(draft.draft_id)
    assert draft.revision == service.draft_revision
    assert draft.summary == service.summary
    assert [job.config_hash for job in draft.jobs] == [j.config_hash for j in service.jobs]
    prompts = [job.prompt for job in draft.jobs]
    assert prompts[0] == "a red fox in snow"
    assert prompts[1].startswith("oil painting,") and PACK_ROWS[0] in prompts[1]
    assert PACK_ROWS[2] in prompts[2]
    assert [job.steps for job in draft.jobs] == [7, 5, 5]
    assert all(job.seed >= 0 for job in draft.jobs)  # random seeds, made concrete
    assert draft.summary_line().startswith("3 parts · 3 jobs · 3 images")
    rows = draft.rows()
    assert [row.values[1] for row in rows] == prompts
    assert draft.can_enqueue()


def test_actions_run_in_the_order_asked(models: ModelHarness, draft: DraftModel) -> None:
    for number in range(3):
        draft.add_part(part(f"a lighthouse {number}"))
    draft.clear()
    draft.add_part(part("the last one"))
    idle(models, draft)
    assert [job.prompt for job in draft.jobs] == ["the last one"]


def test_row_errors_are_loud_and_block_the_queue(models: ModelHarness, draft: DraftModel,
                                                 stack: Stack) -> None:
    pack_id = unique("gui-broken-")
    write_text_pack(stack.packs_dir, pack_id, ["a quiet harbour", "a [[villain]] in the tower"])
    draft.add_pack(PackParts(pack_id, [], "", TXT2IMG_ONLY))
    idle(models, draft)
    errors = draft.errors()
    assert len(errors) == 1 and errors[0].reason == RowErrorReason.UNRESOLVED_TOKEN
    rows = draft.rows()
    assert rows[0].tag == "error" and f"{pack_id} row 1" in rows[0].values[1]
    assert not draft.can_enqueue()
    assert draft.why_not_enqueue() == "1 row(s) make no job: remove them first"
    draft.enqueue(RunMode.QUEUE)
    assert "Add to Queue failed: 1 row(s) make no job" in models.errors()[-1]
    draft.remove(draft.part_of(rows[0].key))
    idle(models, draft)
    assert not draft.errors() and [job.prompt for job in draft.jobs] == ["a quiet harbour"]
    assert draft.can_enqueue()


def test_the_summary_says_when_no_runner_could_check_the_names(stack: Stack,
                                                               tmp_path: Path) -> None:
    # A bundle whose queue no runner has joined: the names go unchecked, the job is made.
    queue = QueueHarness(tmp_path / "queue", {}).start()
    bundle = BundleHarness(tmp_path / "bundle", tmp_path / "packs", queue.address,
                           {"STABLENEW_OFFER_CACHE_SECONDS": "0"}).start()
    models = ModelHarness({"bundle": bundle.address, "queue": queue.address,
                           "runner": stack.runner.address, "history": stack.history.address})
    try:
        draft = DraftModel(models.context,
                           DraftMemory(tmp_path / "gui" / "state.json", bundle.address))
        draft.start()
        models.settle(lambda: draft.summary is not None and not draft.busy, "the draft")
        draft.add_part(part("a red kite", sampler_name="Eulr a"))
        idle(models, draft)
        assert [job.sampler_name for job in draft.jobs] == ["Eulr a"]
        assert draft.summary_line().endswith(" · names unchecked: no runner is connected")
    finally:
        models.close()
        bundle.stop()
        queue.stop()


def test_a_bad_part_is_refused_with_its_field(models: ModelHarness, draft: DraftModel) -> None:
    draft.add_part(part("a fox", steps=500))
    idle(models, draft)
    assert "Add to Job failed: INVALID_ARGUMENT" in models.errors()[-1]
    assert "steps" in models.errors()[-1]
    assert draft.jobs == []


def test_add_to_queue_queues_the_previewed_jobs(models: ModelHarness, draft: DraftModel,
                                                client: Client, paused: None) -> None:
    draft.add_part(part("a castle by the sea"))
    idle(models, draft)
    previewed = [job.config_hash for job in draft.jobs]
    draft.enqueue(RunMode.QUEUE, label="from the gui")
    idle(models, draft)
    message = models.last_info()
    assert message.startswith("Queued job ")
    job = next(job for job in client.queue.list() if job.label == "from the gui")
    assert job.state == JobState.QUEUED and job.origin.run_mode == RunMode.QUEUE
    assert [entry.config_hash for entry in client.queue.get(job.job_id).entries] == previewed
    assert draft.jobs == [] and not draft.can_enqueue()  # the draft moved on, empty


def test_run_now_is_a_direct_job(models: ModelHarness, draft: DraftModel,
                                 client: Client) -> None:
    draft.add_part(part("a fox at night"))
    draft.enqueue(RunMode.DIRECT)  # not yet previewed with its job: refused, nothing sent
    assert models.errors()[-1] == "Run Now failed: the draft is empty"
    idle(models, draft)
    label = unique("gui-run-now-")
    draft.enqueue(RunMode.DIRECT, label=label)
    idle(models, draft)
    job = wait_for(lambda: next(iter(client.history.list(label=label)), None),
                   "the run-now job in the history")
    assert (job.origin.run_mode, job.origin.source) == (RunMode.DIRECT, JobSource.RUN_NOW)
    assert client.wait(job.job_id, timeout=60).state == JobState.COMPLETED


def test_the_preview_is_read_page_by_page(models: ModelHarness, draft: DraftModel,
                                          stack: Stack) -> None:
    pack_id = unique("gui-long-")
    write_text_pack(stack.packs_dir, pack_id, [f"a lantern number {n}" for n in range(150)])
    draft.add_pack(PackParts(pack_id, [], "", TXT2IMG_ONLY))
    idle(models, draft)
    assert len(draft.jobs) == PAGE_SIZE and draft.has_more()
    assert draft.summary is not None and draft.summary.job_count == 150
    draft.load_more()
    idle(models, draft)
    assert [job.index for job in draft.jobs] == list(range(150))
    assert not draft.has_more()


def test_every_setting_of_the_form_reaches_the_previewed_job(
        models: ModelHarness, draft: DraftModel) -> None:
    """Every field of the pipeline form, filled in, is a setting the bundle takes: the job it
    previews carries each one (names chosen from what the runner offers)."""
    pipeline = PipelineModel(models.context)
    pipeline.start()
    models.settle(lambda: pipeline.capabilities, "the runner's names")
    typed = {"txt2img.steps": "9", "txt2img.cfg_scale": "5.5", "txt2img.width": "640",
             "txt2img.height": "448", "txt2img.seed": "42", "batch_size": "2", "n_iter": "3",
             "txt2img.hires_fix.scale": "1.5", "txt2img.hires_fix.second_pass_steps": "5",
             "txt2img.hires_fix.denoising_strength": "0.4", "img2img.denoising_strength": "0.6",
             "img2img.steps": "7", "adetailer.passes.0.confidence": "0.45",
             "adetailer.passes.0.prompt": "a sharp face",
             "adetailer.passes.0.negative_prompt": "blur", "upscale.factor": "2",
             "global_negative": "watermark"}
    chosen = {spec.key: pipeline.choices(spec)[-1] for spec in FIELDS if spec.choices}
    assert all(chosen.values()), chosen  # the emulator offers a name for every list
    for spec in FIELDS:
        pipeline.set_value(spec.key, typed.get(spec.key) or chosen.get(spec.key) or True)
    assert set(typed) | set(chosen) | {spec.key for spec in FIELDS
                                        if spec.kind == Kind.FLAG} == set(FIELD_BY_KEY)
    pipeline.prompt, pipeline.negative = "a lighthouse in a storm", "fog"
    draft.add_part(pipeline.manual_part())
    idle(models, draft)
    assert not models.errors()
    job = draft.jobs[-1]
    assert job.stage_plan == [StageType.TXT2IMG, StageType.IMG2IMG, StageType.ADETAILER,
                              StageType.UPSCALE]
    assert (job.model, job.vae, job.sampler_name, job.scheduler) == (
        chosen["txt2img.model"], chosen["txt2img.vae"], chosen["txt2img.sampler_name"],
        chosen["txt2img.scheduler"])
    assert (job.steps, job.cfg_scale, job.width, job.height, job.seed, job.batch_size,
            job.n_iter) == (9, 5.5, 640, 448, 42, 2, 3)
    hires = job.hires_fix
    assert (hires.enabled, hires.scale, hires.upscaler, hires.second_pass_steps,
            hires.denoising_strength) == (True, 1.5, chosen["txt2img.hires_fix.upscaler"], 5,
                                          0.4)
    assert (job.img2img.denoising_strength, job.img2img.steps) == (0.6, 7)
    ad = job.adetailer_passes[0]
    assert (ad.model, ad.confidence, ad.prompt, ad.negative_prompt) == (
        chosen["adetailer.passes.0.model"], 0.45, "a sharp face", "blur")
    assert (job.upscale.upscaler, job.upscale.factor) == (chosen["upscale.upscaler"], 2.0)
    assert job.prompt == "a lighthouse in a storm" and "fog" in job.negative_prompt
    assert "watermark" in job.negative_prompt  # the global negative, added by the service
