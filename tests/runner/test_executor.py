"""The executor against the emulator over real HTTP, without a queue: stage plans and the
images they leave, per-entry failures, names checked before anything runs, input images, the
config-hash check, a WebUI outage cutting the job off, and the manifest."""

from __future__ import annotations

import io
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from stablenew.contract.config_hash import config_hash
from stablenew.contract.model import (
    EntryResult,
    EntryStatus,
    Img2ImgConfig,
    Job,
    JobProgress,
    NormalizedJob,
    UpscaleConfig,
    UpscaleMode,
)
from stablenew.emulator.server import EmulatorServer
from stablenew.runner.domain import Capabilities
from stablenew.runner.executor import Executor, JobOutcome
from stablenew.runner.outputs import png_size, png_text
from stablenew.runner.webui_client import WebuiClient
from stablenew.runner.webui_errors import WebuiError
from tests.queue.processes import free_port
from tests.runner.harness import (
    ADETAILER,
    FULL_PLAN,
    IMG2IMG,
    TXT2IMG,
    UPSCALE,
    EmulatorAdmin,
    face_pass,
    make_job,
    stablenew_chunk,
)

Run = tuple[list[EntryResult], bool]


class Bench:
    """An executor on the emulator, with its output and input folders."""

    def __init__(self, tmp_path: Path, url: str) -> None:
        self.output_root = tmp_path / "images"
        self.input_root = tmp_path / "inputs"
        self.input_root.mkdir()
        self.client = WebuiClient(url, retries=1, backoff_seconds=0.01)
        self.executor = Executor(self.client, self.output_root, self.input_root, "bench")
        self.reports: list[JobProgress] = []

    def run(self, *entries: NormalizedJob, cancel: threading.Event | None = None,
            earlier: list[EntryResult] | None = None, unchecked: bool = False) -> Run:
        """Run a job of `entries` (`earlier`: results of an earlier attempt; `unchecked`: as
        if the WebUI had not said what it offers, so that its own answer is what counts)."""
        job = Job(job_id=uuid.uuid4().hex, entries=list(entries), results=earlier or [])
        self.job = job
        capabilities = None if unchecked else self.capabilities()
        self.outcome: JobOutcome = self.executor.run_job(
            job, capabilities, cancel or threading.Event(), self.reports.append)
        return self.outcome.results, self.outcome.cancelled

    def capabilities(self) -> Capabilities | None:
        """What the WebUI offers, as the runner reads it before a job; None when it is down."""
        try:
            return self.client.capabilities()
        except WebuiError:
            return None

    def file(self, path: str) -> bytes:
        return (self.output_root / path).read_bytes()

    def manifest(self) -> dict[str, object]:
        manifests = list(self.output_root.glob(f"*/{self.job.job_id}/manifest.json"))
        assert len(manifests) == 1
        manifest: dict[str, object] = json.loads(manifests[0].read_text())
        return manifest

    def input_png(self, name: str, size: tuple[int, int]) -> str:
        path = self.input_root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, (20, 120, 220)).save(path, format="PNG")
        return name


@pytest.fixture
def bench(tmp_path: Path, emulator: EmulatorServer) -> Iterator[Bench]:
    bench = Bench(tmp_path, emulator.url)
    yield bench
    bench.client.close()


def stages_of(result: EntryResult) -> list[str]:
    return [image.stage.name.lower() for image in result.images]


# --- stage plans -------------------------------------------------------------------------------


def test_txt2img_adetailer_upscale_leaves_one_image_per_stage(bench: Bench) -> None:
    entry = make_job(0, "a red fox", FULL_PLAN)
    results, cancelled = bench.run(entry)
    assert not cancelled
    (result,) = results
    assert result.status == EntryStatus.COMPLETED, result.error_message
    assert stages_of(result) == ["txt2img", "adetailer", "upscale"]
    assert [(i.width, i.height) for i in result.images] == [(64, 64), (64, 64), (128, 128)]
    assert {i.seed for i in result.images} == {100}
    for image in result.images:
        data = bench.file(image.path)
        assert png_size(data) == (image.width, image.height)
        text = png_text(data)
        # Extras output carries no generation infotext: the source image's is kept.
        assert text["parameters"].startswith("a red fox\n")
        assert "Seed: 100" in text["parameters"]
        assert stablenew_chunk(data)["config_hash"] == entry.config_hash
    assert "ADetailer model: face_yolov8n.pt" in png_text(bench.file(result.images[1].path))[
        "parameters"]
    assert result.duration is not None
    assert result.executed_config_hash == entry.config_hash


