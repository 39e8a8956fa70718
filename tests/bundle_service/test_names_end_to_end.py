"""End to end: a real runner in front of the WebUI emulator (over HTTP) announces what the
emulator offers to the queue with its lease requests; the bundle checks each draft's names
against it at preview. A misspelled sampler, scheduler, model, VAE, upscaler or ADetailer model
is a row error with the closest names offered; names the WebUI knows, in any form it accepts,
preview without one and run."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from stablenew.emulator.testing import fast_config, running
from stablenew.v1 import bundle_service_pb2 as pb
from stablenew.v1 import job_pb2, pipeline_pb2, runner_service_pb2
from stablenew.v1 import queue_service_pb2 as queue_pb
from tests.bundle_service.harness import BundleHarness, txt2img_config
from tests.queue.harness import QueueHarness
from tests.runner.harness import RunnerHarness, wait_state
from tests.service_harness import wait_for


@dataclass
class Chain:
    queue: QueueHarness
    bundle: BundleHarness


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    root = tmp_path_factory.mktemp("names-end-to-end")
    queue = QueueHarness(root / "queue", {"STABLENEW_LEASE_SECONDS": "30"}).start()
    bundle = BundleHarness(root / "bundle", root / "packs", queue.address,
                           {"STABLENEW_OFFER_CACHE_SECONDS": "0"}).start()
    try:
        with running(fast_config()) as emulator, \
                RunnerHarness(root / "runner", queue.address, emulator.url).running():
            wait_for(lambda: _announced(queue), "the runner's first lease request")
            yield Chain(queue, bundle)
    finally:
        bundle.stop()
        queue.stop()


def _announced(queue: QueueHarness) -> bool:
    runners = queue.stub.ListRunners(queue_pb.ListRunnersRequest(), timeout=10).runners
    return any(runner.info.HasField("capabilities") for runner in runners)


def _config(**txt2img: str) -> pipeline_pb2.PipelineConfig:
    config = txt2img_config()
    for name, value in txt2img.items():
        setattr(config.txt2img, name, value)
    return config


def _with_upscaler(upscaler: str) -> pipeline_pb2.PipelineConfig:
    config = txt2img_config(upscale=True)
    config.upscale.upscaler = upscaler
    return config


def _with_detection_model(model: str) -> pipeline_pb2.PipelineConfig:
    config = txt2img_config(adetailer=True)
    config.adetailer.passes[0].model = model
    return config


MISSPELLED = [
    ("sampler", _config(sampler_name="Eulr a"), "txt2img.sampler_name", "Euler a"),
    ("scheduler", _config(scheduler="Karas"), "txt2img.scheduler", "Karras"),
    # The WebUI looks a scheduler up exactly: "KARRAS" would run as automatic.
    ("scheduler", _config(scheduler="KARRAS"), "txt2img.scheduler", "Karras"),
    ("model", _config(model="v1-5-prunned-emaonly"), "txt2img.model", "v1-5-pruned-emaonly"),
    ("VAE", _config(vae="vae-ft-mse-84000-ema-pruned"), "txt2img.vae",
     "vae-ft-mse-840000-ema-pruned.safetensors"),
    ("upscaler", _with_upscaler("R-ESRGAN 4x"), "upscale.upscaler", "R-ESRGAN 4x+"),
    ("ADetailer model", _with_detection_model("face_yolo8n.pt"), "adetailer.passes[0].model",
     "face_yolov8n.pt"),
]


@pytest.mark.parametrize(("noun", "config", "field", "suggested"), MISSPELLED,
                         ids=[f"{case[0]}-{index}" for index, case in enumerate(MISSPELLED)])
def test_a_misspelled_name_is_a_row_error_at_preview_with_a_suggestion(
        chain: Chain, noun: str, config: pipeline_pb2.PipelineConfig, field: str,
        suggested: str) -> None:
    draft_id = chain.bundle.new_draft().draft_id
    chain.bundle.add_manual(draft_id, "a lighthouse", config)

    page = chain.bundle.stub.PreviewDraft(pb.PreviewDraftRequest(draft_id=draft_id), timeout=30)

    assert list(page.jobs) == []
    assert page.summary.name_check == pb.NameCheck(checked=True, runner_count=1)
    (error,) = page.summary.errors
    assert (error.reason, error.config_field) == (pb.ROW_ERROR_REASON_INVALID_FIELD, field)
    assert error.suggestions[0] == suggested
    assert f"{noun} " in error.message and f"did you mean {suggested!r}" in error.message


def test_the_runner_announces_the_schedulers_with_labels_and_aliases(chain: Chain) -> None:
    (runner,) = chain.queue.stub.ListRunners(queue_pb.ListRunnersRequest(), timeout=10).runners
    offered = runner.info.capabilities
    assert runner.connected
    assert runner_service_pb2.SchedulerInfo(name="sgm_uniform", label="SGM Uniform",
                                            aliases=["SGMUniform"]) in offered.scheduler_infos
    assert "karras" in offered.schedulers and "Latent" in offered.latent_upscale_modes


def test_a_scheduler_alias_ending_the_sampler_name_previews_clean(chain: Chain) -> None:
    draft_id = chain.bundle.new_draft().draft_id
    chain.bundle.add_manual(draft_id, "a lighthouse", _config(sampler_name="DPM++ 2M SGMUniform"))

    page = chain.bundle.stub.PreviewDraft(pb.PreviewDraftRequest(draft_id=draft_id), timeout=30)

    assert page.summary.name_check.checked and list(page.summary.errors) == []


def test_names_in_the_forms_the_webui_accepts_preview_clean_and_run(chain: Chain) -> None:
    config = _with_detection_model("face_yolov8s.pt")
    config.txt2img.model = "v1-5-pruned-emaonly.safetensors [6ce0161689]"
    config.txt2img.vae = "vae-ft-mse-840000-ema-pruned"
    config.txt2img.sampler_name = "DPM++ 2M"
    config.txt2img.scheduler = "Karras"
    config.stages.upscale_enabled = True
    config.upscale.upscaler = "R-ESRGAN 4x+"
    config.upscale.factor = 2.0
    draft_id = chain.bundle.new_draft().draft_id
    chain.bundle.add_manual(draft_id, "a lighthouse at dusk", config)

    page = chain.bundle.stub.PreviewDraft(pb.PreviewDraftRequest(draft_id=draft_id), timeout=30)
    assert page.summary.name_check.checked and list(page.summary.errors) == []
    queued = chain.bundle.enqueue(draft_id, expected_revision=page.draft_revision)
    done = wait_state(chain.queue.stub, queued.job_id)

    assert done.state == job_pb2.JOB_STATE_COMPLETED, done.error_message
    assert [r.executed_config_hash for r in done.results] == [j.config_hash for j in page.jobs]
