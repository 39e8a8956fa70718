"""The synchronous client: `Client`, with one attribute per service (`packs`, `drafts`,
`queue`, `history`, `runner`) and the workflows that span them (`watch`, `wait`, `run_pack`,
`download_images`). `stablenew.sdk.aio.AsyncClient` has the same methods on asyncio."""

from __future__ import annotations

import builtins
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from stablenew.sdk import _ops
from stablenew.sdk._requests import ConfigLike
from stablenew.sdk.config import ClientConfig
from stablenew.sdk.transport import SyncTransport
from stablenew.sdk.types import (
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
    JobState,
    JobView,
    MovePosition,
    Pack,
    PackSummary,
    Preview,
    Priority,
    PromptSource,
    QuarantinedEvent,
    QueueState,
    RunMode,
    Runner,
    RunnerStatus,
)

# Image chunk size asked of the runner: 0 is its default (64 KiB).
DEFAULT_CHUNK_SIZE = 0

# An enum argument: the member, its name ("queued", "QUEUED") or its number.
StateArg = JobState | str | int
StatesArg = StateArg | Iterable[StateArg] | None
Moment = datetime | timedelta


def history_filters(
    state: StatesArg = None,
    run_mode: RunMode | str | None = None,
    source: JobSource | str | None = None,
    prompt_source: PromptSource | str | None = None,
    pack: str | None = None,
    text: str | None = None,
    since: Moment | None = None,
    until: Moment | None = None,
    bookmarked: bool | None = None,
    label: str | None = None,
) -> dict[str, Any]:
    """The history filter arguments as one mapping (every method that filters takes these;
    an unknown name is a TypeError)."""
    return {"state": state, "run_mode": run_mode, "source": source,
            "prompt_source": prompt_source, "pack": pack, "text": text, "since": since,
            "until": until, "bookmarked": bookmarked, "label": label}


class _Api:
    def __init__(self, transport: SyncTransport) -> None:
        self._transport = transport


class PacksApi(_Api):
    """The prompt-pack library (bundle service)."""

    def list(self, page_size: int = 0) -> Iterator[PackSummary]:
        """Every pack, by id; pages are read as the iterator advances.

        Args:
            page_size: Packs per call (0: the server's default).
        """
        return self._transport.iterate(_ops.list_packs(page_size))

    def get(self, pack_id: str) -> Pack:
        """One pack with its rows, matrix, default config and problems.

        Raises:
            PackNotFoundError: No pack has this id.
            PackInvalidError: The pack cannot be parsed.
        """
        return self._transport.run(_ops.get_pack(pack_id))