def test_hires_fix_and_a_batch_make_every_image_at_the_hires_size(bench: Bench) -> None:
    entry = make_job(0, "hires castle", (TXT2IMG,), batch_size=2, n_iter=1)
    entry.hires_fix.enabled, entry.hires_fix.scale = True, 2.0
    entry.hires_fix.upscaler, entry.hires_fix.denoising_strength = "Latent", 0.5
    entry.config_hash = config_hash(entry)
    (result,), _ = bench.run(entry)
    assert result.status == EntryStatus.COMPLETED, result.error_message
    assert [(i.width, i.height, i.seed) for i in result.images] == [
        (128, 128, 100), (128, 128, 101)]
    assert [Path(i.path).name for i in result.images] == [
        "000_txt2img_100.png", "000_txt2img_101.png"]


def test_img2img_refines_each_generated_image_with_its_own_seed(bench: Bench,
                                                               admin: EmulatorAdmin) -> None:
    entry = make_job(0, "refined tower", (TXT2IMG, IMG2IMG), batch_size=2,
                     img2img=Img2ImgConfig(denoising_strength=0.5))
    (result,), _ = bench.run(entry)
    assert result.status == EntryStatus.COMPLETED, result.error_message
    assert [(i.stage.name, i.seed) for i in result.images] == [
        ("TXT2IMG", 100), ("TXT2IMG", 101), ("IMG2IMG", 100), ("IMG2IMG", 101)]
    calls = [(c["endpoint"], c["seed"], c["images"]) for c in admin.generations("refined")]
    assert calls == [("txt2img", 100, 2), ("img2img", 100, 1), ("img2img", 101, 1)]


def test_img2img_as_the_first_stage_runs_on_the_input_images(bench: Bench) -> None:
    name = bench.input_png("sketches/a.png", (64, 64))
    entry = make_job(0, "from a sketch", (IMG2IMG, UPSCALE), input_images=[name],
                     img2img=Img2ImgConfig(denoising_strength=0.6))
    (result,), _ = bench.run(entry)
    assert result.status == EntryStatus.COMPLETED, result.error_message
    assert [(i.stage.name, i.width) for i in result.images] == [("IMG2IMG", 64),
                                                                ("UPSCALE", 128)]
    assert "Denoising strength: 0.6" in png_text(bench.file(result.images[0].path))["parameters"]


def test_img2img_upscale_sends_the_input_size_times_the_factor_in_multiples_of_8(
        bench: Bench) -> None:
    entry = make_job(0, "img2img upscale", (TXT2IMG, UPSCALE), upscale=UpscaleConfig(
        mode=UpscaleMode.IMG2IMG, factor=1.3, denoising_strength=0.2))
    (result,), _ = bench.run(entry)
    assert result.status == EntryStatus.COMPLETED, result.error_message
    # 64 * 1.3 = 83.2 -> 80: the WebUI wants multiples of 8.
    assert [(i.stage.name, i.width, i.height) for i in result.images] == [
        ("TXT2IMG", 64, 64), ("UPSCALE", 80, 80)]


def test_upscale_only_runs_on_each_input_image(bench: Bench) -> None:
    first = bench.input_png("a.png", (40, 24))
    second = bench.input_png("nested/b.png", (16, 16))
    entry = make_job(0, "", (UPSCALE,), input_images=[first, second])
    (result,), _ = bench.run(entry)
    assert result.status == EntryStatus.COMPLETED, result.error_message
    assert [(i.width, i.height) for i in result.images] == [(80, 48), (32, 32)]


def test_a_switch_to_another_model_goes_through_the_options(bench: Bench,
                                                            admin: EmulatorAdmin) -> None:
    (result,), _ = bench.run(make_job(0, "dream", model="dreamshaper_8"))
    assert result.status == EntryStatus.COMPLETED, result.error_message
    assert admin.stats()["loaded_checkpoint"] == "dreamshaper_8.safetensors [879db523c3]"
    assert "Model: dreamshaper_8" in png_text(bench.file(result.images[0].path))["parameters"]


