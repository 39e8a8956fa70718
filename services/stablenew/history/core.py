"""The history's use cases: applying the queue's events, the queries, the user's changes
(label, bookmark, delete), pruning, retention and import.

Every write is one store transaction (`HistoryStore.transaction`) on the single writer
connection, under one lock; the changes it made go to WatchHistory streams only after the commit.
Reads are snapshots from the store's read pool and never wait for the lock. No SQL runs here.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from stablenew.contract.errors import Code, ErrorReason, FieldViolation, ServiceError
from stablenew.contract.job_row import to_micros
from stablenew.contract.model import EntryResult, Job, JobTransition, NormalizedJob
from stablenew.history import codec, domain
from stablenew.history.domain import (
    TERMINAL,
    ImportedJob,
    ImportOutcome,
    IngestionStatus,
    JobFilter,
    PruneRequest,
    QuarantinedEvent,
    QueueEvent,
    RetentionPolicy,
    StateChanged,
    Submitted,
    Updated,
)
from stablenew.history.store import HistoryStore, is_outage
from stablenew.history.store.rows import (
    PROVENANCE_BACKFILLED,
    PROVENANCE_IMPORTED,
    PROVENANCE_QUEUE,
    StoredJob,
)
from stablenew.history.watchers import Broadcaster, Change
from stablenew.runtime.paging import PageTokens

log = logging.getLogger("stablenew.history")

# Records deleted per transaction by prune and retention: short enough that the ingestion,
# which waits for the same lock, is never held up for long.
DELETE_BATCH = 500
VACUUM_STEP_PAGES = 2000
# ExportHistory reads at most this many records, of at most this many stored bytes of entries
# and results, per read (docs/API.md states the bound).
EXPORT_PAGE = 200
EXPORT_BATCH_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class IncomingEvent:
    """One event of the queue's log: the domain event, and its bytes to keep."""

    event: QueueEvent
    payload: bytes
    cut: int
    # The event as the queue sent it, kept if it has to be quarantined.
    wire: bytes = b""


@dataclass(frozen=True)
class UnreadableEvent:
    """An event of the queue's log this version cannot convert (an enum value it does not
    know, a time out of range): it is quarantined."""

    sequence: int
    job_id: str
    wire: bytes
    error: str


@dataclass
class StoredEventRow:
    sequence: int
    cut: int
    payload: bytes


@dataclass
class JobEvents:
    rows: list[StoredEventRow]
    entries: list[NormalizedJob]
    results: list[EntryResult]
    next_page_token: str


@dataclass
class _Pending:
    changes: list[Change] = field(default_factory=list)


def _now() -> datetime:
    return datetime.now(UTC)


def not_found(job_id: str) -> ServiceError:
    return ServiceError(Code.NOT_FOUND, ErrorReason.JOB_NOT_FOUND,
                        f"job {job_id!r} not found in the history", metadata={"job_id": job_id})


def _basic(job: Job) -> Job:
    """The record without its entries and results (what lists and watchers carry)."""
    if not job.entries and not job.results:
        return job
    trimmed = copy.copy(job)
    trimmed.entries = []
    trimmed.results = []
    return trimmed


def fingerprint(job_filter: JobFilter) -> str:
    return hashlib.sha256(repr(job_filter).encode()).hexdigest()[:16]