class DraftsApi(_Api):
    """Draft bundles: collect parts, preview, enqueue (bundle service)."""

    def create(self, display_name: str = "", request_id: str = "") -> Draft:
        """A new, empty draft.

        Args:
            display_name: A name to show.
            request_id: Repeating it returns the draft it created (safe retries).
        """
        return self._transport.run(_ops.create_draft(display_name, request_id))

    def get(self, draft_id: str) -> Draft:
        """A draft with its parts and summary.

        Raises:
            DraftNotFoundError: No draft has this id.
        """
        return self._transport.run(_ops.get_draft(draft_id))

    def list(self, page_size: int = 0) -> Iterator[Draft]:
        """Every draft; pages are read as the iterator advances."""
        return self._transport.iterate(_ops.list_drafts(page_size))

    def add_part(self, draft_id: str, prompt: str, negative: str = "",
                 config: ConfigLike | None = None, input_images: Sequence[str] = (),
                 request_id: str = "") -> Draft:
        """Add a manual prompt run with a pipeline config.

        Args:
            draft_id: The draft.
            prompt: The positive prompt.
            negative: The negative prompt.
            config: A `PipelineConfig` (the contract twin or the message) or a mapping of its
                fields, nested or dotted: `{"stages.txt2img_enabled": True,
                "txt2img.steps": 20}`. Unset fields get the defaults.
            input_images: Paths under the runner's input root (img2img or upscale only).
            request_id: Repeating it returns the first result.

        Returns:
            The updated draft (its last part is the new one).

        Raises:
            InvalidArgumentError: A config field is unknown or has a bad value (also before
                any call, naming the field).
            InvalidStagePlanError: The stages cannot run.
            DraftNotFoundError: No draft has this id.
        """
        return self._transport.run(_ops.add_part(draft_id, prompt, negative, config,
                                                 input_images, request_id))

    def add_pack(self, draft_id: str, pack_id: str, rows: Sequence[int] | None = None,
                 prepend: str = "", overrides: ConfigLike | None = None,
                 request_id: str = "") -> Draft:
        """Add all or some rows of a pack, one part per row.

        Args:
            draft_id: The draft.
            pack_id: The pack (its file stem).
            rows: Row indices to add; None or empty for every row.
            prepend: Text put before each row's prompt.
            overrides: Config fields that replace the pack's defaults (as `add_part`'s config).
            request_id: Repeating it returns the first result.

        Raises:
            PackNotFoundError, PackInvalidError, InvalidArgumentError (a row that does not
            exist: the violation names `row_indices[i]`), DraftNotFoundError.
        """
        return self._transport.run(_ops.add_pack(draft_id, pack_id, rows, prepend, overrides,
                                                 request_id))

    def remove_part(self, draft_id: str, part_id: str) -> Draft:
        """Remove one part.

        Raises:
            DraftNotFoundError, PartNotFoundError.
        """
        return self._transport.run(_ops.remove_part(draft_id, part_id))

    def clear(self, draft_id: str) -> Draft:
        """Remove every part; the draft stays, with a new revision."""
        return self._transport.run(_ops.clear_draft(draft_id))

    def preview(self, draft_id: str, page_size: int = 0) -> Preview:
        """Exactly the normalized jobs an enqueue submits, with the summary and row errors.

        The first page is read now (for the summary and the revision); `Preview.jobs` reads
        the others as it is iterated. A draft changed meanwhile ends that iteration with
        InvalidPageTokenError: preview again.

        Args:
            draft_id: The draft.
            page_size: Normalized jobs per call (0: the server's default).
        """
        summary, revision, first = self._transport.run(_ops.preview_head(draft_id, page_size))
        jobs = self._transport.iterate(_ops.preview_jobs(draft_id, page_size, first))
        return Preview(summary=summary, draft_revision=revision, jobs=jobs)

    def enqueue(self, draft_id: str, run_mode: RunMode | str = RunMode.QUEUE,
                priority: Priority | str = Priority.NORMAL, label: str = "",
                expected_revision: int | None = None, skip_bad_rows: bool = False,
                request_id: str = "", source: JobSource | str | None = None) -> Job:
        """Submit the draft's normalized jobs to the queue as one job.

        Args:
            draft_id: The draft.
            run_mode: QUEUE (add to the queue) or DIRECT (run now, even while paused).
            priority: LOW, NORMAL or HIGH.
            label: A label for the job.
            expected_revision: Refuse (DraftRevisionMismatchError) if the draft changed since
                this revision, e.g. `Preview.draft_revision`. Without it, and without
                `skip_bad_rows`, the revision checked for row errors is used.
            skip_bad_rows: Queue the jobs of the good rows when some rows make no job;
                otherwise such a draft is refused with RowErrorsError before anything is queued.
            request_id: Repeating it returns the job first queued.
            source: The user action recorded (default: from the run mode).

        Raises:
            RowErrorsError, DraftEmptyError, DraftRevisionMismatchError, DraftNotFoundError,
            DependencyUnavailableError (the queue is down; retry with the same request_id).
        """
        return self._transport.run(_ops.enqueue(draft_id, run_mode, priority, label,
                                                expected_revision, skip_bad_rows, request_id,
                                                source))


