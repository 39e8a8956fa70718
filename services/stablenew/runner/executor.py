"""Runs a leased job's entries through their stage plans on the WebUI.

Each entry: build every request first and refuse the entry if they would not make what was
queued (config hash) or name something the WebUI does not offer (preflight.py); switch model
and VAE only when needed; then txt2img -> img2img -> ADetailer -> upscale, each stage applied to
every image the previous one made. Every reply is read back (webui_report.py): a value the WebUI
ran differently from the request fails the entry, naming the key and both values, and the
entry's executed config hash is then the hash of what the WebUI reported, so it equals the
queued hash only when everything ran as queued. ADetailer runs one pass per call: an image that
comes back unchanged is a pass that detected nothing, recorded as that pass's outcome.

A failure is recorded on its entry and the job goes on with the next entry. A WebUI that stops
answering cuts the job off instead (the entry in flight is not recorded) so that the job can go
back to the queue; a cancel stops after the call in flight (which the worker interrupts) and
keeps what finished. Entries an earlier attempt completed are not run again: their results are
kept.

Image files are written on a writer thread of their own while the WebUI goes on with the next
generation: `run_entries` returns once the last reply is in, and `finish` waits for the files and
writes the manifest (the runner calls it beside the next job). A file that cannot be written
fails its entry, as before.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from stablenew.contract.config_hash import config_hash
from stablenew.contract.model import (
    AdetailerOutcome,
    AdetailerOutcomeKind,
    EntryResult,
    EntryStatus,
    ImageRef,
    Job,
    JobProgress,
    NormalizedJob,
    StageType,
)
from stablenew.runner import outputs
from stablenew.runner.domain import Capabilities
from stablenew.runner.payloads import (
    EntryPlan,
    StageRequest,
    adetailer_script,
    comparable,
    executed_job,
    plan_requests,
)
from stablenew.runner.preflight import unknown_names
from stablenew.runner.webui_client import WebuiClient
from stablenew.runner.webui_errors import WebuiError, WebuiErrorKind, bad_response
from stablenew.runner.webui_report import (
    Mismatch,
    Report,
    adetailer_mismatches,
    generation_mismatches,
    model_mismatches,
)
from stablenew.runner.webui_responses import GenerationResult, Progress
from stablenew.sdwebui.model_matching import ModelEntry, find_model

log = logging.getLogger("stablenew.runner")
IMG2IMG_ENDPOINT = "POST /sdapi/v1/img2img"
# Request keys a later img2img call takes from the plan; its size and seed come from the image
# it refines, which no normalized job field holds.
_PLANNED_LATER_KEYS = frozenset({"sampler_name", "scheduler", "steps", "cfg_scale",
                                 "denoising_strength"})


class EntryFailedError(Exception):
    """Why one entry could not finish; recorded on its result."""


class EntryCancelledError(Exception):
    """A cancel arrived while the entry ran."""


class WebuiOutageError(Exception):
    """The WebUI stopped answering while an entry ran: the job is cut off, not failed."""


class ReportedMismatchError(EntryFailedError):
    """The WebUI reported running something other than what was asked."""

    def __init__(self, message: str, executed_hash: str) -> None:
        super().__init__(message)
        self.executed_hash = executed_hash


@dataclass
class SourceImage:
    png: bytes
    seed: int
    # Extras output only: the text of the image it was made from, kept when it is written.
    source_text: dict[str, str] = field(default_factory=dict)


@dataclass
class JobOutcome:
    """What running a job came to: the results in entry order (entries not reached left out),
    whether a cancel stopped it, and why the WebUI cut it off ("" when it did not)."""

    results: list[EntryResult]
    cancelled: bool
    cut_off: str = ""
    # The image files still being written, per entry index; `Executor.finish` settles them.
    writes: dict[int, list[Future[ImageRef]]] = field(default_factory=dict)


class ProgressReporter:
    """A job's progress as the runner reports it: where the generation is, with the newest
    image written so far. The image files are written on the writer thread, so both halves
    are merged under one lock: neither thread reports an older state over a newer one, and
    nothing is reported once the job's run is over (`close`)."""

    def __init__(self, report: Callable[[JobProgress], None]) -> None:
        self._report = report
        self._lock = threading.Lock()
        self._last: JobProgress | None = None
        self._latest_image = ImageRef()
        self._closed = False

    def position(self, progress: JobProgress) -> None:
        """Where the generation is now."""
        with self._lock:
            self._send(replace(progress, latest_image=self._latest_image))

    def image_written(self, write: Future[ImageRef]) -> None:
        """A file of the job was written (a failed write is the entry's, not progress)."""
        if write.cancelled() or write.exception() is not None:
            return
        with self._lock:
            self._latest_image = write.result()
            if self._last is not None:
                self._send(replace(self._last, latest_image=self._latest_image))

    def close(self) -> None:
        with self._lock:
            self._closed = True

    def _send(self, progress: JobProgress) -> None:
        if not self._closed:
            self._last = progress
            self._report(progress)


