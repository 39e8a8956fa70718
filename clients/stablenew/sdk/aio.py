"""The asyncio client: `AsyncClient`, on `grpc.aio`, with the same attributes and methods as
`stablenew.sdk.Client`. Calls are awaited; lists, watches and previews are iterated with
`async for`. Callbacks may be plain functions or coroutines. Each method does what the
synchronous method of the same name documents (both run the same operations)."""

from __future__ import annotations

import builtins
import os
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from stablenew.sdk import _ops
from stablenew.sdk._requests import ConfigLike
from stablenew.sdk.client import DEFAULT_CHUNK_SIZE, Moment, StatesArg, history_filters
from stablenew.sdk.config import ClientConfig
from stablenew.sdk.transport import AsyncTransport
from stablenew.sdk.types import (
    AsyncPreview,
    Capabilities,
    Consumer,
    Draft,
    HistoryChange,
    HistoryRecord,
    ImportResult,
    IngestionStatus,
    InterruptResult,
    Job,
    JobEvent,
    JobProgress,
    JobSource,
    JobView,
    MovePosition,
    Pack,
    PackSummary,
    Priority,
    PromptSource,
    QuarantinedEvent,
    QueueState,
    RunMode,
    Runner,
    RunnerStatus,
)


class _AsyncApi:
    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport


class AsyncPacksApi(_AsyncApi):
    """The prompt-pack library; as `stablenew.sdk.client.PacksApi`."""

    def list(self, page_size: int = 0) -> AsyncIterator[PackSummary]:
        """Every pack (`async for`)."""
        return self._transport.iterate(_ops.list_packs(page_size))

    async def get(self, pack_id: str) -> Pack:
        """One pack."""
        return await self._transport.run(_ops.get_pack(pack_id))


class AsyncDraftsApi(_AsyncApi):
    """Draft bundles; as `stablenew.sdk.client.DraftsApi`."""

    async def create(self, display_name: str = "", request_id: str = "") -> Draft:
        """A new, empty draft."""
        return await self._transport.run(_ops.create_draft(display_name, request_id))

    async def get(self, draft_id: str) -> Draft:
        """A draft with its parts and summary."""
        return await self._transport.run(_ops.get_draft(draft_id))

    def list(self, page_size: int = 0) -> AsyncIterator[Draft]:
        """Every draft (`async for`)."""
        return self._transport.iterate(_ops.list_drafts(page_size))

    async def add_part(self, draft_id: str, prompt: str, negative: str = "",
                       config: ConfigLike | None = None, input_images: Sequence[str] = (),
                       request_id: str = "") -> Draft:
        """Add a manual prompt run with a pipeline config."""
        return await self._transport.run(_ops.add_part(draft_id, prompt, negative, config,
                                                       input_images, request_id))

    async def add_pack(self, draft_id: str, pack_id: str, rows: Sequence[int] | None = None,
                       prepend: str = "", overrides: ConfigLike | None = None,
                       request_id: str = "") -> Draft:
        """Add all or some rows of a pack."""
        return await self._transport.run(_ops.add_pack(draft_id, pack_id, rows, prepend,
                                                       overrides, request_id))

    async def remove_part(self, draft_id: str, part_id: str) -> Draft:
        """Remove one part."""
        return await self._transport.run(_ops.remove_part(draft_id, part_id))

    async def clear(self, draft_id: str) -> Draft:
        """Remove every part."""
        return await self._transport.run(_ops.clear_draft(draft_id))

    async def preview(self, draft_id: str, page_size: int = 0) -> AsyncPreview:
        """The preview; its `jobs` are iterated with `async for`."""
        summary, revision, first = await self._transport.run(
            _ops.preview_head(draft_id, page_size))
        jobs = self._transport.iterate(_ops.preview_jobs(draft_id, page_size, first))
        return AsyncPreview(summary=summary, draft_revision=revision, jobs=jobs)

    async def enqueue(self, draft_id: str, run_mode: RunMode | str = RunMode.QUEUE,
                      priority: Priority | str = Priority.NORMAL, label: str = "",
                      expected_revision: int | None = None, skip_bad_rows: bool = False,
                      request_id: str = "", source: JobSource | str | None = None) -> Job:
        """Submit the draft's normalized jobs to the queue as one job."""
        return await self._transport.run(_ops.enqueue(draft_id, run_mode, priority, label,
                                                      expected_revision, skip_bad_rows,
                                                      request_id, source))


