"""The history as a durable consumer of the queue's event log (QueueService.WatchJobs).

Exactly once, across a SIGKILL of either service at any moment:
- each event is applied, and the cursor (the sequence of the last applied event) moved to it,
  in one SQLite transaction: after a crash the history holds either both or neither;
- the stream is (re)opened after the committed cursor, and the queue's log is gap-free and
  ordered, so nothing is skipped; an event at or before the cursor is ignored, and the events
  table's primary key on the sequence makes a second copy impossible anyway;
- the queue is told (AcknowledgeEvents) only a sequence that is committed and made durable by a
  WAL checkpoint, so the queue never prunes an event the history could still lose.

When the queue cannot be reached the consumer retries with exponential backoff (and jitter).
The history keeps serving its records meanwhile: only the ingestion's own health name
(INGESTION_HEALTH) is NOT_SERVING until the history has caught up with the queue's last sequence
again, and `status()` (GetIngestionStatus) tells the lag, the queue's reachability and the last
error. A failed write the database may accept later (disk full, locked or read-only file) is
logged, the stream is dropped and reopened after a backoff from the committed cursor, so the same
event is tried again and nothing after it is acknowledged; the service never crashes on it.

A poison event cannot stop the ingestion: an event this version cannot convert (an enum value it
does not know, a time out of range), or whose recording fails for any reason other than the
database's state (a value SQLite cannot hold, a string past its limit), would fail the same way
on every try. It is quarantined instead: kept as the queue sent it, with the error, and the cursor
moved past it in one transaction (HistoryCore.quarantine), so it is acknowledged like any
recorded event and the events after it are recorded.

If the queue pruned events the history never read (OUT_OF_RANGE, SEQUENCE_PRUNED), the gap is
logged as an error, recorded in the database, and the consumer resumes at the oldest event the
queue has.

Nothing here knows the transport: the queue is a `QueueConnection` (queue_client.QueueClient
over gRPC in the service, a fake in tests) whose failed calls raise `QueueCallError`.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from stablenew.contract.errors import Code, ErrorDetails, ErrorReason, ServiceError
from stablenew.contract.model import Job
from stablenew.history.core import HistoryCore, IncomingEvent, UnreadableEvent
from stablenew.history.domain import IngestionStatus

log = logging.getLogger("stablenew.history.ingest")

DEFAULT_CONSUMER_ID = "history"
# The health service name of the ingestion (the service's own names stay SERVING).
INGESTION_HEALTH = "stablenew.v1.HistoryService.Ingestion"


@dataclass(frozen=True)
class IngestConfig:
    consumer_id: str = DEFAULT_CONSUMER_ID
    retry_initial_seconds: float = 0.2
    retry_max_seconds: float = 10.0
    ack_interval_seconds: float = 0.5
    call_timeout_seconds: float = 10.0


class QueueCallError(Exception):
    """A call to the queue failed; `details` says how (its code, and the queue's reason and
    metadata when it sent them)."""

    def __init__(self, details: ErrorDetails) -> None:
        super().__init__(f"{details.code.name}: {details.message}")
        self.details = details


class EventStream(Protocol):
    """The queue's log from a sequence on, as it grows (WatchJobs)."""

    def __iter__(self) -> Iterator[IncomingEvent | UnreadableEvent]: ...

    def cancel(self) -> None:
        """End the stream from another thread (the iteration then raises QueueCallError)."""


class QueueConnection(Protocol):
    """What the ingestion asks of the queue; a failed call raises QueueCallError."""

    def last_sequence(self) -> int:
        """The sequence of the last event in the queue's log."""

    def create_consumer(self, consumer_id: str, after_sequence: int) -> None:
        """Register the durable consumer `consumer_id`, holding the events after
        `after_sequence` (QueueCallError ALREADY_EXISTS when it exists)."""

    def watch(self, after_sequence: int, consumer_id: str) -> EventStream:
        """Every event after `after_sequence`, as the durable consumer `consumer_id`."""

    def get_job(self, job_id: str) -> Job | None:
        """The queue's full record of a job (None if the queue has none)."""

    def acknowledge(self, consumer_id: str, sequence: int) -> None:
        """Tell the queue every event up to `sequence` is safely recorded."""

    def close(self) -> None: ...


class QueueBehindError(Exception):
    """The queue's log ends before the history's cursor: a different or restored queue."""