@dataclass
class EntryRun:
    """One entry in progress: where its files go, how to report, and what the WebUI said."""

    job_id: str
    entry: NormalizedJob
    entry_count: int
    folder: Path
    cancel: threading.Event
    reporter: ProgressReporter
    capabilities: Capabilities | None
    images: list[Future[ImageRef]] = field(default_factory=list)
    outcomes: list[AdetailerOutcome] = field(default_factory=list)
    model: ModelEntry | None = None
    # (request position, ADetailer pass or -1, what differed), in the order found.
    mismatches: list[tuple[int, int, Mismatch]] = field(default_factory=list)

    def progress(self, stage: StageType, step: int, steps: int, entry_fraction: float = 0.0,
                 eta: timedelta | None = None) -> None:
        """Report where the job is: `entry_fraction` of this entry done."""
        self.reporter.position(JobProgress(
            entry_index=self.entry.index, entry_count=self.entry_count, stage=stage,
            step=step, steps=steps,
            fraction=(self.entry.index + entry_fraction) / max(self.entry_count, 1), eta=eta))


class Executor:
    def __init__(self, client: WebuiClient, output_root: Path, input_root: Path,
                 runner_id: str,
                 refresh_capabilities: Callable[[], Capabilities] | None = None) -> None:
        self.client = client
        self.output_root = output_root
        self.input_root = input_root
        self.runner_id = runner_id
        # Called when an entry names something the cached capabilities lack: the WebUI may
        # offer it since they were read.
        self.refresh_capabilities = refresh_capabilities
        # One writer keeps the files of a job in order and off the generation's path.
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="runner-writer")

    def close(self) -> None:
        """Wait for the files being written."""
        self._writer.shutdown(wait=True)

    def run_job(self, job: Job, capabilities: Capabilities | None, cancel: threading.Event,
                report: Callable[[JobProgress], None]) -> JobOutcome:
        """Run the entries no earlier attempt completed (`capabilities`: what the WebUI offers;
        None leaves names unchecked), with their files and the manifest written."""
        return self.finish(job, self.run_entries(job, capabilities, cancel, report))

    def run_entries(self, job: Job, capabilities: Capabilities | None,
                    cancel: threading.Event,
                    report: Callable[[JobProgress], None]) -> JobOutcome:
        """Run the entries; returns when the WebUI made the last image, while its files may
        still be being written (`finish` completes the outcome)."""
        folder = outputs.job_folder(self.output_root, job.job_id)
        done = {result.entry_index: result for result in job.results
                if result.status == EntryStatus.COMPLETED}
        results: list[EntryResult] = []
        writes: dict[int, list[Future[ImageRef]]] = {}
        cut_off = ""
        reporter = ProgressReporter(report)
        try:
            for entry in job.entries:
                if cancel.is_set():
                    break
                if entry.index in done:
                    results.append(done[entry.index])
                    continue
                run = EntryRun(job.job_id, entry, len(job.entries), folder, cancel, reporter,
                               capabilities)
                try:
                    results.append(self.run_entry(run))
                except WebuiOutageError as error:
                    cut_off = str(error)
                    log.warning("job %s cut off: %s", job.job_id, error)
                    break
                writes[entry.index] = run.images
                capabilities = run.capabilities  # refreshed when the entry named something new
        finally:
            reporter.close()  # the files still being written belong to the results now
        return JobOutcome(results, cancel.is_set() and not cut_off, cut_off, writes)

    def finish(self, job: Job, outcome: JobOutcome) -> JobOutcome:
        """Wait for the outcome's files (an entry whose file could not be written fails) and
        write the job's manifest."""
        for result in outcome.results:
            pending = outcome.writes.pop(result.entry_index, None)
            if pending is None:
                continue  # an earlier attempt's result: its files exist
            try:
                result.images = [write.result() for write in pending]
            except (outputs.UnsafePathError, OSError) as error:
                result.images = [write.result() for write in pending if not write.exception()]
                result.status = EntryStatus.FAILED
                result.error_message = str(error)
                log.warning("entry %d of job %s failed: %s", result.entry_index, job.job_id,
                            error)
        folder = outputs.job_folder(self.output_root, job.job_id)
        outputs.write_manifest(folder, self._manifest(job, outcome.results))
        return outcome

    def run_entry(self, run: EntryRun) -> EntryResult:
        """Run one entry; its result. Raises WebuiOutageError when the WebUI stops answering."""
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
        except WebuiError as error:
            if error.kind is WebuiErrorKind.UNAVAILABLE:
                raise WebuiOutageError(f"entry {entry.index}: {error}") from error
            _failed(run, result, error)
        except ReportedMismatchError as error:
            _failed(run, result, error)
            result.executed_config_hash = error.executed_hash
        except (EntryFailedError, outputs.UnsafePathError, OSError) as error:
            _failed(run, result, error)
        result.adetailer_outcomes = run.outcomes
        result.duration = timedelta(seconds=time.monotonic() - started)
        return result

    def _run_stages(self, run: EntryRun) -> str:
        """Run the plan; the executed config hash (the queued one: everything ran as asked).
        A reply that ran another checkpoint than the one the client remembered loaded (switched
        in the WebUI itself) makes the client ask again, and the entry runs once more."""
        plan = self._checked_plan(run)
        try:
            return self._generate(run, plan)
        except ReportedMismatchError:
            if not plan.model or not any(m.key == "model" for _, _, m in run.mismatches):
                raise
        log.warning("entry %d of job %s ran another checkpoint than %s: the model is checked "
                    "again and the entry runs again", run.entry.index, run.job_id, plan.model)
        self.client.forget_loaded_model()
        run.mismatches.clear()
        run.images.clear()  # files of its earlier stages are written again, under the same names
        run.outcomes.clear()
        return self._generate(run, plan)

    def _generate(self, run: EntryRun, plan: EntryPlan) -> str:
        if plan.model:
            known = run.capabilities.models if run.capabilities else []
            self.client.ensure_model(plan.model, known)
            run.model = find_model(known, plan.model)
        if plan.vae:
            self.client.ensure_vae(plan.vae)
        sources = self._inputs(run.entry)
        for position, request in enumerate(plan.requests):
            sources = self._run_stage(run, position, request, sources)
            if run.mismatches:
                raise ReportedMismatchError(_mismatch_message(run),
                                            _executed_hash(run, plan))
        # Every reported value matched requests proven equal (above) to the queued job.
        return run.entry.config_hash

    def _checked_plan(self, run: EntryRun) -> EntryPlan:
        """The entry's requests, refused when they would not make what was queued or name
        something the WebUI does not offer."""
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
        if run.capabilities is not None:
            problems = unknown_names(plan, run.capabilities)
            if problems and self.refresh_capabilities is not None:
                run.capabilities = self.refresh_capabilities()
                problems = unknown_names(plan, run.capabilities)
            if problems:
                raise EntryFailedError("; ".join(problems))
        return plan

    def _inputs(self, entry: NormalizedJob) -> list[SourceImage]:
        """The entry's input images (img2img or upscale first), read from the input root."""
        images = []
        for relative in entry.input_images:
            path = outputs.resolve_inside(self.input_root, relative)
            if not path.is_file():
                raise EntryFailedError(f"input image {relative!r} not found under the input folder")
            images.append(SourceImage(path.read_bytes(), entry.seed))
        return images

    def _run_stage(self, run: EntryRun, position: int, request: StageRequest,
                   sources: list[SourceImage]) -> list[SourceImage]:
        run.progress(request.stage, step=0, steps=run.entry.steps)
        made: list[SourceImage] = []
        inputs: list[SourceImage | None] = list(sources) or [None]
        for image_index, source in enumerate(inputs):
            if run.cancel.is_set():
                raise EntryCancelledError
            if request.stage == StageType.ADETAILER and source is not None:
                made.append(self._detail(run, position, request, source, image_index))
            else:
                made += self._call(run, position, request, source)
            if run.mismatches:
                return made  # not written: the entry fails with what the WebUI reported
        if run.cancel.is_set():
            raise EntryCancelledError  # the WebUI was interrupted: what came back is incomplete
        for image in made:
            context = outputs.ImageContext(run.job_id, run.entry.index, request.stage,
                                           image.seed, run.entry.config_hash, self.runner_id)
            write = self._writer.submit(outputs.write_image, self.output_root, run.folder,
                                        image.png, context, image.source_text)
            write.add_done_callback(run.reporter.image_written)
            run.images.append(write)
        return made

    def _call(self, run: EntryRun, position: int, request: StageRequest,
              source: SourceImage | None) -> list[SourceImage]:
        body = dict(request.body)
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
            elif position > 0:
                # Refine the image at the size it has (a hires fix made it larger).
                body |= _size_of(source.png)
        call = self.client.txt2img if request.endpoint == "txt2img" else self.client.img2img
        result = call(body, on_progress=self._progress_reporter(run, request.stage))
        report = Report.of(result, f"POST /sdapi/v1/{request.endpoint}")
        found = model_mismatches(report, run.model) + generation_mismatches(
            body, report, run.capabilities)
        run.mismatches += [(position, -1, mismatch) for mismatch in found]
        seeds = result.info.get("all_seeds") or [body["seed"]] * len(result.images)
        return [SourceImage(png, int(seed))
                for png, seed in zip(result.images, seeds, strict=False)]

    def _detail(self, run: EntryRun, position: int, request: StageRequest, source: SourceImage,
                image_index: int) -> SourceImage:
        """ADetailer's passes on one image, one call per pass, each on the previous pass's
        result; records whether each pass detailed the image or detected nothing."""
        image = source
        for pass_index, tab in enumerate(request.adetailer_tabs):
            if run.cancel.is_set():
                raise EntryCancelledError
            body = request.body | _size_of(image.png) | {
                "init_images": [_b64(image.png)], "seed": image.seed,
                "alwayson_scripts": adetailer_script(tab)}
            result = self.client.img2img(
                body, on_progress=self._progress_reporter(run, request.stage))
            found = _detail_mismatches(run, tab, result)
            if found:
                run.mismatches += [(position, pass_index, mismatch) for mismatch in found]
                return image
            detailed = not outputs.same_pixels(result.images[0], image.png)
            run.outcomes.append(AdetailerOutcome(
                pass_index=pass_index, model=str(tab["ad_model"]), image_index=image_index,
                outcome=AdetailerOutcomeKind.DETAILED if detailed
                else AdetailerOutcomeKind.NOTHING_DETECTED))
            if not detailed and run.entry.adetailer_passes[pass_index].fail_on_no_detection:
                raise EntryFailedError(
                    f"ADetailer pass {pass_index + 1} ({tab['ad_model']!r}) detected nothing on"
                    f" image {image_index}, and the pass says no detection is an error")
            image = SourceImage(result.images[0], image.seed)
        return image

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