def test_a_model_switched_in_the_webui_itself_is_switched_back_and_the_entry_run_again(
        bench: Bench, admin: EmulatorAdmin) -> None:
    (first,), _ = bench.run(make_job(0, "first dream", model="dreamshaper_8"))
    assert first.status == EntryStatus.COMPLETED, first.error_message
    # Someone loads another checkpoint in the WebUI's own page: the runner remembers the
    # one it loaded, so the next entry's reply tells it.
    bench.client.set_options({"sd_model_checkpoint": "v1-5-pruned-emaonly.safetensors"})

    (second,), _ = bench.run(make_job(1, "second dream", model="dreamshaper_8"))

    assert second.status == EntryStatus.COMPLETED, second.error_message
    assert admin.stats()["loaded_checkpoint"] == "dreamshaper_8.safetensors [879db523c3]"
    made = [g for g in admin.generations("second dream") if g["status"] == 200]
    assert len(made) == 2  # one on the wrong checkpoint, thrown away, and the entry again
    assert "Model: dreamshaper_8" in png_text(bench.file(second.images[0].path))["parameters"]


# --- per-entry failures --------------------------------------------------------------------------


def test_an_unknown_model_fails_its_entry_and_the_next_entry_still_runs(bench: Bench) -> None:
    results, cancelled = bench.run(make_job(0, "first", model="no-such-model"),
                                   make_job(1, "second"))
    assert not cancelled
    assert [r.status for r in results] == [EntryStatus.FAILED, EntryStatus.COMPLETED]
    assert "no-such-model" in results[0].error_message
    assert "not found" in results[0].error_message
    assert results[0].images == [] and len(results[1].images) == 1


def test_an_adetailer_model_the_webui_lacks_fails_the_entry_before_anything_runs(
        bench: Bench, admin: EmulatorAdmin) -> None:
    # The real extension answers 200 for an unknown model and details nothing.
    entry = make_job(0, "two passes", (TXT2IMG, ADETAILER),
                     adetailer_passes=[face_pass(), face_pass("face_yolo8n.pt")])
    (result,), _ = bench.run(entry)
    assert result.status == EntryStatus.FAILED
    assert ("ADetailer model 'face_yolo8n.pt' is not offered by the WebUI: did you mean "
            "'face_yolov8n.pt'?") in result.error_message
    assert result.images == [] and admin.generations("two passes") == []


@pytest.mark.parametrize(("field", "value", "what"), [
    ("sampler_name", "Eulr a", "sampler 'Eulr a' is not offered by the WebUI: did you mean "
                               "'Euler a'?"),
    ("scheduler", "karas", "scheduler 'karas' is not offered by the WebUI: did you mean "
                           "'Karras'?"),
    # The WebUI would run "KARRAS" as automatic: another case is not the scheduler's name.
    ("scheduler", "KARRAS", "scheduler 'KARRAS' is not offered by the WebUI: did you mean "
                            "'Karras'?"),
])
def test_a_misspelled_name_fails_its_entry_with_a_suggestion(
        bench: Bench, admin: EmulatorAdmin, field: str, value: str, what: str) -> None:
    changes: dict[str, Any] = {field: value}
    results, _ = bench.run(make_job(0, "misspelled", **changes), make_job(1, "fine"))
    assert [r.status for r in results] == [EntryStatus.FAILED, EntryStatus.COMPLETED]
    assert what in results[0].error_message
    assert admin.generations("misspelled") == []


@pytest.mark.parametrize(("changes", "expected"), [
    ({"sampler_name": "Eulr a"}, "sampler_name: asked for 'Eulr a', the WebUI ran 'DPM++ 2M'"),
    ({"sampler_name": "DPM++ 2M", "scheduler": "karas"},
     "scheduler: asked for 'karas', the WebUI ran 'Automatic'"),
])
def test_a_webui_that_substitutes_a_name_fails_the_entry_with_both_names(
        bench: Bench, changes: dict[str, Any], expected: str) -> None:
    # Unchecked names reach the WebUI, which runs its default silently (as the real one does).
    entry = make_job(0, "substituted", **changes)
    (result,), _ = bench.run(entry, unchecked=True)
    assert result.status == EntryStatus.FAILED
    assert expected in result.error_message
    assert result.images == []
    # The executed hash is what the WebUI reported running, never the queued one.
    assert result.executed_config_hash not in ("", entry.config_hash)
    ran = make_job(0, "substituted", sampler_name="DPM++ 2M")
    if "scheduler" not in changes:
        assert result.executed_config_hash == ran.config_hash


def test_a_faithful_run_with_a_named_scheduler_keeps_the_queued_hash(bench: Bench) -> None:
    entry = make_job(0, "karras", sampler_name="DPM++ 2M", scheduler="Karras")
    (result,), _ = bench.run(entry)
    assert result.status == EntryStatus.COMPLETED, result.error_message
    assert result.executed_config_hash == entry.config_hash