class QueueApi(_Api):
    """The active queue (queue service)."""

    def list(self, view: JobView | str = JobView.BASIC, page_size: int = 0) -> Iterator[Job]:
        """Active jobs (QUEUED and RUNNING) in run order; pages are read as it advances.

        Args:
            view: BASIC (without entries and results) or FULL.
            page_size: Jobs per call (0: the server's default).
        """
        return self._transport.iterate(_ops.list_queue(view, page_size))

    def get(self, job_id: str, view: JobView | str = JobView.FULL) -> Job:
        """One job, with live progress while it runs; a full job too large for one message is
        read in parts and given whole.

        Raises:
            JobNotFoundError: Unknown, or finished longer ago than the queue keeps jobs (ask
                `history.get`).
        """
        return self._transport.run(_ops.get_job(job_id, view))

    def cancel(self, job_id: str, return_to_queue: bool = False, reason: str = "") -> Job:
        """Cancel a job: a queued one at once, a running one through its runner.

        Args:
            job_id: The job.
            return_to_queue: A running job goes back to QUEUED instead of ending CANCELLED.
            reason: Recorded with the cancel.

        Raises:
            IllegalTransitionError: The job already finished.
        """
        return self._transport.run(_ops.cancel(job_id, return_to_queue, reason))

    def move(self, job_id: str, position: MovePosition | str,
             before_job_id: str = "") -> Job:
        """Move a queued job: FRONT, BACK, UP, DOWN, or BEFORE `before_job_id`.

        Raises:
            IllegalTransitionError: The job is not queued (or not in the same run mode).
        """
        return self._transport.run(_ops.move(job_id, position, before_job_id))

    def pause(self) -> QueueState:
        """Hold back queued jobs (running and direct jobs go on); idempotent."""
        return self._transport.run(_ops.queue_state("PauseQueue"))

    def resume(self) -> QueueState:
        """Lease queued jobs again; idempotent."""
        return self._transport.run(_ops.queue_state("ResumeQueue"))

    def state(self) -> QueueState:
        """Paused or not, jobs per state, runners, the last event's sequence."""
        return self._transport.run(_ops.queue_state("GetQueueState"))

    def retry(self, job_id: str, failed_only: bool = False, request_id: str = "") -> Job:
        """A new job from a finished one (linked by `origin.retry_of_job_id`).

        Args:
            job_id: The finished job.
            failed_only: Only the entries without a COMPLETED result.
            request_id: Repeating it returns the job first created.

        Raises:
            IllegalTransitionError: The job is not finished, or has no failed entry.
        """
        return self._transport.run(_ops.retry(job_id, failed_only, request_id))

    def runners(self) -> builtins.list[Runner]:
        """The runners the queue has seen recently, with their current job and progress."""
        return self._transport.run(_ops.collect(_ops.list_runners()))

    def create_consumer(self, consumer_id: str, after_sequence: int = 0,
                        request_id: str = "") -> Consumer:
        """Register a durable consumer of the event log: the events after `after_sequence`
        are kept until it acknowledges them, or until it expires after the queue's idle time
        (STABLENEW_CONSUMER_IDLE_SECONDS) without watching or acknowledging (the RPCs WatchJobs
        and AcknowledgeEvents with its consumer_id).

        Raises:
            ConsumerAlreadyExistsError: The id is taken (by another request_id).
        """
        return self._transport.run(_ops.create_consumer(consumer_id, after_sequence,
                                                        request_id))

    def consumers(self, page_size: int = 0) -> Iterator[Consumer]:
        """The durable consumers by id, with what each acknowledged and when it expires."""
        return self._transport.iterate(_ops.list_consumers(page_size))

    def delete_consumer(self, consumer_id: str) -> None:
        """Remove a durable consumer: the events it held are pruned as they age.

        Raises:
            ConsumerNotFoundError: No such consumer (never created, deleted, or expired).
        """
        self._transport.run(_ops.delete_consumer(consumer_id))

    def acknowledge(self, consumer_id: str, sequence: int) -> int:
        """Tell the queue a durable consumer is done with every event up to and including
        `sequence`: a `watch(consumer_id=...)` started later resumes after it, and the queue
        may prune those events. Acknowledge once an event's effect is kept, never before.

        Returns:
            The consumer's acknowledged sequence (it never moves back).

        Raises:
            ConsumerNotFoundError: No such consumer (never created, deleted, or expired).
            InvalidArgumentError: `sequence` is beyond the queue's last event.
        """
        return self._transport.run(_ops.acknowledge(consumer_id, sequence))