def _failed(run: EntryRun, result: EntryResult, error: Exception) -> None:
    result.status = EntryStatus.FAILED
    result.error_message = str(error)
    log.warning("entry %d of job %s failed: %s", run.entry.index, run.job_id, error)


def _detail_mismatches(run: EntryRun, tab: dict[str, Any],
                       result: GenerationResult) -> list[Mismatch]:
    if len(result.images) != 1:
        raise bad_response(IMG2IMG_ENDPOINT, "an ADetailer pass on one image returned "
                           f"{len(result.images)} images")
    report = Report.of(result, IMG2IMG_ENDPOINT)
    return model_mismatches(report, run.model) + adetailer_mismatches(tab, report)


def _mismatch_message(run: EntryRun) -> str:
    """"the WebUI did not run what was asked: ...", each difference once."""
    described: list[str] = []
    for _, pass_index, mismatch in run.mismatches:
        where = f"ADetailer pass {pass_index + 1}: " if pass_index >= 0 else ""
        if mismatch.key == "ad_model" and mismatch.ran is None:
            text = f"{where}{mismatch.asked!r} did not run (the reply has no ADetailer keys)"
        else:
            text = where + str(mismatch)
        if text not in described:
            described.append(text)
    return "the WebUI did not run what was asked: " + "; ".join(described)


