"""A history server in this process whose records are made by applying synthetic queue events
(the ingestion's own code path, without a queue), so a test controls every field and time."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

from stablenew.contract.config_hash import config_hash
from stablenew.contract.model import (
    AdetailerPass,
    EntryOrigin,
    EntryResult,
    EntryStatus,
    Job,
    JobOrigin,
    JobSource,
    JobState,
    NormalizedJob,
    Priority,
    PromptSource,
    RunMode,
    StageType,
    UpscaleConfig,
)
from stablenew.contract.proto_mapping import to_proto
from stablenew.history import app, mapping
from stablenew.history.core import HistoryCore
from stablenew.history.domain import StateChanged, Submitted
from stablenew.history.servicer import HistoryServicer
from stablenew.history.store import HistoryStore
from stablenew.runtime.server import ServiceSpec
from stablenew.runtime.settings import ServerSettings
from stablenew.v1 import history_service_pb2_grpc, job_pb2
from tests.history.harness import HistoryHarness

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def entry(prompt: str = "a lighthouse at dusk", pack_id: str = "", index: int = 0,
          stages: tuple[StageType, ...] = (StageType.TXT2IMG,)) -> NormalizedJob:
    made = NormalizedJob(
        index=index, prompt=prompt, stage_plan=list(stages), seed=1234 + index, model="sd15",
        width=512, height=512, steps=20, cfg_scale=7.0, batch_size=1, n_iter=1,
        sampler_name="Euler a",
        # What the queue requires of these stages (the bundle's config limits).
        adetailer_passes=[AdetailerPass(model="face_yolov8n.pt")]
        if StageType.ADETAILER in stages else [],
        upscale=UpscaleConfig(upscaler="R-ESRGAN 4x+") if StageType.UPSCALE in stages
        else UpscaleConfig(),
        origin=EntryOrigin(prompt_source=PromptSource.PACK if pack_id else PromptSource.MANUAL,
                           prompt_pack_id=pack_id, pack_name=pack_id.title(), row_index=index))
    made.config_hash = config_hash(made)
    return made


class Records(HistoryHarness):
    """The core, its store and a served HistoryService over one database (no ingestion: the
    test applies the events)."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None) -> None:
        super().__init__(data_dir, env=env)
        self.store = HistoryStore(data_dir / app.DATABASE_NAME)
        self.core = HistoryCore(self.store)
        self.sequence = itertools.count(1)
        self.ids = itertools.count(1)
        self.start()

    def build(self, settings: ServerSettings, env: Mapping[str, str]) -> ServiceSpec:
        servicer = HistoryServicer(self.core, max_message_bytes=settings.max_message_bytes)
        return ServiceSpec(
            name="history", proto_services=[app.SERVICE.full_name],
            register=lambda server: history_service_pb2_grpc.add_HistoryServiceServicer_to_server(
                servicer, server),
            on_draining=self.core.close)

    def close(self) -> None:
        self.stop()
        self.store.close()

    def event(self, job_id: str, moment: datetime,
              payload: Submitted | StateChanged) -> None:
        """Apply the event as ingestion does: from the queue's message."""
        message = job_pb2.JobEvent(sequence=next(self.sequence), job_id=job_id)
        message.time.FromDatetime(moment)
        if isinstance(payload, Submitted):
            message.submitted.job.CopyFrom(to_proto(payload.job))
        else:
            change = message.state_changed
            change.from_state = int(payload.from_state)  # type: ignore[assignment]
            change.to_state = int(payload.to_state)  # type: ignore[assignment]
            change.reason = payload.reason
            change.runner_id = payload.runner_id
            change.attempt = payload.attempt
            change.error_message = payload.error_message
            change.results.extend(to_proto(result) for result in payload.results)
        self.core.apply(mapping.incoming_from_proto(message))

    def add(self, state: JobState = JobState.COMPLETED, created: datetime | None = None,
            run_mode: RunMode = RunMode.QUEUE, pack_id: str = "", label: str = "",
            prompts: tuple[str, ...] = ("a lighthouse at dusk",), job_id: str = "",
            source: JobSource | None = None, entry_packs: tuple[str, ...] = ()) -> str:
        """A job that went from QUEUED to `state` through the ingestion's code path. Its entries
        come from `pack_id`, or each from its own pack in `entry_packs` (a job that mixes packs,
        whose origin then names none, as the bundle submits it)."""
        job_id = job_id or f"job-{next(self.ids):05d}"
        created = created or T0 + timedelta(minutes=next(self.ids))
        packs = entry_packs or (pack_id,) * len(prompts)
        entries = [entry(prompt, pack, index)
                   for index, (prompt, pack) in enumerate(zip(prompts, packs, strict=True))]
        if source is None:
            source = JobSource.RUN_NOW if run_mode == RunMode.DIRECT else JobSource.ADD_TO_QUEUE
        job = Job(job_id=job_id, state=JobState.QUEUED, origin=JobOrigin(
            run_mode=run_mode, source=source,
            prompt_source=PromptSource.PACK if any(packs) else PromptSource.MANUAL,
            prompt_pack_id=pack_id), priority=Priority.NORMAL, label=label,
            create_time=created, update_time=created, entries=entries,
            entry_count=len(entries), estimated_images=len(entries),
            payload_summary=f"{len(entries)} entries: {prompts[0]}")
        self.event(job_id, created, Submitted(job))
        if state in (JobState.RUNNING, JobState.COMPLETED, JobState.FAILED):
            self.event(job_id, created + timedelta(seconds=1),
                       StateChanged(JobState.QUEUED, JobState.RUNNING, "leased", "gpu-1", 1))
        if state.is_terminal:
            status = {JobState.COMPLETED: EntryStatus.COMPLETED,
                      JobState.FAILED: EntryStatus.FAILED}.get(state, EntryStatus.CANCELLED)
            results = [EntryResult(entry_index=e.index, prompt=e.prompt, status=status,
                                   prompt_pack_id=e.origin.prompt_pack_id,
                                   pack_name=e.origin.pack_name, row_index=e.origin.row_index,
                                   stage_plan=list(e.stage_plan),
                                   executed_config_hash=e.config_hash) for e in entries]
            before = JobState.QUEUED if state == JobState.CANCELLED else JobState.RUNNING
            self.event(job_id, created + timedelta(seconds=5), StateChanged(
                before, state, state.name.lower(), "gpu-1" if before == JobState.RUNNING else "",
                1 if before == JobState.RUNNING else 0,
                "boom" if state == JobState.FAILED else "", results))
        return job_id