class Backoff:
    def __init__(self, initial: float, maximum: float) -> None:
        self.initial = initial
        self.maximum = maximum
        self.current = initial

    def next_delay(self) -> float:
        delay = self.current * random.uniform(0.75, 1.25)
        self.current = min(self.current * 2, self.maximum)
        return min(delay, self.maximum)

    def reset(self) -> None:
        self.current = self.initial


class Ingestor:
    """Follows the queue's log on a thread of its own; acknowledges on another. Each thread
    opens its own connection with `connect` and opens a new one after a failure."""

    def __init__(self, core: HistoryCore, connect: Callable[[], QueueConnection],
                 config: IngestConfig, set_serving: Callable[[bool], None]) -> None:
        self.core = core
        self.config = config
        self._connect = connect
        self._set_serving = set_serving
        self._serving: bool | None = None
        self._stop = threading.Event()
        self._stream_lock = threading.Lock()
        self._stream: EventStream | None = None
        self._backoff = Backoff(config.retry_initial_seconds, config.retry_max_seconds)
        self.acknowledged = 0
        self._queue_last = 0
        self._reachable = False
        self._last_error = ""
        self._last_error_time: datetime | None = None
        self._threads = [
            threading.Thread(target=self._follow, name="history-ingest", daemon=True),
            threading.Thread(target=self._acknowledge_loop, name="history-ack", daemon=True),
        ]

    def start(self) -> None:
        self._report(False)
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._stream_lock:
            if self._stream is not None:
                self._stream.cancel()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout=5)

    def status(self) -> IngestionStatus:
        """How the ingestion stands now."""
        recorded = self.core.committed_sequence
        return IngestionStatus(
            enabled=True, caught_up=bool(self._serving), queue_reachable=self._reachable,
            recorded_sequence=recorded, queue_last_sequence=max(self._queue_last, recorded),
            acknowledged_sequence=self.acknowledged, last_error=self._last_error,
            last_error_time=self._last_error_time,
            quarantined_count=self.core.quarantined_count())

    def _report(self, serving: bool) -> None:
        if serving != self._serving:
            self._serving = serving
            self._set_serving(serving)
            log.info("history is %s", "caught up with the queue" if serving
                     else "not caught up with the queue (ingestion NOT_SERVING)")

    def _failed(self, why: str) -> None:
        self._last_error = why
        self._last_error_time = datetime.now(UTC)

    # --- following the log ----------------------------------------------------------------

    def _follow(self) -> None:
        while not self._stop.is_set():
            try:
                self._session()
                if not self._stop.is_set():
                    self._retry_later("the queue ended the event stream")
            except QueueCallError as error:
                if self._stop.is_set():
                    return
                self._reachable = False
                if not self._pruned(error.details):
                    self._retry_later(f"the queue is unreachable ({error.details.code.name})")
            except QueueBehindError as error:
                log.error("%s", error)
                self._retry_later("the queue's log is behind the history")
            except Exception as error:  # a write the database may accept later (disk full)
                sequence = self.core.committed_sequence + 1
                log.exception("could not record event %d; retrying it", sequence)
                # The cause goes into the status, so an operator sees why ingestion is behind.
                self._retry_later(f"recording an event failed (event {sequence}: {error})")

    def _retry_later(self, why: str) -> None:
        self._report(False)
        self._failed(why)
        delay = self._backoff.next_delay()
        log.warning("%s; retrying in %.1f s", why, delay, extra={"retry_seconds": delay})
        self._stop.wait(delay)

    def _session(self) -> None:
        connection = self._connect()
        try:
            target = connection.last_sequence()
            self._reachable = True
            self._queue_last = target
            cursor = self.core.committed_sequence
            if target < cursor:
                raise QueueBehindError(
                    f"the queue's last event is {target} but the history has "
                    f"recorded up to {cursor}: is this the queue the history was fed by? "
                    "Nothing is recorded until the queue's log passes the history's cursor")
            self._register(connection, cursor)
            stream = connection.watch(cursor, self.config.consumer_id)
            with self._stream_lock:
                self._stream = stream
            if self._stop.is_set():
                return
            if cursor >= target:
                self._report(True)
            for incoming in stream:
                self._queue_last = max(self._queue_last, _sequence_of(incoming))
                self._record(connection, incoming)
                self._backoff.reset()
                if self.core.committed_sequence >= target:
                    self._report(True)
        finally:
            with self._stream_lock:
                self._stream = None
            connection.close()

    def _register(self, connection: QueueConnection, after_sequence: int) -> None:
        """Make sure the queue knows this history as a durable consumer (at every start and
        reconnect: the queue may have expired it, or an operator deleted it), holding the
        events after what the history has recorded. One that exists already is ours."""
        try:
            connection.create_consumer(self.config.consumer_id, after_sequence)
        except QueueCallError as error:
            if error.details.reason != ErrorReason.CONSUMER_ALREADY_EXISTS.name:
                raise

    def _record(self, connection: QueueConnection,
                incoming: IncomingEvent | UnreadableEvent) -> None:
        """Apply the event after the cursor (an earlier one again is ignored); a job first
        seen mid-way is recorded from the queue's record of it, if the queue still has one.
        An event that cannot be recorded is quarantined (see the module's docstring)."""
        sequence = _sequence_of(incoming)
        expected = self.core.committed_sequence + 1
        if sequence < expected:
            return
        if sequence > expected:
            log.warning("events %d..%d never arrived (the queue's log should have no gaps)",
                        expected, sequence - 1)
        if isinstance(incoming, UnreadableEvent):
            self._quarantine(sequence, incoming.job_id, incoming.error, incoming.wire)
            return
        event = incoming.event
        try:
            fetched = (connection.get_job(event.job_id) if self.core.needs_backfill(event)
                       else None)
            self.core.apply(incoming, fetched)
        except QueueCallError:
            raise
        except Exception as error:
            if self.core.worth_retrying(error):
                raise
            self._quarantine(sequence, event.job_id,
                             f"cannot record the event: {_describe(error)}", incoming.wire)

    def _quarantine(self, sequence: int, job_id: str, error: str, wire: bytes) -> None:
        """Keep the event aside and go on; if even that write fails, the error propagates and
        the event is tried again later (nothing is skipped without being kept)."""
        self.core.quarantine(sequence, job_id, error, wire)
        log.error("QUARANTINED event %d of job %s: %s; the ingestion goes on (see "
                  "ListQuarantinedEvents)", sequence, job_id, error,
                  extra={"sequence": sequence, "job_id": job_id})
        self._failed(f"event {sequence} quarantined: {error}")

    def _pruned(self, details: ErrorDetails) -> bool:
        """OUT_OF_RANGE SEQUENCE_PRUNED: skip to the oldest event the queue still has."""
        if (details.code != Code.OUT_OF_RANGE
                or details.reason != ErrorReason.SEQUENCE_PRUNED.name):
            return False
        oldest = int(details.metadata.get("oldest_sequence", "0"))
        cursor = self.core.committed_sequence
        log.error(
            "EVENTS LOST TO THE HISTORY: the queue pruned events %d..%d before the history "
            "read them; jobs that changed in that range may miss transitions (recorded in the "
            "gaps table). Resuming at event %d", cursor + 1, oldest - 1, oldest,
            extra={"first_sequence": cursor + 1, "last_sequence": oldest - 1})
        self.core.skip_to(oldest)
        return True

    # --- acknowledging --------------------------------------------------------------------

    def _acknowledge_loop(self) -> None:
        connection: QueueConnection | None = None
        while not self._stop.wait(self.config.ack_interval_seconds):
            if self.core.committed_sequence <= self.acknowledged:
                continue
            try:
                sequence = self.core.durable_sequence()
                if sequence is None or sequence <= self.acknowledged:
                    continue
                connection = connection or self._connect()
                self._acknowledge(connection, sequence)
                self.acknowledged = sequence
                self._reachable = True
            except QueueCallError as error:
                # Unacknowledged events only stay longer in the queue: try again later.
                log.debug("acknowledging failed: %s", error.details.code.name)
                if connection is not None:
                    connection.close()
                connection = None
            except Exception:
                log.exception("acknowledging failed")
        if connection is not None:
            connection.close()

    def _acknowledge(self, connection: QueueConnection, sequence: int) -> None:
        """Acknowledge `sequence`; a consumer the queue no longer knows (deleted or expired
        meanwhile) is registered again and acknowledged."""
        try:
            connection.acknowledge(self.config.consumer_id, sequence)
        except QueueCallError as error:
            if error.details.reason != ErrorReason.CONSUMER_NOT_FOUND.name:
                raise
            log.warning("the queue no longer knows consumer %s; registering it again",
                        self.config.consumer_id)
            self._register(connection, sequence)


def _sequence_of(incoming: IncomingEvent | UnreadableEvent) -> int:
    return incoming.sequence if isinstance(incoming, UnreadableEvent) else incoming.event.sequence


def _describe(error: Exception) -> str:
    return (error.message if isinstance(error, ServiceError)
            else f"{type(error).__name__}: {error}")