def _executed_hash(run: EntryRun, plan: EntryPlan) -> str:
    """The config hash of what the WebUI reported: the requests with the reported values in
    place, read back into a normalized job. A value no normalized job holds (a later stage's
    size or seed, an img2img that was not skipped) leaves an UNSPECIFIED stage in the plan,
    which no queued job hashes like."""
    requests = [replace(request, body=dict(request.body),
                        adetailer_tabs=[dict(tab) for tab in request.adetailer_tabs])
                for request in plan.requests]
    model, expressible = plan.model, True
    for position, pass_index, mismatch in run.mismatches:
        request = requests[position]
        if mismatch.key == "model":
            model = str(mismatch.ran)
        elif pass_index >= 0 and mismatch.key in request.adetailer_tabs[pass_index]:
            request.adetailer_tabs[pass_index][mismatch.key] = mismatch.ran or ""
        elif mismatch.key in request.body and (position == 0
                                               or mismatch.key in _PLANNED_LATER_KEYS):
            request.body[mismatch.key] = mismatch.ran
        else:
            expressible = False
    job = executed_job(run.entry, EntryPlan(model, plan.vae, requests))
    if not expressible:
        job.stage_plan = [*job.stage_plan, StageType.UNSPECIFIED]
    return config_hash(job)


def _size_of(png: bytes) -> dict[str, int]:
    return dict(zip(("width", "height"), outputs.png_size(png), strict=True))


def _b64(png: bytes) -> str:
    return base64.b64encode(png).decode()


def _scaled_size(png: bytes, scale: float) -> dict[str, int]:
    width, height = outputs.png_size(png)
    # The WebUI wants multiples of 8.
    return {"width": int(width * scale) // 8 * 8, "height": int(height * scale) // 8 * 8}