class HistoryApi(_Api):
    """The durable record of every job (history service).

    The filtering methods take: `state` (one state or several), `run_mode`, `source`,
    `prompt_source`, `pack` (a pack id), `text` (a case-insensitive substring of a prompt or
    the label), `since` / `until` (created after / before: a datetime, or a timedelta ago),
    `bookmarked` and `label` (exactly this label: sent as the text filter, matched here).
    Enum arguments accept the member, its name in any case, or its number.
    """

    def list(self, state: StatesArg = None, run_mode: RunMode | str | None = None,
             source: JobSource | str | None = None,
             prompt_source: PromptSource | str | None = None, pack: str | None = None,
             text: str | None = None, since: Moment | None = None,
             until: Moment | None = None, bookmarked: bool | None = None,
             label: str | None = None, view: JobView | str = JobView.BASIC,
             page_size: int = 0) -> Iterator[Job]:
        """Jobs newest first, filtered; pages are read as the iterator advances.

        Args:
            view: BASIC (without entries and results) or FULL.
            page_size: Jobs per call (0: the server's default).
            state, run_mode, source, prompt_source, pack, text, since, until, bookmarked,
                label: The filters (see the class).
        """
        filters = history_filters(state, run_mode, source, prompt_source, pack, text, since,
                                  until, bookmarked, label)
        return self._transport.iterate(_ops.list_history(filters, view, page_size))

    def get(self, job_id: str) -> HistoryRecord:
        """A job's full record (entries, per-entry results) and its state changes; a record
        too large for one message is read in parts and given whole.

        Raises:
            JobNotFoundError: The history has no such job.
        """
        return self._transport.run(_ops.history_record(job_id))

    def latest(self, **filters: Any) -> Job:
        """The newest job matching the filters (e.g. `latest(state="completed")`).

        Raises:
            JobNotFoundError: No job matches.
        """
        return self._transport.run(_ops.latest(history_filters(**filters)))

    def events(self, job_id: str, page_size: int = 0) -> Iterator[JobEvent]:
        """One job's events as the queue logged them, in sequence order (progress events are
        not kept). An event too large for one message comes with the entries or results that
        fit and `trimmed` set."""
        return self._transport.iterate(_ops.job_events(job_id, page_size))

    def ingestion(self) -> IngestionStatus:
        """How the ingestion of the queue's log stands (lag, the queue's reachability, the
        last error, the quarantined count); answered whether or not the queue is reachable."""
        return self._transport.run(_ops.ingestion_status())

    def quarantined(self, page_size: int = 0) -> Iterator[QuarantinedEvent]:
        """The events the history could not record, oldest first, each with its error."""
        return self._transport.iterate(_ops.quarantined_events(page_size))

    def update(self, job_id: str, bookmarked: bool | None = None,
               label: str | None = None) -> Job:
        """Set the bookmark and/or the label (None leaves it; "" clears the label)."""
        return self._transport.run(_ops.update_history(job_id, bookmarked, label))

    def delete(self, job_id: str) -> None:
        """Remove a job's record and transitions (not its image files).

        Raises:
            JobNotFoundError: The history has no such job.
        """
        self._transport.run(_ops.delete_history(job_id))

    def prune(self, older_than: Moment | None = None, states: StatesArg = None,
              keep_bookmarked: bool = False, dry_run: bool = False) -> int:
        """Remove many records at once; the number removed (or that would be, with dry_run).

        Args:
            older_than: Jobs created before this (a datetime, or a timedelta ago); None: any.
            states: Only these states; None: the terminal states.
            keep_bookmarked: Leave bookmarked jobs.
            dry_run: Count only.
        """
        return self._transport.run(_ops.prune(older_than, states, keep_bookmarked, dry_run))

    def export_records(self, **filters: Any) -> Iterator[HistoryRecord]:
        """Every matching job with its transitions, streamed one at a time, each whole (the
        parts of a record too large for one message read with GetJob)."""
        return self._transport.iterate(_ops.export_records(history_filters(**filters)))

    def export(self, destination: _ops.PathOrFile, **filters: Any) -> int:
        """Write every matching record to a JSON Lines file `import_` reads back.

        Args:
            destination: A path, or a text file open for writing.
            filters: As `list`.

        Returns:
            The number of jobs written.
        """
        return self._transport.run(_ops.export(destination, history_filters(**filters)))

    def import_(self, source: _ops.PathOrFile) -> ImportResult:
        """Bring in the records of a file `export` wrote (in requests of 1,000 jobs). Jobs the
        history recorded from the queue are never overwritten; importing twice changes
        nothing.

        Args:
            source: A path, or a text file open for reading.

        Raises:
            InvalidArgumentError: A line is not a record; the violation names `line N`.
        """
        return self._transport.run(_ops.import_history(source))

    def watch(self, on_subscribed: Callable[[], Any] | None = None,
              **filters: Any) -> Iterator[HistoryChange]:
        """Records as they are written, changed or deleted, live (no resume position: after
        a disconnect, list again and watch again).

        Args:
            on_subscribed: Called (from the iteration, before any change) once the history has
                registered the watch: a record written after that reaches the watch, so a
                list read after it misses nothing.
            filters: As `list`.
        """
        return self._transport.iterate(_ops.watch_history(history_filters(**filters),
                                                          on_subscribed))