def test_entries_an_earlier_attempt_completed_are_not_run_again(
        bench: Bench, admin: EmulatorAdmin) -> None:
    first, _ = bench.run(make_job(0, "done before"))
    results, _ = bench.run(make_job(0, "done before"), make_job(1, "still to do"),
                           earlier=first)
    assert [r.status for r in results] == [EntryStatus.COMPLETED, EntryStatus.COMPLETED]
    assert results[0] == first[0]
    assert len(admin.generations("done before")) == 1
    assert len(admin.generations("still to do")) == 1


@pytest.mark.parametrize("relative", ["../outside.png", "/etc/hosts", "missing.png"])
def test_a_bad_input_image_fails_only_its_entry(bench: Bench, tmp_path: Path,
                                                relative: str) -> None:
    Image.new("RGB", (8, 8)).save(tmp_path / "outside.png")
    results, _ = bench.run(make_job(0, "", (UPSCALE,), input_images=[relative]),
                           make_job(1, "fine"))
    assert [r.status for r in results] == [EntryStatus.FAILED, EntryStatus.COMPLETED]
    assert relative in results[0].error_message
    assert results[0].images == []


def test_an_unreachable_webui_cuts_the_job_off_without_failing_an_entry(tmp_path: Path) -> None:
    bench = Bench(tmp_path, f"http://127.0.0.1:{free_port()}")
    results, cancelled = bench.run(make_job(0), make_job(1))
    bench.client.close()
    assert (results, cancelled) == ([], False)
    assert "entry 0" in bench.outcome.cut_off and "unavailable" in bench.outcome.cut_off


def test_a_cancel_before_the_job_runs_nothing(bench: Bench, admin: EmulatorAdmin) -> None:
    cancel = threading.Event()
    cancel.set()
    results, cancelled = bench.run(make_job(0, "never"), cancel=cancel)
    assert (results, cancelled) == ([], True)
    assert admin.generations("never") == []
    assert bench.manifest()["entries"] == []


def test_progress_is_reported_while_a_generation_runs(bench: Bench,
                                                      emulator: EmulatorServer) -> None:
    emulator.faults.update({"step_seconds": 0.1})  # 8 steps: at least one progress poll
    bench.run(make_job(0, "slow one", steps=8), make_job(1, "slow two", steps=8))
    assert bench.reports, "no progress was reported"
    assert {(p.entry_index, p.entry_count, p.stage) for p in bench.reports} <= {
        (0, 2, TXT2IMG), (1, 2, TXT2IMG)}
    assert all(0.0 <= p.fraction <= 1.0 and p.steps >= 1 for p in bench.reports)


def test_progress_names_the_newest_image_written(bench: Bench,
                                                 emulator: EmulatorServer) -> None:
    emulator.faults.update({"step_seconds": 0.1})  # the second entry outlasts the first's write
    results, _ = bench.run(make_job(0, "first", steps=8), make_job(1, "second", steps=8))
    written = [image for result in results for image in result.images]
    shown = [report.latest_image for report in bench.reports if report.latest_image.path]
    assert all(image in written for image in shown)
    # Never back to an older image, and the first entry's is shown while the second runs.
    positions = [written.index(image) for image in shown]
    assert positions == sorted(positions)
    assert any(report.entry_index == 1 and report.latest_image == results[0].images[-1]
               for report in bench.reports)
    assert not bench.reports[0].latest_image.path  # nothing written yet


# --- the config-hash check ---------------------------------------------------------------------


def test_a_request_that_cannot_make_the_queued_config_is_refused_before_anything_runs(
        bench: Bench, admin: EmulatorAdmin) -> None:
    # upscaler "None" is sent as "None", which reads back as "no upscaler": another config.
    entry = make_job(0, "refused", (TXT2IMG, UPSCALE), upscale=UpscaleConfig(
        mode=UpscaleMode.EXTRAS, upscaler="None", factor=2.0))
    results, _ = bench.run(entry, make_job(1, "accepted"))
    assert [r.status for r in results] == [EntryStatus.FAILED, EntryStatus.COMPLETED]
    assert "config hash mismatch" in results[0].error_message
    assert admin.generations("refused") == []


