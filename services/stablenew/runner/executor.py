"""Runs a leased job's entries through their stage plans on the WebUI.

Each entry: build every request first and refuse the entry if they would not make what was
queued (config hash); switch model and VAE only when needed; then txt2img -> img2img ->
ADetailer -> upscale, each stage applied to every image the previous one made. A failure is
recorded on its entry and the job goes on with the next entry; a cancel stops after the call in
flight (which the worker interrupts) and keeps what finished.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from stablenew.contract.config_hash import config_hash
from stablenew.contract.model import (
    EntryResult,
    EntryStatus,
    ImageRef,
    Job,
    JobProgress,
    NormalizedJob,
    StageType,
)
from stablenew.runner import outputs
from stablenew.runner.payloads import StageRequest, comparable, executed_job, plan_requests
from stablenew.runner.webui_client import WebuiClient
from stablenew.runner.webui_errors import WebuiError
from stablenew.runner.webui_responses import GenerationResult, Progress
from stablenew.sdwebui.adetailer_tabs import ordinal_suffix

log = logging.getLogger("stablenew.runner")


class EntryFailedError(Exception):
    """Why one entry could not finish; recorded on its result."""


class EntryCancelledError(Exception):
    """A cancel arrived while the entry ran."""


@dataclass
class SourceImage:
    png: bytes
    seed: int
    # Extras output only: the text of the image it was made from, kept when it is written.
    source_text: dict[str, str] = field(default_factory=dict)


def adetailer_key(position: int) -> str:
    """ADetailer reports its n-th tab as "ADetailer model", "... 2nd", "... 3rd", "... 4th"."""
    return "ADetailer model" + ordinal_suffix(position - 1)


def check_adetailer_ran(result: GenerationResult, models: list[str]) -> None:
    """ADetailer never fails the HTTP call: the only trace of a skipped pass is a missing key."""
    params = result.info.get("extra_generation_params") or {}
    for position, model in enumerate(models, start=1):
        if params.get(adetailer_key(position)) != model:
            raise EntryFailedError(
                f"ADetailer pass {position} ({model}) did not run: the WebUI skipped it silently "
                f"(no '{adetailer_key(position)}' in extra_generation_params)")


@dataclass
class EntryRun:
    """One entry in progress: where its files go and how to report."""

    job_id: str
    entry: NormalizedJob
    entry_count: int
    folder: Path
    cancel: threading.Event
    report: Callable[[JobProgress], None]
    images: list[ImageRef]

    def progress(self, stage: StageType, step: int, steps: int, entry_fraction: float = 0.0,
                 eta: timedelta | None = None) -> None:
        """Report where the job is: `entry_fraction` of this entry done."""
        self.report(JobProgress(
            entry_index=self.entry.index, entry_count=self.entry_count, stage=stage,
            step=step, steps=steps,
            fraction=(self.entry.index + entry_fraction) / max(self.entry_count, 1), eta=eta))


class Executor:
    def __init__(self, client: WebuiClient, output_root: Path, input_root: Path,
                 runner_id: str) -> None:
        self.client = client
        self.output_root = output_root
        self.input_root = input_root
        self.runner_id = runner_id

    def run_job(self, job: Job, cancel: threading.Event,
                report: Callable[[JobProgress], None]) -> tuple[list[EntryResult], bool]:
        """Every entry's result, and whether a cancel stopped the job early."""
        folder = outputs.job_folder(self.output_root, job.job_id)
        results: list[EntryResult] = []
        for entry in job.entries:
            if cancel.is_set():
                break
            run = EntryRun(job.job_id, entry, len(job.entries), folder, cancel, report, [])
            results.append(self.run_entry(run))
        outputs.write_manifest(folder, self._manifest(job, results))
        return results, cancel.is_set()

    def run_entry(self, run: EntryRun) -> EntryResult:
        entry = run.entry
        started = time.monotonic()
        result = EntryResult(
            entry_index=entry.index, prompt_pack_id=entry.origin.prompt_pack_id,
            pack_name=entry.origin.pack_name, row_index=entry.origin.row_index,
            prompt=entry.prompt, stage_plan=list(entry.stage_plan))
        try:
            result.executed_config_hash = self._run_stages(run)
            result.status = EntryStatus.COMPLETED
        except EntryCancelledError:
            result.status = EntryStatus.CANCELLED
            result.error_message = "cancelled while running"
        except (EntryFailedError, WebuiError, outputs.UnsafePathError, OSError) as error:
            result.status = EntryStatus.FAILED
            result.error_message = str(error)
            log.warning("entry %d of job %s failed: %s", entry.index, run.job_id, error)
        result.images = run.images
        result.duration = timedelta(seconds=time.monotonic() - started)
        return result

    def _run_stages(self, run: EntryRun) -> str:
        if config_hash(run.entry) != run.entry.config_hash:
            raise EntryFailedError(
                f"config hash mismatch: the entry's fields hash to {config_hash(run.entry)[:12]}, "
                f"it was queued as {run.entry.config_hash[:12]}")
        plan = plan_requests(run.entry)
        executed = executed_job(run.entry, plan)
        if config_hash(comparable(executed)) != config_hash(comparable(run.entry)):
            raise EntryFailedError(
                f"config hash mismatch: the requests would make {config_hash(executed)[:12]}, "
                f"the queued job is {run.entry.config_hash[:12]}")
        if plan.model:
            self.client.ensure_model(plan.model)
        if plan.vae:
            self.client.ensure_vae(plan.vae)
        sources = self._inputs(run.entry)
        for position, request in enumerate(plan.requests):
            sources = self._run_stage(run, request, sources, first=position == 0)
        # Proven equal (above) to the queued job: what ran is what was queued.
        return run.entry.config_hash

    def _inputs(self, entry: NormalizedJob) -> list[SourceImage]:
        """The entry's input images (img2img or upscale first), read from the input root."""
        images = []
        for relative in entry.input_images:
            path = outputs.resolve_inside(self.input_root, relative)
            if not path.is_file():
                raise EntryFailedError(f"input image {relative!r} not found under the input folder")
            images.append(SourceImage(path.read_bytes(), entry.seed))
        return images

    def _run_stage(self, run: EntryRun, request: StageRequest, sources: list[SourceImage],
                   first: bool) -> list[SourceImage]:
        run.progress(request.stage, step=0, steps=run.entry.steps)
        made: list[SourceImage] = []
        inputs: list[SourceImage | None] = list(sources) or [None]
        for source in inputs:
            if run.cancel.is_set():
                raise EntryCancelledError
            made += self._call(run, request, source, first)
        if run.cancel.is_set():
            raise EntryCancelledError  # the WebUI was interrupted: what came back is incomplete
        for image in made:
            context = outputs.ImageContext(run.job_id, run.entry.index, request.stage,
                                           image.seed, run.entry.config_hash, self.runner_id)
            run.images.append(outputs.write_image(self.output_root, run.folder, image.png,
                                                  context, image.source_text))
        return made

    def _call(self, run: EntryRun, request: StageRequest, source: SourceImage | None,
              first: bool) -> list[SourceImage]:
        body = dict(request.body)
        on_progress = self._progress_reporter(run, request.stage)
        if source is not None and source.source_text:
            # A stage after an extras upscale (no plan the bundle makes): send what was written.
            source = SourceImage(outputs.with_source_text(source.png, source.source_text),
                                 source.seed)
        if request.endpoint == "extra-single-image":
            assert source is not None
            png = self.client.extra_single_image(body | {"image": _b64(source.png)})
            # Extras output carries no generation infotext: the source's is kept when written.
            return [SourceImage(png, source.seed, outputs.png_text(source.png))]
        if source is not None:
            # Each image is refined with the seed it was made with.
            body |= {"init_images": [_b64(source.png)], "seed": source.seed}
            if request.scale:
                body |= _scaled_size(source.png, request.scale)
            elif request.stage == StageType.ADETAILER or not first:
                # Detail and refine the image at the size it has (a hires fix made it larger).
                body |= dict(zip(("width", "height"), outputs.png_size(source.png), strict=True))
        call = self.client.txt2img if request.endpoint == "txt2img" else self.client.img2img
        result = call(body, on_progress=on_progress)
        if request.adetailer_models:
            check_adetailer_ran(result, request.adetailer_models)
        seeds = result.info.get("all_seeds") or [body["seed"]] * len(result.images)
        return [SourceImage(png, int(seed))
                for png, seed in zip(result.images, seeds, strict=False)]

    def _progress_reporter(self, run: EntryRun, stage: StageType) -> Callable[[Progress], None]:
        def report(progress: Progress) -> None:
            run.progress(stage, step=progress.sampling_step,
                         steps=max(progress.sampling_steps, 1),
                         entry_fraction=min(progress.progress, 1.0),
                         eta=timedelta(seconds=max(progress.eta_relative, 0.0)))
        return report

    def _manifest(self, job: Job, results: list[EntryResult]) -> dict[str, Any]:
        by_index = {entry.index: entry for entry in job.entries}
        return {
            "job_id": job.job_id,
            "runner_id": self.runner_id,
            "written": datetime.now(UTC).isoformat(),
            "config_hash": job.config_hash,
            "entries": [{
                "index": result.entry_index,
                "prompt": result.prompt,
                "negative_prompt": by_index[result.entry_index].negative_prompt,
                "stage_plan": [stage.name.lower() for stage in result.stage_plan],
                "status": result.status.name.lower(),
                "error": result.error_message,
                "config_hash": by_index[result.entry_index].config_hash,
                "executed_config_hash": result.executed_config_hash,
                "images": [outputs.image_ref_dict(image) for image in result.images],
            } for result in results],
        }


def _b64(png: bytes) -> str:
    return base64.b64encode(png).decode()


def _scaled_size(png: bytes, scale: float) -> dict[str, int]:
    width, height = outputs.png_size(png)
    # The WebUI wants multiples of 8.
    return {"width": int(width * scale) // 8 * 8, "height": int(height * scale) // 8 * 8}
