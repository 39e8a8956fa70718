"""The queue panel's logic: the active jobs in run order, kept current from the queue's watch
stream (never by polling the list; only why queued jobs wait is read again, see below).

At start the model reads the queue's state, then every active job (one page: the list is read
in one piece), then watches from the state's `last_sequence`; an event that repeats what the
list already shows changes nothing. Each event is applied to the list: a submitted job is
inserted, a state change moves it among the running jobs or takes it out, a move puts it where
the event says, "run now" goes right after the running jobs.

Where an event alone cannot place a job (a new queued job: its place depends on the priorities
and earlier moves of the others, which events do not fully show; a running job sent back to
the queue; an event about a job the list does not have), the model reads the list again while
the stream goes on, and replays on that list the events that came after the state it read: the
list is then what the queue holds, at the last event seen. One such read runs at a time, so a
burst of submissions costs a few reads, not one per job. A lost queue is followed from the last
event seen as soon as it answers again.

Why a queued job waits (`waiting_reason`) is no event: it changes when runners come, go or
change what they offer. Every list read brings it; a pause or a resume reads the list again;
and while jobs wait, their reasons are read again every `WAITING_REFRESH_SECONDS` (a light
read, reasons only), so none is shown long after it stopped being true.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from stablenew.gui.backend import Stream, is_connection_lost
from stablenew.gui.context import Context
from stablenew.gui.formatting import Row, bar, name_of, short_id, state_word
from stablenew.gui.signals import Signal
from stablenew.sdk import (
    AsyncClient,
    EventKind,
    Job,
    JobEvent,
    JobProgress,
    JobState,
    MovePosition,
    Priority,
    QueueState,
    RunMode,
    SequencePrunedError,
)

# The most the queue returns in one page: the list in one piece for up to this many jobs.
PAGE_SIZE = 1000
# The SDK's watch resumes by itself this long before the window calls the queue lost.
RECONNECT_SECONDS = 1.0
RETRY_SECONDS = 2.0
# A pause between reads of the list, so a burst of submissions is read a few times, not each.
REREAD_SECONDS = 0.1
# How often the reasons queued jobs wait are read again while some wait.
WAITING_REFRESH_SECONDS = 2.0


@dataclass
class QueueItem:
    """An active job as the panel shows it (updated in place by events)."""

    job_id: str
    state: JobState
    run_mode: RunMode
    priority: Priority
    label: str
    summary: str
    entry_count: int
    estimated_images: int
    progress: JobProgress = field(default_factory=JobProgress)
    cancel_requested: bool = False
    runner_id: str = ""
    start_time: datetime | None = None
    # Why a queued job is not running yet; empty when it only waits for its turn.
    waiting_reason: str = ""

    @classmethod
    def of(cls, job: Job) -> QueueItem:
        """The item for a job read from the queue."""
        return cls(job.job_id, job.state, job.origin.run_mode, job.priority, job.label,
                   job.payload_summary, job.entry_count, job.estimated_images,
                   job.progress, job.cancel_requested, job.runner_id, job.start_time,
                   job.waiting_reason if job.state == JobState.QUEUED else "")

    @property
    def title(self) -> str:
        """The label, else the summary the queue made of the entries."""
        return self.label or self.summary


async def _snapshot(client: AsyncClient) -> tuple[QueueState, list[QueueItem]]:
    """The queue's state, then every active job (so a watch from the state's last sequence
    misses nothing)."""
    state = await client.queue.state()
    items = [QueueItem.of(job) async for job in client.queue.list(page_size=PAGE_SIZE)]
    return state, items


async def _waiting_reasons(client: AsyncClient) -> dict[str, str]:
    """Why each queued job waits, by job id."""
    return {job.job_id: job.waiting_reason
            async for job in client.queue.list(page_size=PAGE_SIZE)
            if job.state == JobState.QUEUED}


class QueueModel:
    """The active jobs in run order, the pause flag and the controls.

    Attributes:
        changed: Emitted after the list, an item or the pause flag changed.
        finished: Emitted with the event that ended a job (its results included).
    """

    def __init__(self, context: Context) -> None:
        self._context = context
        self.items: dict[str, QueueItem] = {}
        self.order: list[str] = []
        self.paused = False
        self.loaded = False
        self.last_sequence = 0
        self.changed: Signal[None] = Signal()
        self.finished: Signal[JobEvent] = Signal()
        self._stream: Stream | None = None
        # While the list is read again: the events applied since (replayed on the new list),
        # and whether another read is needed after this one.
        self._since_reread: list[JobEvent] | None = None
        self._reread_again = False
        # Between start and stop: the waiting reasons are read again on a timer, one chain of
        # it per start (an older chain sees another number and ends).
        self._following = False
        self._refresh_round = 0
        context.connection.restored_signal.connect(self._on_restored)

    # --- loading and following ------------------------------------------------------------

    def start(self) -> None:
        """Read the queue and follow it."""
        if not self._following:
            self._following = True
            self._refresh_round += 1
            self._next_refresh()
        self._load()

    def stop(self) -> None:
        """Stop following the queue."""
        self._following = False
        self._stop_watching()

    def _stop_watching(self) -> None:
        if self._stream is not None:
            self._stream.cancel()
            self._stream = None

    def _load(self) -> None:
        self._stop_watching()
        self._context.backend.call("queue", _snapshot, self._loaded, self._load_failed)

    def _show(self, snapshot: tuple[QueueState, list[QueueItem]]) -> QueueState:
        """Take a snapshot's jobs and pause flag as the list; its state."""
        state, items = snapshot
        self.items = {item.job_id: item for item in items}
        self.order = [item.job_id for item in items]
        self.paused = state.paused
        return state

    def _loaded(self, snapshot: tuple[QueueState, list[QueueItem]]) -> None:
        self.last_sequence = self._show(snapshot).last_sequence
        self.loaded = True
        self._watch()
        self.changed.emit(None)

    def _load_failed(self, error: Exception) -> None:
        if not is_connection_lost(error):
            self._context.status.error("Reading the queue", error)
            self._context.backend.after(RETRY_SECONDS, self._load)
        elif not self._context.connection.is_lost("queue"):
            self._context.backend.after(RETRY_SECONDS, self._load)
        # else: `_on_restored` loads once the queue answers again.

    def _watch(self) -> None:
        after = self.last_sequence
        self._stream = self._context.backend.stream(
            "queue", lambda client: client.watch(after_sequence=after,
                                                 reconnect_for=RECONNECT_SECONDS),
            self._apply_events, self._watch_ended)

    def _watch_ended(self, error: Exception | None) -> None:
        self._stream = None
        if isinstance(error, SequencePrunedError):
            self._context.status.info("The queue dropped events this window had not seen: "
                                      "read the queue again")
            self._load()
        elif is_connection_lost(error) and self._context.connection.is_lost("queue"):
            return  # `_on_restored` resumes from the last event seen
        else:
            if error is not None and not is_connection_lost(error):
                self._context.status.error("Following the queue", error)
            self._context.backend.after(RETRY_SECONDS, self._resume)

    def _resume(self) -> None:
        if self._stream is None:
            self._watch() if self.loaded else self._load()

    def _on_restored(self, service: str) -> None:
        if service == "queue":
            self._resume()

    # --- why queued jobs wait -------------------------------------------------------------

    def _refresh_waiting(self, round_: int) -> None:
        """Read the waiting reasons again while jobs wait (the timer ends with `stop`)."""
        if not self._following or round_ != self._refresh_round:
            return
        if self._stream is not None and self._queued_count():
            self._context.backend.call("queue", _waiting_reasons, self._waiting_read,
                                       lambda _: self._next_refresh())
        else:
            self._next_refresh()

    def _next_refresh(self) -> None:
        round_ = self._refresh_round
        self._context.backend.after(WAITING_REFRESH_SECONDS,
                                    lambda: self._refresh_waiting(round_))

    def _waiting_read(self, reasons: dict[str, str]) -> None:
        """Take the reasons of the jobs still queued here (a job that started meanwhile has
        none; one the read missed keeps its own until the next)."""
        changed = False
        for job_id, reason in reasons.items():
            item = self.items.get(job_id)
            if item is not None and item.state == JobState.QUEUED and (
                    item.waiting_reason != reason):
                item.waiting_reason = reason
                changed = True
        if changed:
            self.changed.emit(None)
        self._next_refresh()

    # --- events ---------------------------------------------------------------------------

    def _apply_events(self, events: list[JobEvent]) -> None:
        for event in events:
            if event.sequence <= self.last_sequence:
                continue
            self.last_sequence = event.sequence
            if self._since_reread is not None:
                self._since_reread.append(event)
            self.apply(event)
        self.changed.emit(None)

    def apply(self, event: JobEvent, replayed: bool = False) -> None:
        """Change the list as one event says (`replayed`: again, on a list read anew)."""
        item = self.items.get(event.job_id)
        if event.kind == EventKind.SUBMITTED and event.submitted is not None:
            self._submitted(event.submitted)
        elif event.kind == EventKind.STATE_CHANGED:
            self._state_changed(event, replayed)
        elif event.kind in (EventKind.QUEUE_PAUSED, EventKind.QUEUE_RESUMED):
            self.paused = event.kind == EventKind.QUEUE_PAUSED
            if not replayed:
                self._reread()  # "the queue is paused" comes or goes for the queued jobs
        elif item is None:
            return
        elif event.kind == EventKind.PROGRESS and event.progress is not None:
            item.progress = event.progress
        elif event.kind == EventKind.CANCEL_REQUESTED:
            item.cancel_requested = True
        elif event.kind == EventKind.MOVED and event.moved is not None:
            self._place(item.job_id, event.moved)
        elif event.kind == EventKind.UPDATED and event.updated is not None:
            item.label = event.updated.label
            item.priority = event.updated.priority

    def _submitted(self, job: Job) -> None:
        if job.job_id in self.items:
            return
        self.items[job.job_id] = QueueItem.of(job)
        if job.origin.run_mode == RunMode.DIRECT:
            # "Run now" is next: right after the running jobs, ahead of earlier direct jobs.
            self.order.insert(self._running_count(), job.job_id)
        else:
            self.order.append(job.job_id)
            self._reread()  # its place behind moved jobs and other priorities: the queue knows

    def _state_changed(self, event: JobEvent, replayed: bool) -> None:
        change = event.state_changed
        if change is None:
            return
        item = self.items.get(event.job_id)
        if change.to_state.is_terminal:
            if item is not None:
                del self.items[event.job_id]
                self.order.remove(event.job_id)
            if not replayed:
                self.finished.emit(event)
        elif item is None:
            self._reread()
        elif change.to_state == JobState.RUNNING:
            item.state = JobState.RUNNING
            item.waiting_reason = ""
            item.runner_id = change.runner_id
            item.start_time = event.time
            self.order.remove(item.job_id)
            self.order.insert(self._running_count(), item.job_id)
        elif change.to_state == JobState.QUEUED:
            item.state = JobState.QUEUED
            item.progress = JobProgress()
            item.cancel_requested = False
            self._reread()  # back at its old place, which the event does not say

    def _running_count(self) -> int:
        return sum(1 for job_id in self.order if self.items[job_id].state == JobState.RUNNING)

    def _queued_count(self) -> int:
        return len(self.order) - self._running_count()

    def _place(self, job_id: str, position: int) -> None:
        self.order.remove(job_id)
        self.order.insert(min(max(position, 0), len(self.order)), job_id)

    def _reread(self) -> None:
        """Read the list again and replay the events seen since (one read at a time)."""
        if self._since_reread is not None:
            self._reread_again = True
            return
        self._since_reread = []
        self._context.backend.call("queue", _snapshot, self._reread_done, self._reread_failed)

    def _reread_done(self, snapshot: tuple[QueueState, list[QueueItem]]) -> None:
        events = self._since_reread or []
        self._reread_again = False
        state = self._show(snapshot)
        self._since_reread = []  # a replayed submission asks for another read: noted, not run
        for event in events:
            if event.sequence > state.last_sequence:
                self.apply(event, replayed=True)
        # The list holds every event up to the state's sequence: one the stream still brings
        # (it may lag behind the read) changes nothing.
        self.last_sequence = max(self.last_sequence, state.last_sequence)
        self._since_reread = None
        self.changed.emit(None)
        if self._reread_again:
            self._reread_again = False
            self._context.backend.after(REREAD_SECONDS, self._reread)

    def _reread_failed(self, error: Exception) -> None:
        self._since_reread = None
        if not is_connection_lost(error):
            self._context.status.error("Reading the queue", error)
        self._context.backend.after(RETRY_SECONDS, self._reread)

    # --- what the panel shows -------------------------------------------------------------

    def jobs(self) -> list[QueueItem]:
        """The active jobs in run order."""
        return [self.items[job_id] for job_id in self.order]

    def rows(self) -> list[Row]:
        """The table: position, state, progress bar, job, run mode, priority, counts."""
        rows = []
        for position, item in enumerate(self.jobs(), start=1):
            state = state_word(item.state)
            if item.cancel_requested:
                state += " (cancelling)"
            progress = bar(item.progress.fraction) if item.state == JobState.RUNNING else ""
            waiting = f"  · waiting: {item.waiting_reason}" if item.waiting_reason else ""
            rows.append(Row(item.job_id, (
                str(position), state, progress,
                f"{short_id(item.job_id)}  {item.title}{waiting}",
                "run now" if item.run_mode == RunMode.DIRECT else "queue",
                name_of(item.priority), str(item.entry_count), str(item.estimated_images)),
                state_word(item.state)))
        return rows

    def summary(self) -> str:
        """Counts and the pause flag in one line."""
        running = self._running_count()
        queued = self._queued_count()
        text = f"{running} running · {queued} queued"
        return text + " · PAUSED (run-now jobs still run)" if self.paused else text

    # --- controls -------------------------------------------------------------------------

    def toggle_pause(self) -> None:
        """Pause the queue, or resume it; the watch shows the change."""
        paused = self.paused
        self._context.backend.call(
            "queue", lambda client: client.queue.resume() if paused else client.queue.pause(),
            lambda state: self._context.status.info(
                "Queue paused" if state.paused else "Queue resumed"),
            lambda error: self._context.status.error("Resume" if paused else "Pause", error))

    def cancel(self, job_id: str, return_to_queue: bool = False) -> None:
        """Cancel a job (a running one stops after the runner hears of it); with
        `return_to_queue`, a running job goes back to the queue instead."""
        action = "Cancel and return" if return_to_queue else "Cancel"
        self._context.backend.call(
            "queue", lambda client: client.queue.cancel(job_id, return_to_queue=return_to_queue,
                                                        reason="cancelled in the GUI"),
            lambda job: self._context.status.info(
                f"{action}: job {short_id(job_id)} "
                + ("is stopping" if job.state == JobState.RUNNING else state_word(job.state))),
            lambda error: self._context.status.error(f"{action} {short_id(job_id)}", error))

    def move(self, job_id: str, position: MovePosition) -> None:
        """Move a queued job to the front or back, or one place up or down."""
        word = name_of(position)
        self._context.backend.call(
            "queue", lambda client: client.queue.move(job_id, position),
            lambda job: self._context.status.info(
                f"Moved job {short_id(job_id)} {word}: now #{job.queue_position + 1}"),
            lambda error: self._context.status.error(f"Move {short_id(job_id)} {word}", error))