def test_an_entry_whose_queued_hash_does_not_match_its_fields_is_refused(
        bench: Bench, admin: EmulatorAdmin) -> None:
    entry = make_job(0, "stale hash")
    entry.steps = 9  # changed after the hash was computed
    (result,), _ = bench.run(entry)
    assert result.status == EntryStatus.FAILED
    assert "config hash mismatch" in result.error_message
    assert admin.generations("stale hash") == []


def test_img2img_first_with_its_own_steps_runs(bench: Bench) -> None:
    name = bench.input_png("a.png", (64, 64))
    entry = make_job(0, "own steps", (IMG2IMG,), input_images=[name],
                     img2img=Img2ImgConfig(denoising_strength=0.5, steps=6))
    (result,), _ = bench.run(entry)
    assert result.status == EntryStatus.COMPLETED, result.error_message


def test_a_faithful_run_records_the_queued_config_hash(bench: Bench) -> None:
    entry = make_job(0, "faithful", (TXT2IMG, IMG2IMG, ADETAILER, UPSCALE),
                     img2img=Img2ImgConfig(denoising_strength=0.5))
    (result,), _ = bench.run(entry)
    assert result.status == EntryStatus.COMPLETED, result.error_message
    assert result.executed_config_hash == entry.config_hash


# --- the manifest ------------------------------------------------------------------------------


def test_the_manifest_lists_every_entry_with_its_images_and_errors(bench: Bench) -> None:
    good = make_job(0, "good", (TXT2IMG, UPSCALE), negative_prompt="blurry")
    bad = make_job(1, "bad", model="no-such-model")
    results, _ = bench.run(good, bad)
    manifest = bench.manifest()
    assert manifest["job_id"] == bench.job.job_id
    assert manifest["runner_id"] == "bench"
    entries = manifest["entries"]
    assert isinstance(entries, list)
    first, second = entries
    assert first["index"] == 0 and first["prompt"] == "good"
    assert first["negative_prompt"] == "blurry"
    assert first["stage_plan"] == ["txt2img", "upscale"]
    assert first["status"] == "completed" and first["error"] == ""
    assert first["config_hash"] == good.config_hash
    assert first["executed_config_hash"] == results[0].executed_config_hash
    assert [(i["path"], i["sha256"], i["stage"]) for i in first["images"]] == [
        (i.path, i.sha256, i.stage.name.lower()) for i in results[0].images]
    assert second["status"] == "failed" and "no-such-model" in second["error"]
    assert second["images"] == []


def test_the_executor_keeps_the_source_infotext_through_extras(bench: Bench) -> None:
    (result,), _ = bench.run(make_job(0, "keep my infotext", (TXT2IMG, UPSCALE)))
    upscaled = png_text(bench.file(result.images[1].path))
    assert upscaled["parameters"] == png_text(bench.file(result.images[0].path))["parameters"]
    with Image.open(io.BytesIO(bench.file(result.images[1].path))) as image:
        assert image.size == (128, 128)


def test_adetailer_keeps_the_size_of_a_hires_fixed_image(bench: Bench) -> None:
    entry = make_job(0, "hires then detail", (TXT2IMG, ADETAILER))
    entry.hires_fix.enabled, entry.hires_fix.scale = True, 2.0
    entry.hires_fix.upscaler, entry.hires_fix.denoising_strength = "Latent", 0.5
    entry.config_hash = config_hash(entry)
    (result,), _ = bench.run(entry)
    assert result.status == EntryStatus.COMPLETED, result.error_message
    assert [(i.stage.name, i.width) for i in result.images] == [("TXT2IMG", 128),
                                                                ("ADETAILER", 128)]


def test_stale_capabilities_are_read_again_before_a_name_they_lack_fails_the_entry(
        bench: Bench, admin: EmulatorAdmin) -> None:
    # The runner caches what the WebUI offers; a sampler it lacks may have been added since.
    stale = bench.capabilities()
    assert stale is not None
    stale.samplers = [name for name in stale.samplers if name != "Euler a"]
    reads: list[Capabilities] = []

    def refresh() -> Capabilities:
        reads.append(bench.client.capabilities())
        return reads[-1]

    executor = Executor(bench.client, bench.output_root, bench.input_root, "bench", refresh)
    job = Job(job_id=uuid.uuid4().hex, entries=[make_job(0, "fresh names"), make_job(1, "next")])
    outcome = executor.run_job(job, stale, threading.Event(), bench.reports.append)
    executor.close()

    assert [r.status for r in outcome.results] == [EntryStatus.COMPLETED] * 2
    assert len(reads) == 1  # read once: the second entry uses what was read for the first
    assert len(admin.generations("fresh names")) == 1