class RunnerApi(_Api):
    """The configured runner and its images (runner service)."""

    def status(self) -> RunnerStatus:
        """The runner and its WebUI's state (an unreachable WebUI is a state, not an error)."""
        return self._transport.run(_ops.runner_status())

    def capabilities(self, refresh: bool = False) -> Capabilities:
        """What the WebUI offers: models, VAEs, samplers, schedulers, upscalers, ADetailer
        models.

        Args:
            refresh: Ask the WebUI again instead of the cached answer.

        Raises:
            WebuiUnavailableError: The WebUI must be asked and cannot be reached.
        """
        return self._transport.run(_ops.capabilities(refresh))

    def interrupt(self) -> InterruptResult:
        """Interrupt the generation in flight (the queue's job is not cancelled by this)."""
        return self._transport.run(_ops.interrupt())

    def read_image(self, path: str, chunk_size: int = DEFAULT_CHUNK_SIZE,
                   runner_id: str = "") -> bytes:
        """An image's bytes (`ImageRef.path`, relative to the output root).

        Args:
            path: The image's `ImageRef.path`.
            chunk_size: Bytes per streamed chunk.
            runner_id: The runner that wrote it (`ImageRef.runner_id`), read at the address it
                advertises to the queue; "" or a runner the queue does not know: the
                configured runner.

        Raises:
            ImageNotFoundError, PathOutsideRootError.
        """
        return self._transport.run(_ops.read_image(path, chunk_size, runner_id))

    def save_image(self, path: str, destination: str | os.PathLike[str],
                   chunk_size: int = DEFAULT_CHUNK_SIZE) -> Path:
        """Stream an image into a file; the file written.

        Args:
            path: `ImageRef.path`.
            destination: A file path, or a directory (the file keeps the image's name).
            chunk_size: Bytes per message (0: the runner's default).
        """
        return self._transport.run(_ops.save_image(path, destination, chunk_size))