class HistoryCore:
    def __init__(self, store: HistoryStore) -> None:
        self.store = store
        self.lock = threading.RLock()
        self.broadcaster = Broadcaster()
        self.closing = threading.Event()
        secret = store.page_token_secret()
        self.list_tokens = PageTokens(secret, "history.ListJobs")
        self.event_tokens = PageTokens(secret, "history.ListJobEvents")
        self.quarantine_tokens = PageTokens(secret, "history.ListQuarantinedEvents")
        with self.lock:
            self.committed_sequence = store.cursor()

    # --- transactions ---------------------------------------------------------------------

    @contextmanager
    def write(self) -> Iterator[_Pending]:
        """One transaction under the lock; its changes go live after the commit."""
        with self.lock:
            pending = _Pending()
            with self.store.transaction():
                yield pending
        self.broadcaster.publish(pending.changes)

    def _change(self, pending: _Pending, ref: int, before: Job | None,
                after: Job | None) -> None:
        job_id = (after or before or Job()).job_id
        # What the watchers' filters look at beyond the basic record, read only if anyone
        # watches; the packs after the change stand for `before` too (a record gains packs,
        # when results name them, but never loses one).
        watched = bool(self.broadcaster.count and after)
        text = self.store.search_text(ref) if watched else ""
        packs = self.store.pack_ids(ref) if watched else None
        pending.changes.append(Change(job_id, None if before is None else _basic(before),
                                      None if after is None else _basic(after), text, packs))

    # --- ingestion ------------------------------------------------------------------------

    def needs_backfill(self, event: QueueEvent) -> bool:
        """An event of a job the history has no record of, and did not delete on purpose."""
        if not event.job_id or isinstance(event.payload, Submitted | domain.QueueLevel):
            return False
        with self.lock:
            return (not self.store.has_job(event.job_id)
                    and not self.store.is_tombstoned(event.job_id))

    def apply(self, incoming: IncomingEvent, fetched: Job | None = None) -> bool:
        """Apply one event and move the cursor to it, in one transaction. False if it was
        applied before (its sequence is not after the cursor)."""
        event = incoming.event
        with self.write() as pending:
            if event.sequence <= self.store.cursor():
                return False
            self._apply(pending, incoming, fetched)
            self.store.set_cursor(event.sequence)
        self.committed_sequence = event.sequence
        return True

    def _apply(self, pending: _Pending, incoming: IncomingEvent, fetched: Job | None) -> None:
        event = incoming.event
        payload = event.payload
        if not event.job_id or isinstance(payload, domain.QueueLevel):
            return
        if self.store.is_tombstoned(event.job_id):
            if isinstance(payload, StateChanged) and payload.to_state.is_terminal:
                self.store.forget_tombstone(event.job_id)
            return
        stored = self.store.load(event.job_id)
        if isinstance(payload, Submitted) and stored is not None:
            # An imported record with the id of a queued job: the queue's record wins.
            self.store.delete_jobs([stored.ref])
            stored = None
        if stored is None and not isinstance(payload, Submitted):
            stored = self._backfill(event, fetched)
        applied = domain.apply_event(None if stored is None else stored.job, event)
        ref = self._write_record(stored, applied, payload)
        if applied.transition is not None:
            self.store.add_transitions(ref, [applied.transition])
        if event.kept:
            self.store.add_event(event.sequence, ref, incoming.cut, incoming.payload)
        self._change(pending, ref, None if stored is None else stored.job, applied.job)

    def _write_record(self, stored: StoredJob | None, applied: domain.Applied,
                      payload: domain.Payload) -> int:
        if stored is None:
            return self.store.insert_job(applied.job, PROVENANCE_QUEUE,
                                         domain.search_text(applied.job))
        self.store.update_job(stored.ref, applied.job)
        if applied.results_changed:
            self.store.replace_results(stored.ref, applied.job)
        if applied.results_changed or isinstance(payload, Updated):
            self.refresh_search(stored.ref, applied.job)
        return stored.ref

    def _backfill(self, event: QueueEvent, fetched: Job | None) -> StoredJob:
        job = domain.backfilled(fetched, event)
        log.warning("job %s first seen at sequence %d: its submission is no longer in the "
                    "queue's log; recording it from %s", event.job_id, event.sequence,
                    "the queue's record" if fetched else "its events alone",
                    extra={"job_id": event.job_id, "sequence": event.sequence})
        ref = self.store.insert_job(job, PROVENANCE_BACKFILLED, domain.search_text(job))
        return StoredJob(ref, job, PROVENANCE_BACKFILLED)

    def refresh_search(self, ref: int, job: Job) -> None:
        """Recompute a record's search text from its label, entries and results (the stored
        ones' prompts where the job does not carry them)."""
        stored_entries, stored_results = (
            self.store.prompts(ref) if not job.entries or not job.results else ([], []))
        entry_prompts = ([entry.prompt for entry in job.entries] if job.entries
                         else stored_entries)
        result_prompts = ([result.prompt for result in job.results] if job.results
                          else stored_results)
        self.store.set_search_text(ref, domain.search_text_of(
            job.label, [*entry_prompts, *result_prompts], bool(entry_prompts),
            job.payload_summary))

    @staticmethod
    def worth_retrying(error: BaseException) -> bool:
        """Whether recording an event failed because of the database's state (disk full,
        locked or read-only file), so the same event may succeed later; any other failure
        would repeat forever, and the event is quarantined instead."""
        return is_outage(error)

    def quarantine(self, sequence: int, job_id: str, error: str, wire: bytes) -> bool:
        """Keep an event that cannot be recorded, with the error, and move the cursor past it,
        in one transaction. False if the cursor is already past it."""
        with self.write():
            if sequence <= self.store.cursor():
                return False
            self.store.quarantine(sequence, job_id, _now(), error, wire)
            self.store.set_cursor(sequence)
        self.committed_sequence = sequence
        return True

    def quarantined(self, size: int, token: str) -> tuple[list[QuarantinedEvent], str]:
        """A page of the quarantined events, oldest first, and the next page's token."""
        position = self.quarantine_tokens.decode(token)
        after = 0
        if position is not None:
            if len(position) != 1 or not isinstance(position[0], int):
                raise _token_for_another_list()
            after = position[0]
        with self.store.reading() as reader:
            events = reader.quarantined(after, size + 1)
        next_token = ""
        if len(events) > size:
            events = events[:size]
            next_token = self.quarantine_tokens.encode([events[-1].sequence])
        return events, next_token

    def quarantined_count(self) -> int:
        with self.store.reading() as reader:
            return reader.quarantined_count()

    def without_ingestion(self) -> IngestionStatus:
        """The ingestion status of a history that follows no queue."""
        return IngestionStatus(enabled=False, recorded_sequence=self.committed_sequence,
                               quarantined_count=self.quarantined_count())

    def skip_to(self, oldest: int) -> int:
        """The queue pruned events before the history read them: resume at the oldest kept.
        Returns the new cursor."""
        with self.write():
            cursor = self.store.cursor()
            if oldest - 1 > cursor:
                self.store.record_gap(cursor + 1, oldest - 1, _now())
                self.store.set_cursor(oldest - 1)
                cursor = oldest - 1
        self.committed_sequence = cursor
        return cursor

    def durable_sequence(self) -> int | None:
        """The last applied sequence once a checkpoint has made it durable (None: try later)."""
        with self.lock:
            sequence = self.committed_sequence
            return sequence if self.store.checkpoint() else None

    # --- reads ----------------------------------------------------------------------------

    def get(self, job_id: str) -> tuple[Job, list[JobTransition]]:
        with self.store.reading() as reader:
            stored = reader.load(job_id, full=True)
            if stored is None:
                raise not_found(job_id)
            return stored.job, reader.transitions(stored.ref)

    def list_jobs(self, job_filter: JobFilter, size: int, token: str, full: bool = False,
                  take: Callable[[Job], bool] | None = None) -> tuple[list[Job], str]:
        """A page of records and the next page's token. With `take`, each record (filled, with
        `full`) is offered to it in turn and the page ends before the first it refuses, so a
        caller bounds a page by its size without holding more than one record too many."""
        bound_to = fingerprint(job_filter)
        position = self.list_tokens.decode(token)
        after = None
        if position is not None:
            if len(position) != 3 or position[2] != bound_to:
                raise _token_for_another_list()
            after = (int(position[0]), str(position[1]))
        jobs: list[Job] = []
        with self.store.reading() as reader:
            stored = reader.list_jobs(job_filter, after, size + 1)
            for each in stored[:size]:
                if full:
                    reader.fill(each.ref, each.job)
                if take is not None and not take(each.job):
                    break
                jobs.append(each.job)
        next_token = ""
        if len(stored) > len(jobs) and jobs:
            last = jobs[-1]
            next_token = self.list_tokens.encode(
                [to_micros(last.create_time), last.job_id, bound_to])
        return jobs, next_token

    def latest(self, job_filter: JobFilter) -> Job:
        with self.store.reading() as reader:
            stored = reader.list_jobs(job_filter, None, 1)
        if not stored:
            raise ServiceError(Code.NOT_FOUND, ErrorReason.JOB_NOT_FOUND,
                               "no job in the history matches the filter")
        return stored[0].job

    def events(self, job_id: str, size: int, token: str) -> JobEvents:
        position = self.event_tokens.decode(token)
        after = 0
        if position is not None:
            if len(position) != 2 or position[0] != job_id:
                raise _token_for_another_list()
            after = int(position[1])
        with self.store.reading() as reader:
            stored = reader.load(job_id)
            if stored is None:
                raise not_found(job_id)
            rows = [StoredEventRow(*row) for row in reader.events(stored.ref, after, size + 1)]
            page = rows[:size]
            cut = 0
            for row in page:
                cut |= row.cut
            entries = reader.entries(stored.ref) if cut & codec.CUT_ENTRIES else []
            results = reader.results(stored.ref) if cut & codec.CUT_RESULTS else []
        next_token = ""
        if len(rows) > size:
            next_token = self.events_token(job_id, page[-1].sequence)
        return JobEvents(page, entries, results, next_token)

    def events_token(self, job_id: str, sequence: int) -> str:
        """The ListJobEvents page token of the events of `job_id` after `sequence` (for a
        page the edge ended early, by its size)."""
        return self.event_tokens.encode([job_id, sequence])

    def export(self, job_filter: JobFilter) -> Iterator[tuple[Job, list[JobTransition]]]:
        """Every matching record, newest first."""
        for batch in self.export_batches(job_filter):
            yield from batch

    def export_batches(self, job_filter: JobFilter, batch_bytes: int = EXPORT_BATCH_BYTES,
                       ) -> Iterator[list[tuple[Job, list[JobTransition]]]]:
        """Every matching record, newest first, in batches each read in one read transaction:
        at most EXPORT_PAGE records whose stored entries and results add up to at most
        `batch_bytes` (a larger record makes a batch alone), so an export holds one batch
        whatever its length and the size of its records."""
        after: tuple[int, str] | None = None
        while not self.closing.is_set():
            batch: list[tuple[Job, list[JobTransition]]] = []
            used = 0
            with self.store.reading() as reader:
                page = reader.list_jobs(job_filter, after, EXPORT_PAGE)
                for each in page:
                    size = reader.record_bytes(each.ref)
                    if batch and used + size > batch_bytes:
                        break
                    reader.fill(each.ref, each.job)
                    batch.append((each.job, reader.transitions(each.ref)))
                    used += size
            if batch:
                yield batch
            if len(batch) == len(page) and len(page) < EXPORT_PAGE:
                return
            last = batch[-1][0]
            after = (to_micros(last.create_time) or 0, last.job_id)

    # --- the user's changes -----------------------------------------------------------------

    def update(self, job_id: str, label: str | None, bookmarked: bool | None) -> Job:
        with self.write() as pending:
            stored = self.store.load(job_id)
            if stored is None:
                raise not_found(job_id)
            after = copy.copy(stored.job)
            after.label = stored.job.label if label is None else label
            after.bookmarked = stored.job.bookmarked if bookmarked is None else bookmarked
            after.update_time = _now()
            self.store.set_label_and_bookmark(stored.ref, after.label, after.bookmarked,
                                              after.update_time)
            if after.label != stored.job.label:
                self.refresh_search(stored.ref, after)
            self._change(pending, stored.ref, stored.job, after)
        return after

    def delete(self, job_id: str) -> None:
        with self.write() as pending:
            stored = self.store.load(job_id)
            if stored is None:
                raise not_found(job_id)
            self.store.delete_jobs([stored.ref])
            self._change(pending, stored.ref, stored.job, None)

    # --- pruning and retention --------------------------------------------------------------

    def prune(self, request: PruneRequest, dry_run: bool) -> int:
        states = request.effective_states
        if dry_run:
            with self.lock:
                return self.store.count_prunable(states, request.older_than,
                                                 request.keep_bookmarked)
        removed = self._delete_in_batches(lambda: self.store.prune_candidates(
            states, request.older_than, request.keep_bookmarked, DELETE_BATCH))
        self.give_space_back()
        return removed

    def enforce(self, policy: RetentionPolicy, now: datetime | None = None) -> int:
        """Apply the automatic retention policy once; returns the number of records removed."""
        now = now or _now()
        removed = 0
        if policy.max_age is not None:
            cutoff = now - policy.max_age
            removed += self._delete_in_batches(lambda: self.store.prune_candidates(
                TERMINAL, cutoff, True, DELETE_BATCH))
        if policy.max_rows is not None:
            with self.lock:
                excess = self.store.count() - policy.max_rows
            if excess > 0:
                # The oldest finished jobs go; bookmarked and active ones count but stay.
                left = [excess]

                def oldest() -> list[int]:
                    refs = self.store.prune_candidates(TERMINAL, None, True,
                                                       min(DELETE_BATCH, left[0]))
                    left[0] -= len(refs)
                    return refs
                removed += self._delete_in_batches(oldest, stop_short=True)
        if removed:
            log.info("retention removed %d records", removed, extra={"removed": removed})
            self.give_space_back()
        return removed

    def _delete_in_batches(self, candidates: Callable[[], list[int]],
                           stop_short: bool = False) -> int:
        """Delete what `candidates` names, a batch per transaction, until it names fewer than
        a batch (or nothing, with stop_short: for a caller that asks for less on purpose)."""
        removed = 0
        while not self.closing.is_set():
            with self.write() as pending:
                refs = candidates()
                deleted = self.store.delete_jobs(refs)
                pending.changes += [Change(job_id, None, None) for job_id in deleted]
            removed += len(deleted)
            if not refs or (len(refs) < DELETE_BATCH and not stop_short):
                break
            time.sleep(0.001)  # let the ingestion in between batches
        return removed

    def give_space_back(self) -> None:
        """Incremental vacuum, a step at a time, so the file shrinks after deletions."""
        while not self.closing.is_set():
            with self.lock:
                left = self.store.incremental_vacuum(VACUUM_STEP_PAGES)
            if left == 0:
                return
            time.sleep(0.001)

    # --- import -----------------------------------------------------------------------------

    def import_jobs(self, records: list[ImportedJob]) -> ImportOutcome:
        outcome = ImportOutcome()
        with self.write() as pending:
            for record in records:
                self._import_one(pending, record, outcome)
        return outcome

    def _import_one(self, pending: _Pending, record: ImportedJob,
                    outcome: ImportOutcome) -> None:
        job = copy.copy(record.job)
        job.image_count = domain.image_count(job.results)
        stored = self.store.load(job.job_id)
        if stored is not None and stored.provenance != PROVENANCE_IMPORTED:
            outcome.skipped_job_ids.append(job.job_id)
            return
        if stored is not None:
            # Compared with its entries and results, which the file's record carries too.
            self.store.fill(stored.ref, stored.job)
            # The user's label and bookmark stay; everything else comes from the file.
            job.label, job.bookmarked = stored.job.label, stored.job.bookmarked
            as_stored = copy.copy(job)
            as_stored.update_time = stored.job.update_time  # the user's edits move it
            if (stored.job == as_stored
                    and self.store.transitions(stored.ref) == record.transitions):
                outcome.unchanged += 1
                return
            self.store.delete_jobs([stored.ref])
            outcome.updated += 1
        else:
            outcome.added += 1
        ref = self.store.insert_job(job, PROVENANCE_IMPORTED, domain.search_text(job))
        self.store.add_transitions(ref, record.transitions)
        self._change(pending, ref, None if stored is None else stored.job, job)

    def close(self) -> None:
        self.closing.set()
        self.broadcaster.wake_all()


def _token_for_another_list() -> ServiceError:
    return ServiceError(Code.INVALID_ARGUMENT, ErrorReason.INVALID_PAGE_TOKEN,
        "page_token: issued for another filter or job; start again without a token",
        violations=[FieldViolation("page_token", "issued for another filter or job")])
