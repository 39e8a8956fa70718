"""The queue's use cases: submit, control, read, and the event log with its watchers.

Every write is one SQLite transaction that also appends its events, under one lock; events are
published to live watchers only after the commit, so a watcher never sees an event that a crash
could take back. Leasing lives in `leasing.py` on top of this.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from itertools import takewhile

from stablenew.contract.endpoints import DEFAULT_MAX_MESSAGE_BYTES
from stablenew.contract.errors import Code, ErrorReason, ServiceError, invalid_argument
from stablenew.contract.model import (
    EntryStatus,
    Job,
    JobOrigin,
    JobProgress,
    JobState,
    NormalizedJob,
    Priority,
    RunMode,
)
from stablenew.contract.request_limits import MAX_DURATION_SECONDS
from stablenew.queue import codec
from stablenew.queue.consumers import ConsumerRegistry, refuse_beyond_log
from stablenew.queue.domain import (
    LANE_DIRECT,
    LANE_QUEUE,
    Consumer,
    EntryBatch,
    JobRead,
    MovePosition,
    QueuedJob,
    RunnerPool,
    RunOrder,
    check_transition,
    effective_priority,
    lane_of,
    priority_rank,
    summarize,
)
from stablenew.queue.entries import entry_batch_of
from stablenew.queue.positions import Positions
from stablenew.queue.runners import RunnerRegistry
from stablenew.queue.store import QueueStore, run_order_key, running_key
from stablenew.queue.watchers import Broadcaster, StoredEvent, Subscriber, WatchFilter
from stablenew.runtime.message_budget import RESPONSE_MARGIN_BYTES, too_large_to_send
from stablenew.runtime.paging import PageTokens, stored_secret
from stablenew.runtime.sqlite_db import Transaction
from stablenew.v1 import job_pb2

REPLAY_BATCH = 500
# Marks a ListJobs page token positioned among the running jobs (a queued one starts with a lane).
_RUNNING_PAGE = "running"


@dataclass(frozen=True)
class QueueConfig:
    lease_seconds: float = 30.0
    max_attempts: int = 3
    max_lease_wait_seconds: float = 30.0
    # Events stay at least this long, and until every durable consumer acknowledged them.
    event_retention_seconds: float = 3600.0
    # A durable consumer neither watching nor acknowledging for this long is deleted.
    consumer_idle_seconds: float = 7 * 24 * 3600.0
    finished_job_retention_seconds: float = 7 * 24 * 3600.0
    progress_interval_seconds: float = 0.25
    watcher_buffer_bytes: int = 8 * 1024 * 1024
    watcher_stall_seconds: float = 10.0
    prune_interval_seconds: float = 60.0
    # The largest event the log takes: what WatchJobs can send in one message. A larger one
    # would fail every watch at it, the history's ingestion included, on every attempt.
    max_event_bytes: int = DEFAULT_MAX_MESSAGE_BYTES - RESPONSE_MARGIN_BYTES


@dataclass
class QueueStateView:
    paused: bool
    counts: dict[JobState, int]
    runner_count: int
    estimated_time_left: timedelta | None
    last_sequence: int
    unrunnable_job_count: int


@dataclass
class _Pending:
    """Events appended by the transaction in progress, published once it commits; and whether
    it made a job leasable, so that waiting runners are offered it after the commit (offering
    it inside would open a second transaction within this one)."""

    events: list[StoredEvent] = field(default_factory=list)
    job_available: bool = False


def _not_found(job_id: str) -> ServiceError:
    return ServiceError(Code.NOT_FOUND, ErrorReason.JOB_NOT_FOUND,
                        f"job {job_id!r} not found in the queue", metadata={"job_id": job_id})


def _now() -> datetime:
    return datetime.now(UTC)


class QueueCore:
    def __init__(self, store: QueueStore, config: QueueConfig) -> None:
        self.store = store
        self.config = config
        self.lock = threading.RLock()
        self.broadcaster = Broadcaster(config.watcher_buffer_bytes, config.watcher_stall_seconds)
        self.closing = threading.Event()
        self.positions = Positions(store)
        # A runner counts as connected while heard from within two lease lengths.
        self.runners = RunnerRegistry(store, 2 * config.lease_seconds)
        self.consumers = ConsumerRegistry(store, config.consumer_idle_seconds)
        self.progress: dict[str, JobProgress] = {}
        self._last_progress_event: dict[str, float] = {}
        self._token_secret_bytes = stored_secret(store.db, store.setting, store.set_setting)
        self._list_tokens = self.page_tokens("queue.ListJobs")
        # Called after every commit that made a job leasable (set by leasing).
        self.on_job_available: Callable[[], None] = lambda: None

    def page_tokens(self, scope: str) -> PageTokens:
        """Tokens signed with this queue's secret, valid for one list only."""
        return PageTokens(self._token_secret_bytes, scope)

    # --- transactions and events ----------------------------------------------------------

    @contextmanager
    def write(self) -> Iterator[_Pending]:
        """One transaction under the lock; its events go live after the commit."""
        with self.lock:
            pending = _Pending()
            try:
                with Transaction(self.store.db):
                    yield pending
            except BaseException:
                self.store.reload_last_sequence()
                self.positions.reload()
                self.runners.reload()
                raise
            self.broadcaster.publish(pending.events)
        if pending.job_available:
            self.on_job_available()

    def emit(self, pending: _Pending, event: job_pb2.JobEvent, is_progress: bool = False) -> None:
        """Log the event; RESOURCE_EXHAUSTED, and the whole write undone, when it could not be
        sent (a completion's results, a failure's error, which it carries twice)."""
        if event.ByteSize() > self.config.max_event_bytes:
            raise _event_too_large(event, self.config.max_event_bytes)
        payload = self.store.append_event(event, is_progress)
        pending.events.append(StoredEvent(event.sequence, event.job_id, is_progress, payload))

    def transition(self, pending: _Pending, queued: QueuedJob, target: JobState, reason: str,
                   with_results: bool = False, now: datetime | None = None) -> None:
        """Move a job to `target`, write it, and log the change."""
        job = queued.job
        check_transition(job.job_id, job.state, target)
        previous, job.state = job.state, target
        self.positions.changed_state(queued.order, previous, target)
        # One clock reading for the record and its event, so they agree to the microsecond.
        now = now or _now()
        job.update_time = now
        if target.is_terminal:
            job.complete_time = now
        if target.is_terminal or target == JobState.QUEUED:
            # A job handed back keeps no progress of the attempt that ended: a queued job
            # shows why it waits, not the last attempt's step and ETA.
            self.progress.pop(job.job_id, None)
            self._last_progress_event.pop(job.job_id, None)
        self.store.update_job(queued, with_results=with_results)
        results = job.results if target.is_terminal else None
        self.emit(pending, codec.state_changed_event(job, previous, reason, now, results))

    def load(self, job_id: str, full: bool = False) -> QueuedJob:
        queued = self.store.get_job(job_id, full)
        if queued is None:
            raise _not_found(job_id)
        return queued

    # --- submit ---------------------------------------------------------------------------

    def submit(self, entries: EntryBatch, origin: JobOrigin, priority: Priority,
               label: str, metadata: dict[str, str], request_id: str) -> Job:
        """Queue a job of checked entries (see queue/entries.py). The job returned is the BASIC
        view: its entries stay in their stored form."""
        if origin.run_mode not in (RunMode.DIRECT, RunMode.QUEUE):
            raise invalid_argument("origin.run_mode", "must be RUN_MODE_DIRECT or RUN_MODE_QUEUE")
        with self.write() as pending:
            if request_id:
                existing = self.store.job_id_for_request(request_id)
                if existing is not None:
                    return self.view(self.load(existing))
            queued = self.new_job(entries, origin, priority, label, metadata, request_id)
            self.store.insert_job(queued, entries.encoded)
            self.positions.added(queued.order)
            self.emit(pending, codec.submitted_event(
                queued.job, entries.encoded, queued.job.create_time or _now()))
            # A new job is the first of the DIRECT lane or the last of its group: no counting.
            position = (self.positions.of_first_in_group(queued.order)
                        if queued.order.lane == LANE_DIRECT
                        else self.positions.of_last_in_group(queued.order))
            pending.job_available = True
        return self.view_at(queued, position)

    def new_job(self, entries: EntryBatch, origin: JobOrigin, priority: Priority,
                label: str, metadata: dict[str, str], request_id: str) -> QueuedJob:
        now = _now()
        job = Job(job_id=uuid.uuid4().hex, state=JobState.QUEUED, origin=origin,
                  priority=effective_priority(priority), label=label, metadata=dict(metadata),
                  create_time=now, update_time=now)
        summarize(job, entries)
        order = RunOrder(lane_of(origin.run_mode), priority_rank(job.priority),
                         self.store.next_order_key())
        if order.lane == LANE_DIRECT:
            # "Run now" means next: ahead of any earlier DIRECT job too.
            bounds = self.store.lane_bounds(LANE_DIRECT)
            order = RunOrder(LANE_DIRECT, priority_rank(Priority.HIGH),
                             (bounds[1] - 1.0) if bounds else 0.0)
        return QueuedJob(job=job, order=order, request_id=request_id,
                         required_models=entries.required_models,
                         preferred_model=entries.preferred_model)

    # --- reads ----------------------------------------------------------------------------

    def view(self, queued: QueuedJob) -> Job:
        """The job as clients see it, with its live progress, queue position and, while
        queued, why it waits."""
        state = queued.job.state
        if state == JobState.QUEUED:
            return self.view_at(queued, self.positions.of(queued))
        if state == JobState.RUNNING:
            return self.view_at(queued, self.store.running_position(queued))
        return self.view_at(queued, -1)

    def get(self, job_id: str, full: bool) -> JobRead:
        with self.lock:
            return self.read(self.load(job_id, full))

    def read(self, queued: QueuedJob) -> JobRead:
        """The view of `queued` with its stored entries (empty unless loaded full)."""
        return JobRead(self.view(queued), queued.stored_entries)

    def list_active(self, size: int, token: str, full: bool = False,
                    take: Callable[[JobRead], bool] | None = None,
                    ) -> tuple[list[JobRead], str]:
        """Running jobs first, then queued ones in run order (`full`: with their entries and
        results); the token is a keyset position in either part, so a page that ends among
        the running jobs still leads on to the queued ones. With `take`, the page ends before
        the first job it refuses (one that would not fit in the response)."""
        position = self._list_tokens.decode(token)
        offset, running_after, queued_after, running = 0, None, None, True
        if position is not None:
            offset = int(position[0])
            if position[1] == _RUNNING_PAGE:
                running_after = (int(position[2]), str(position[3]))
            else:
                running = False
                queued_after = (int(position[1]), int(position[2]), float(position[3]),
                                str(position[4]))
        with self.lock:
            pool = self.runner_pool()
            jobs: list[QueuedJob] = []
            if running:
                jobs = self.store.running_jobs(size, full, running_after)
            if len(jobs) < size:
                jobs += self.store.queued_in_order(queued_after, size - len(jobs),
                                                   (LANE_DIRECT, LANE_QUEUE), full)
            result = [JobRead(self.view_at(queued, offset + index, pool), queued.stored_entries)
                      for index, queued in enumerate(jobs)]
        taken = result if take is None else list(takewhile(take, result))
        next_token = ""
        if taken and (len(taken) < len(result) or len(jobs) == size):
            last = jobs[len(taken) - 1]
            key = ([_RUNNING_PAGE, *running_key(last)] if last.job.state == JobState.RUNNING
                   else list(run_order_key(last)))
            next_token = self._list_tokens.encode([offset + len(taken), *key])
        return taken, next_token

    def view_at(self, queued: QueuedJob, position: int, pool: RunnerPool | None = None) -> Job:
        """The job at `position`; `pool`: the connected runners, when the caller reads many."""
        job = queued.job
        job.progress = self.progress.get(job.job_id, job.progress)
        job.queue_position = position
        if job.state == JobState.QUEUED:
            job.waiting_reason = (pool or self.runner_pool()).waiting_reason(queued)
        return job

    def runner_pool(self) -> RunnerPool:
        """The connected runners and whether the queue is paused, as of now."""
        with self.lock:  # some views are made after their transaction, outside the lock
            return self.runners.pool(self.paused())

    # --- control --------------------------------------------------------------------------

    def cancel(self, job_id: str, return_to_queue: bool, reason: str) -> Job:
        with self.write() as pending:
            queued = self.load(job_id, full=True)
            job = queued.job
            if job.state == JobState.QUEUED and not return_to_queue:
                job.error_message = reason or "cancelled while queued"
                self.transition(pending, queued, JobState.CANCELLED, reason or "cancelled")
            elif job.state == JobState.RUNNING and not job.cancel_requested:
                job.cancel_requested = True
                queued.return_to_queue = return_to_queue
                self.store.update_job(queued)
                self.emit(pending, codec.cancel_requested_event(
                    job_id, return_to_queue, reason, _now()))
            elif job.state.is_terminal:
                check_transition(job_id, job.state, JobState.CANCELLED)
            return self.view(queued)

    def move(self, job_id: str, position: MovePosition, before_job_id: str) -> Job:
        with self.write() as pending:
            queued = self.load(job_id)
            if queued.job.state != JobState.QUEUED:
                raise ServiceError(Code.FAILED_PRECONDITION, ErrorReason.ILLEGAL_TRANSITION,
                    f"job {job_id} is {queued.job.state.name}; only queued jobs move")
            new_order = self._moved_order(queued, position, before_job_id)
            if new_order is not None and new_order != queued.order:
                self._reorder(queued, new_order)
                self.emit(pending, codec.moved_event(job_id, self.positions.of(queued), _now()))
            return self.view(queued)

    def _moved_order(self, queued: QueuedJob, position: MovePosition,
                     before_job_id: str) -> RunOrder | None:
        """The run order `position` asks for; None when the job is already there."""
        lane = queued.order.lane
        if position == MovePosition.BEFORE:
            return self._order_before(queued, before_job_id)
        if position in (MovePosition.UP, MovePosition.DOWN):
            before, after = self.store.queue_neighbours(queued)
            neighbour = before if position == MovePosition.UP else after
            if neighbour is None:
                return None
            # Swap places; the neighbour takes ours.
            order = neighbour.order
            self._reorder(neighbour, queued.order)
            return order
        bounds = self.store.lane_bounds(lane)
        assert bounds is not None  # the job itself is queued in this lane
        first_rank, first_key, last_rank, last_key = bounds
        if position == MovePosition.FRONT:
            return RunOrder(lane, first_rank, first_key - 1.0)
        if position == MovePosition.BACK:
            return RunOrder(lane, last_rank, last_key + 1.0)
        raise invalid_argument("position", "one of FRONT, BACK, UP, DOWN, BEFORE")

    def _reorder(self, queued: QueuedJob, order: RunOrder) -> None:
        self.positions.moved(queued.order, order)
        queued.order = order
        self.store.update_job(queued)

    def _order_before(self, queued: QueuedJob, before_job_id: str) -> RunOrder | None:
        if not before_job_id:
            raise invalid_argument("before_job_id", "required with MOVE_POSITION_BEFORE")
        if before_job_id == queued.job.job_id:
            return None
        target = self.load(before_job_id)
        if target.job.state != JobState.QUEUED or target.order.lane != queued.order.lane:
            raise ServiceError(Code.FAILED_PRECONDITION, ErrorReason.ILLEGAL_TRANSITION,
                f"job {before_job_id} is not queued in the same lane as {queued.job.job_id}")
        previous, _ = self.store.queue_neighbours(target)
        if previous is not None and previous.job.job_id == queued.job.job_id:
            return None
        order = target.order
        if previous is None or previous.order.priority_rank != order.priority_rank:
            return RunOrder(order.lane, order.priority_rank, order.order_key - 1.0)
        middle = (previous.order.order_key + order.order_key) / 2
        if middle in (previous.order.order_key, order.order_key):
            # Floats ran out of room between the two after many moves: spread the keys out.
            self.store.renumber_lane(order.lane)
            return self._order_before(queued, before_job_id)
        return RunOrder(order.lane, order.priority_rank, middle)

    def set_paused(self, paused: bool) -> QueueStateView:
        with self.write() as pending:
            if self.paused() != paused:
                self.store.set_setting("paused", "1" if paused else "0")
                self.emit(pending, codec.queue_paused_event(paused, _now()))
                pending.job_available = not paused
        return self.state()

    def paused(self) -> bool:
        return self.store.setting("paused", "0") == "1"

    def state(self) -> QueueStateView:
        """Counts, runners and the time left for the queued images a connected runner can run
        (jobs no connected runner can run have no estimate: they are counted apart)."""
        with self.lock:
            pool = self.runner_pool()
            runnable_images = unrunnable_jobs = 0
            for models, jobs, images in self.store.queued_by_models():
                if pool.unrunnable_reason(models):
                    unrunnable_jobs += jobs
                else:
                    runnable_images += images
            per_image = self.store.recent_seconds_per_image()
            left = None
            if per_image is not None:
                # Capped: a timedelta overflows (and the wire's Duration ends) long before.
                left = timedelta(seconds=min(per_image * runnable_images, MAX_DURATION_SECONDS))
            return QueueStateView(pool.paused, self.store.state_counts(), len(pool.connected),
                                  left, self.store.last_sequence, unrunnable_jobs)

    def retry(self, job_id: str, failed_only: bool, request_id: str) -> Job:
        with self.lock:
            loaded = self.load(job_id, full=True)
            original = replace(loaded.job, entries=codec.decode_entries(loaded.stored_entries))
            if not original.state.is_terminal:
                raise ServiceError(Code.FAILED_PRECONDITION, ErrorReason.ILLEGAL_TRANSITION,
                    f"job {job_id} is {original.state.name}; only a finished job can be retried")
            entries = entry_batch_of(retry_entries(original, failed_only))
            origin = replace(original.origin, retry_of_job_id=job_id)
            return self.submit(entries, origin, original.priority, original.label,
                               original.metadata, request_id)

    def record_progress(self, pending: _Pending, job_id: str, progress: JobProgress) -> None:
        """Keep the latest progress; log it at most every progress_interval_seconds, and at
        once when the entry or the newest image changes."""
        previous = self.progress.get(job_id)
        self.progress[job_id] = progress
        now = time.monotonic()
        # A new entry or a new image is always logged: watchers show both at once.
        news = (previous is None or previous.entry_index != progress.entry_index
                or previous.latest_image != progress.latest_image)
        last = self._last_progress_event.get(job_id, 0.0)
        if news or now - last >= self.config.progress_interval_seconds:
            self._last_progress_event[job_id] = now
            self.emit(pending, codec.progress_event(job_id, progress, _now()), is_progress=True)

    # --- events ---------------------------------------------------------------------------

    def acknowledge(self, consumer_id: str, sequence: int) -> int:
        if not consumer_id:
            raise invalid_argument("consumer_id", "required")
        refuse_beyond_log(self.store, "sequence", sequence)
        with self.write():
            return self.consumers.acknowledge(consumer_id, sequence)

    def create_consumer(self, consumer_id: str, after_sequence: int,
                        request_id: str) -> Consumer:
        with self.write():
            return self.consumers.create(consumer_id, after_sequence, request_id)

    def list_consumers(self, after_id: str, size: int) -> list[Consumer]:
        with self.lock:
            return self.consumers.page(after_id, size)

    def delete_consumer(self, consumer_id: str) -> None:
        with self.write():
            self.consumers.delete(consumer_id)

    def watch(self, after: int, watch_filter: WatchFilter, consumer_id: str,
              disconnect: Callable[[], None],
              wanted: Callable[[], bool]) -> Iterator[StoredEvent]:
        """Replay the log after `after`, then follow live, each event exactly once, in order,
        for as long as `wanted()` (the caller is still there: a watcher whose deadline passed
        while no event came must not keep its server thread)."""
        if consumer_id:
            with self.write():
                self.consumers.watch_started(consumer_id)
        subscriber = self.broadcaster.subscribe(watch_filter, disconnect)
        try:
            cursor = after
            while not self.closing.is_set() and wanted():
                for event in self._replay(cursor, watch_filter):
                    cursor = event.sequence
                    yield event
                cursor = yield from self._follow(subscriber, cursor, wanted)
        finally:
            self.broadcaster.unsubscribe(subscriber)
            if consumer_id and not self.closing.is_set():  # closing: the store may be shut
                with self.write():
                    self.consumers.watch_ended(consumer_id)

    def _refuse_pruned(self, after: int) -> None:
        """OUT_OF_RANGE SEQUENCE_PRUNED when events after `after` are no longer in the log (call
        with the lock held)."""
        oldest = self.store.oldest_sequence()
        if after + 1 < oldest:
            raise ServiceError(Code.OUT_OF_RANGE, ErrorReason.SEQUENCE_PRUNED,
                f"events after {after} were pruned; the oldest kept is {oldest}",
                metadata={"oldest_sequence": str(oldest)})

    def _replay(self, cursor: int, watch_filter: WatchFilter) -> Iterator[StoredEvent]:
        while True:
            with self.lock:
                # Checked with each read, not once before: a prune between the check and the
                # read would otherwise skip events without a word (or wait for ever on none).
                self._refuse_pruned(cursor)
                rows = self.store.events_after(cursor, REPLAY_BATCH)
            for sequence, job_id, is_progress, payload in rows:
                cursor = sequence
                event = StoredEvent(sequence, job_id, is_progress, payload)
                if watch_filter.accepts(event):
                    yield event
            if len(rows) < REPLAY_BATCH:
                return

    def _follow(self, subscriber: Subscriber, cursor: int,
                wanted: Callable[[], bool]) -> Generator[StoredEvent, None, int]:
        """Live events until the buffer overflows (then the caller replays), we close or the
        watcher is no longer wanted."""
        while not self.closing.is_set() and wanted():
            events, overflowed = subscriber.take(timeout=0.5)
            if overflowed:
                return cursor
            for event in events:
                if event.sequence > cursor:
                    cursor = event.sequence
                    yield event
        return cursor

    def prune(self) -> None:
        """Expire idle consumers, then drop the events every remaining consumer acknowledged
        whose retention window has passed."""
        with self.write():
            self.consumers.expire()
            acked = self.store.slowest_consumer()
            through = self.store.last_sequence if acked is None else acked
            now = time.time()
            self.store.delete_events_through(through, now - self.config.event_retention_seconds)
            self.store.delete_finished_before(now - self.config.finished_job_retention_seconds)

    def close(self) -> None:
        self.closing.set()
        self.broadcaster.wake_all()


def retry_entries(original: Job, failed_only: bool) -> list[NormalizedJob]:
    """Entries to run again: all, or every entry without a COMPLETED result."""
    if not failed_only:
        chosen = list(original.entries)
    else:
        completed = {r.entry_index for r in original.results
                     if r.status == EntryStatus.COMPLETED}
        chosen = [entry for entry in original.entries if entry.index not in completed]
    if not chosen:
        raise ServiceError(Code.FAILED_PRECONDITION, ErrorReason.ILLEGAL_TRANSITION,
            f"job {original.job_id} has no failed entries to retry")
    return [replace(entry, index=position) for position, entry in enumerate(chosen)]


# The request field that makes each kind of event: what a refusal of a too large one names.
_EVENT_FIELDS = {"submitted": "entries", "state_changed": "results", "progress": "progress"}


def _event_too_large(event: job_pb2.JobEvent, budget: int) -> ServiceError:
    kind = event.WhichOneof("payload") or ""
    return too_large_to_send(_EVENT_FIELDS.get(kind, kind), f"the job's `{kind}` event",
                             event.ByteSize(), budget, "report fewer or smaller results")