class AsyncQueueApi(_AsyncApi):
    """The active queue; as `stablenew.sdk.client.QueueApi`."""

    def list(self, view: JobView | str = JobView.BASIC,
             page_size: int = 0) -> AsyncIterator[Job]:
        """Active jobs in run order (`async for`)."""
        return self._transport.iterate(_ops.list_queue(view, page_size))

    async def get(self, job_id: str, view: JobView | str = JobView.FULL) -> Job:
        """One job."""
        return await self._transport.run(_ops.get_job(job_id, view))

    async def cancel(self, job_id: str, return_to_queue: bool = False,
                     reason: str = "") -> Job:
        """Cancel a job (or return a running one to the queue)."""
        return await self._transport.run(_ops.cancel(job_id, return_to_queue, reason))

    async def move(self, job_id: str, position: MovePosition | str,
                   before_job_id: str = "") -> Job:
        """Move a queued job."""
        return await self._transport.run(_ops.move(job_id, position, before_job_id))

    async def pause(self) -> QueueState:
        """Hold back queued jobs."""
        return await self._transport.run(_ops.queue_state("PauseQueue"))

    async def resume(self) -> QueueState:
        """Lease queued jobs again."""
        return await self._transport.run(_ops.queue_state("ResumeQueue"))

    async def state(self) -> QueueState:
        """The queue's state."""
        return await self._transport.run(_ops.queue_state("GetQueueState"))

    async def retry(self, job_id: str, failed_only: bool = False,
                    request_id: str = "") -> Job:
        """A new job from a finished one."""
        return await self._transport.run(_ops.retry(job_id, failed_only, request_id))

    async def runners(self) -> builtins.list[Runner]:
        """The runners the queue has seen recently."""
        return await self._transport.run(_ops.collect(_ops.list_runners()))

    async def create_consumer(self, consumer_id: str, after_sequence: int = 0,
                              request_id: str = "") -> Consumer:
        """Register a durable consumer of the event log."""
        return await self._transport.run(_ops.create_consumer(consumer_id, after_sequence,
                                                              request_id))

    def consumers(self, page_size: int = 0) -> AsyncIterator[Consumer]:
        """The durable consumers by id (`async for`)."""
        return self._transport.iterate(_ops.list_consumers(page_size))

    async def delete_consumer(self, consumer_id: str) -> None:
        """Remove a durable consumer."""
        await self._transport.run(_ops.delete_consumer(consumer_id))

    async def acknowledge(self, consumer_id: str, sequence: int) -> int:
        """A durable consumer is done with the events up to `sequence`; its acknowledged
        sequence afterwards."""
        return await self._transport.run(_ops.acknowledge(consumer_id, sequence))


class AsyncHistoryApi(_AsyncApi):
    """The record of every job; as `stablenew.sdk.client.HistoryApi` (the same filters)."""

    def list(self, state: StatesArg = None, run_mode: RunMode | str | None = None,
             source: JobSource | str | None = None,
             prompt_source: PromptSource | str | None = None, pack: str | None = None,
             text: str | None = None, since: Moment | None = None,
             until: Moment | None = None, bookmarked: bool | None = None,
             label: str | None = None, view: JobView | str = JobView.BASIC,
             page_size: int = 0) -> AsyncIterator[Job]:
        """Jobs newest first, filtered (`async for`)."""
        filters = history_filters(state, run_mode, source, prompt_source, pack, text, since,
                                  until, bookmarked, label)
        return self._transport.iterate(_ops.list_history(filters, view, page_size))

    async def get(self, job_id: str) -> HistoryRecord:
        """A job's full record and its state changes."""
        return await self._transport.run(_ops.history_record(job_id))

    async def latest(self, **filters: Any) -> Job:
        """The newest job matching the filters."""
        return await self._transport.run(_ops.latest(history_filters(**filters)))

    def events(self, job_id: str, page_size: int = 0) -> AsyncIterator[JobEvent]:
        """One job's events (`async for`)."""
        return self._transport.iterate(_ops.job_events(job_id, page_size))

    async def ingestion(self) -> IngestionStatus:
        """How the ingestion of the queue's log stands."""
        return await self._transport.run(_ops.ingestion_status())

    def quarantined(self, page_size: int = 0) -> AsyncIterator[QuarantinedEvent]:
        """The events the history could not record, oldest first (`async for`)."""
        return self._transport.iterate(_ops.quarantined_events(page_size))

    async def update(self, job_id: str, bookmarked: bool | None = None,
                     label: str | None = None) -> Job:
        """Set the bookmark and/or the label."""
        return await self._transport.run(_ops.update_history(job_id, bookmarked, label))

    async def delete(self, job_id: str) -> None:
        """Remove a job's record."""
        await self._transport.run(_ops.delete_history(job_id))

    async def prune(self, older_than: Moment | None = None, states: StatesArg = None,
                    keep_bookmarked: bool = False, dry_run: bool = False) -> int:
        """Remove many records at once; the count."""
        return await self._transport.run(_ops.prune(older_than, states, keep_bookmarked,
                                                    dry_run))

    def export_records(self, **filters: Any) -> AsyncIterator[HistoryRecord]:
        """Every matching record, streamed (`async for`)."""
        return self._transport.iterate(_ops.export_records(history_filters(**filters)))

    async def export(self, destination: _ops.PathOrFile, **filters: Any) -> int:
        """Write every matching record to a JSON Lines file; the count."""
        return await self._transport.run(_ops.export(destination, history_filters(**filters)))

    async def import_(self, source: _ops.PathOrFile) -> ImportResult:
        """Bring in the records of a file `export` wrote."""
        return await self._transport.run(_ops.import_history(source))

    def watch(self, on_subscribed: Callable[[], Any] | None = None,
              **filters: Any) -> AsyncIterator[HistoryChange]:
        """Records as they change, live (`async for`); `on_subscribed` (may be a coroutine
        function) as for `Client`."""
        return self._transport.iterate(_ops.watch_history(history_filters(**filters),
                                                          on_subscribed))