class Client:
    """A client of the four StableNew services.

    Configured like the services: each argument left None comes from its `STABLENEW_*`
    variable, else the default (see `ClientConfig.load`). Channels open on first use and are
    closed by `close()` or the `with` block::

        with Client() as client:
            job = client.run_pack("castles", label="nightly")

    Attributes:
        packs: The prompt-pack library.
        drafts: Draft bundles.
        queue: The active queue.
        history: The record of every job.
        runner: The configured runner and its images.
        config: The resolved configuration.
    """

    def __init__(self, bundle_address: str | None = None, queue_address: str | None = None,
                 runner_address: str | None = None, history_address: str | None = None,
                 token: str | None = None, tls_ca: str | os.PathLike[str] | None = None,
                 timeout: float = 30.0, env: Mapping[str, str] | None = None) -> None:
        """Resolve the configuration (no connection is made yet).

        Args:
            bundle_address: `host:port`; else `STABLENEW_BUNDLE_ADDR`, else 127.0.0.1:50051.
            queue_address: `host:port`; else `STABLENEW_QUEUE_ADDR`, else 127.0.0.1:50052.
            runner_address: `host:port`; else `STABLENEW_RUNNER_ADDR`, else 127.0.0.1:50053.
            history_address: `host:port`; else `STABLENEW_HISTORY_ADDR`, else 127.0.0.1:50054.
            token: Bearer token; else `STABLENEW_TOKEN`.
            tls_ca: Trusted root certificates (a PEM file, e.g. the CA bundle) for TLS;
                else `STABLENEW_TLS_CA`, else `STABLENEW_TLS_CERT`.
            timeout: Deadline in seconds of each unary call.
            env: Variables to read instead of `os.environ`.

        Raises:
            ConfigError: A setting cannot work.
        """
        self.config = ClientConfig.load(
            bundle_address=bundle_address, queue_address=queue_address,
            runner_address=runner_address, history_address=history_address, token=token,
            tls_ca=tls_ca, timeout=timeout, env=env)
        self._transport = SyncTransport(self.config)
        self.packs = PacksApi(self._transport)
        self.drafts = DraftsApi(self._transport)
        self.queue = QueueApi(self._transport)
        self.history = HistoryApi(self._transport)
        self.runner = RunnerApi(self._transport)

    def close(self) -> None:
        """Close every channel."""
        self._transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def watch(self, after_sequence: int | None = None, job_ids: Sequence[str] | None = None,
              exclude_progress: bool = False, reconnect_for: float | None = 60.0,
              consumer_id: str = "") -> Iterator[JobEvent]:
        """The queue's events after `after_sequence`, then live, for as long as it is iterated.

        A dropped stream or a restarted queue is resumed from the last sequence delivered:
        no event is missed or repeated. As a durable consumer (`consumer_id`, made by
        `queue.create_consumer`) the watch starts after what the consumer acknowledged
        (`queue.acknowledge`), so a program restarted sees again exactly the events it had not
        acknowledged, and the queue keeps them for it meanwhile.

        Args:
            after_sequence: Start after this sequence (None: 0, the oldest kept, or the
                consumer's acknowledged sequence; `queue.state()`'s `last_sequence`: only what
                happens from now on).
            job_ids: Only these jobs' events (None: every job and the queue-level events).
            exclude_progress: Leave out progress events.
            reconnect_for: Give up (raise UnavailableError) when the queue stays unreachable
                this many seconds; None retries for ever.
            consumer_id: Watch as this durable consumer ("": a plain watch).

        Raises:
            SequencePrunedError: The events after `after_sequence` are gone; its
                `oldest_sequence` says where the log starts.
            ConsumerNotFoundError: The queue has no consumer `consumer_id` (never created,
                deleted, or expired after its idle time).
        """
        return self._transport.iterate(_ops.watch(after_sequence, list(job_ids or ()),
                                                  exclude_progress, reconnect_for,
                                                  consumer_id=consumer_id))

    def wait(self, job_id: str, on_progress: Callable[[JobProgress], Any] | None = None,
             timeout: float | None = None, on_event: Callable[[JobEvent], Any] | None = None,
             reconnect_for: float | None = 60.0) -> Job:
        """Wait until a job is COMPLETED, FAILED or CANCELLED; the finished job, full.

        Args:
            job_id: The job.
            on_progress: Called with each progress update while it runs.
            timeout: Give up after this many seconds (WaitTimeoutError); None waits for ever.
            on_event: Called with each of the job's events.
            reconnect_for: As `watch`.

        Raises:
            JobNotFoundError: Neither the queue nor the history knows the job.
            WaitTimeoutError: The timeout passed; the job goes on.
        """
        return self._transport.run(_ops.wait(job_id, on_progress, on_event, timeout,
                                             reconnect_for))

    def run_pack(self, pack_id: str, rows: Sequence[int] | None = None, prepend: str = "",
                 overrides: ConfigLike | None = None, run_mode: RunMode | str = RunMode.QUEUE,
                 priority: Priority | str = Priority.NORMAL, label: str = "",
                 on_progress: Callable[[JobProgress], Any] | None = None,
                 timeout: float | None = None, skip_bad_rows: bool = False) -> Job:
        """Run a pack and wait: a new draft with the pack's rows, enqueued as previewed, and
        the finished job.

        Args:
            pack_id: The pack.
            rows, prepend, overrides: As `drafts.add_pack`.
            run_mode, priority, label, skip_bad_rows: As `drafts.enqueue`.
            on_progress, timeout: As `wait`.
        """
        return self._transport.run(_ops.run_pack(pack_id, rows, prepend, overrides, run_mode,
                                                 priority, label, skip_bad_rows, on_progress,
                                                 timeout))

    def download_images(self, job_id: str, destination: str | os.PathLike[str],
                        chunk_size: int = DEFAULT_CHUNK_SIZE) -> list[Path]:
        """Save every image of a job under `destination`, at its path relative to the output
        root, each read from the runner that wrote it and checked against its sha256.

        Returns:
            The files written, in entry order.
        """
        return self._transport.run(_ops.download_images(job_id, destination, chunk_size))