class AsyncRunnerApi(_AsyncApi):
    """The configured runner and its images; as `stablenew.sdk.client.RunnerApi`."""

    async def status(self) -> RunnerStatus:
        """The runner and its WebUI's state."""
        return await self._transport.run(_ops.runner_status())

    async def capabilities(self, refresh: bool = False) -> Capabilities:
        """What the WebUI offers."""
        return await self._transport.run(_ops.capabilities(refresh))

    async def interrupt(self) -> InterruptResult:
        """Interrupt the generation in flight."""
        return await self._transport.run(_ops.interrupt())

    async def read_image(self, path: str, chunk_size: int = DEFAULT_CHUNK_SIZE,
                         runner_id: str = "") -> bytes:
        """An image's bytes, from the runner `runner_id` (as `Client`)."""
        return await self._transport.run(_ops.read_image(path, chunk_size, runner_id))

    async def save_image(self, path: str, destination: str | os.PathLike[str],
                         chunk_size: int = DEFAULT_CHUNK_SIZE) -> Path:
        """Stream an image into a file; the file written."""
        return await self._transport.run(_ops.save_image(path, destination, chunk_size))


class AsyncClient:
    """The asyncio client of the four services; configured as `stablenew.sdk.Client`::

        async with AsyncClient() as client:
            job = await client.run_pack("castles")
    """

    def __init__(self, bundle_address: str | None = None, queue_address: str | None = None,
                 runner_address: str | None = None, history_address: str | None = None,
                 token: str | None = None, tls_ca: str | os.PathLike[str] | None = None,
                 timeout: float = 30.0, env: Mapping[str, str] | None = None) -> None:
        """Resolve the configuration; channels open on first use, inside the event loop."""
        self.config = ClientConfig.load(
            bundle_address=bundle_address, queue_address=queue_address,
            runner_address=runner_address, history_address=history_address, token=token,
            tls_ca=tls_ca, timeout=timeout, env=env)
        self._transport = AsyncTransport(self.config)
        self.packs = AsyncPacksApi(self._transport)
        self.drafts = AsyncDraftsApi(self._transport)
        self.queue = AsyncQueueApi(self._transport)
        self.history = AsyncHistoryApi(self._transport)
        self.runner = AsyncRunnerApi(self._transport)

    async def close(self) -> None:
        """Close every channel."""
        await self._transport.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.close()

    def watch(self, after_sequence: int | None = None, job_ids: Sequence[str] | None = None,
              exclude_progress: bool = False, reconnect_for: float | None = 60.0,
              consumer_id: str = "") -> AsyncIterator[JobEvent]:
        """The queue's events, resumed across disconnects (`async for`); as a durable
        consumer with `consumer_id`, from what it acknowledged."""
        return self._transport.iterate(_ops.watch(after_sequence, list(job_ids or ()),
                                                  exclude_progress, reconnect_for,
                                                  consumer_id=consumer_id))

    async def wait(self, job_id: str, on_progress: Callable[[JobProgress], Any] | None = None,
                   timeout: float | None = None,
                   on_event: Callable[[JobEvent], Any] | None = None,
                   reconnect_for: float | None = 60.0) -> Job:
        """Wait until a job finishes; the finished job, full."""
        return await self._transport.run(_ops.wait(job_id, on_progress, on_event, timeout,
                                                   reconnect_for))

    async def run_pack(self, pack_id: str, rows: Sequence[int] | None = None,
                       prepend: str = "", overrides: ConfigLike | None = None,
                       run_mode: RunMode | str = RunMode.QUEUE,
                       priority: Priority | str = Priority.NORMAL, label: str = "",
                       on_progress: Callable[[JobProgress], Any] | None = None,
                       timeout: float | None = None, skip_bad_rows: bool = False) -> Job:
        """Draft, enqueue and wait for a pack; the finished job."""
        return await self._transport.run(_ops.run_pack(
            pack_id, rows, prepend, overrides, run_mode, priority, label, skip_bad_rows,
            on_progress, timeout))

    async def download_images(self, job_id: str, destination: str | os.PathLike[str],
                              chunk_size: int = DEFAULT_CHUNK_SIZE) -> list[Path]:
        """Save every image of a job under `destination`; the files written."""
        return await self._transport.run(_ops.download_images(job_id, destination,
                                                              chunk_size))
