"""How `watch` and `run --wait` show the queue's events.

On a terminal: live rich progress bars, one per running job and one for its current entry, with
stage, step and ETA. Otherwise (a pipe, a log file): one plain line per state change and per
entry or stage the job moves to. With `--json`: every event as one JSON line.
"""

from __future__ import annotations

import sys
from typing import Protocol

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn

from stablenew.cli import text
from stablenew.cli.output import print_json
from stablenew.sdk import EventKind, Job, JobEvent, JobProgress, JobState


class Display(Protocol):
    """What a watch shows: the jobs running when it starts, then every event."""

    def running(self, job: Job) -> None:
        """A job that was already running (or queued) when the watch started."""

    def event(self, event: JobEvent) -> None:
        """One event of the queue's log."""

    def close(self) -> None:
        """The watch is over."""


def display_for(json_lines: bool) -> Display:
    """JSON lines, live bars on a terminal, plain lines otherwise."""
    if json_lines:
        return JsonDisplay()
    if sys.stdout.isatty():
        return BarsDisplay()
    return LinesDisplay()


def change_text(event: JobEvent) -> str | None:
    """A line for an event other than progress; None for one not worth a line."""
    change = event.state_changed
    if change is not None:
        state = text.name(change.to_state)
        if change.to_state == JobState.RUNNING:
            return f"{state} (runner {change.runner_id}, attempt {change.attempt})"
        detail = change.error_message or change.reason
        return f"{state}: {detail}" if detail and detail.lower() != state else state
    if event.submitted is not None:
        job = event.submitted
        return (f"submitted: {text.count(job.entry_count, 'entry')}, "
                f"{text.count(job.estimated_images, 'image')}")
    if event.cancel_requested is not None:
        back = ", back to the queue" if event.cancel_requested.return_to_queue else ""
        return f"cancel requested{back}"
    if event.moved is not None:
        return f"moved to position {event.moved}"
    if event.kind in (EventKind.QUEUE_PAUSED, EventKind.QUEUE_RESUMED):
        return "queue paused" if event.kind == EventKind.QUEUE_PAUSED else "queue resumed"
    return None


class JsonDisplay:
    """Every event as one JSON line (proto3 JSON of the JobEvent)."""

    def running(self, job: Job) -> None:
        """Nothing: the JSON stream holds events only."""

    def event(self, event: JobEvent) -> None:
        """The event as a line."""
        print_json(event, lines=True)

    def close(self) -> None:
        """Nothing to close."""


class LinesDisplay:
    """Plain lines: state changes, and each entry and stage a job reaches."""

    def __init__(self) -> None:
        self._at: dict[str, tuple[int, int]] = {}

    def running(self, job: Job) -> None:
        """Where the job stands."""
        where = f", {text.progress(job.progress)}" if job.progress.entry_count else ""
        self._say(job.job_id, f"{text.name(job.state)}{where}")

    def event(self, event: JobEvent) -> None:
        """A line when something changed."""
        if event.progress is not None:
            self._progress(event.job_id, event.progress)
            return
        line = change_text(event)
        if line is not None:
            self._say(event.job_id, line)

    def _progress(self, job_id: str, progress: JobProgress) -> None:
        position = (progress.entry_index, int(progress.stage))
        if self._at.get(job_id) != position:
            self._at[job_id] = position
            self._say(job_id, f"entry {progress.entry_index + 1}/{progress.entry_count} "
                      f"{text.name(progress.stage)}")

    @staticmethod
    def _say(job_id: str, line: str) -> None:
        print(f"job {job_id}: {line}" if job_id else line, flush=True)

    def close(self) -> None:
        """Nothing to close."""


class BarsDisplay:
    """Live bars: the job's overall fraction, and its current entry's steps."""

    def __init__(self) -> None:
        self._console = Console()
        self._bars = Progress(TextColumn("{task.description}"), BarColumn(),
                              TaskProgressColumn(), TextColumn("{task.fields[detail]}"),
                              console=self._console)
        self._jobs: dict[str, tuple[TaskID, TaskID]] = {}
        self._bars.start()

    def _tasks(self, job_id: str) -> tuple[TaskID, TaskID]:
        if job_id not in self._jobs:
            self._jobs[job_id] = (
                self._bars.add_task(f"job {job_id}", total=1.0, detail=""),
                self._bars.add_task("  waiting", total=1, detail=""))
        return self._jobs[job_id]

    def running(self, job: Job) -> None:
        """A bar for the job, filled as far as it got."""
        self._tasks(job.job_id)
        if job.progress.entry_count:
            self._show(job.job_id, job.progress)

    def event(self, event: JobEvent) -> None:
        """Move the bars, or print a line above them."""
        if event.progress is not None:
            self._show(event.job_id, event.progress)
            return
        line = change_text(event)
        if line is not None:
            self._console.print(f"job {event.job_id}: {line}" if event.job_id else line)
        change = event.state_changed
        if change is not None and change.to_state.is_terminal:
            self._finish(event.job_id)

    def _show(self, job_id: str, progress: JobProgress) -> None:
        job_task, entry_task = self._tasks(job_id)
        self._bars.update(job_task, completed=progress.fraction,
                          detail=f"eta {text.duration(progress.eta)}" if progress.eta else "")
        self._bars.update(entry_task, total=max(progress.steps, 1), completed=progress.step,
                          description=f"  entry {progress.entry_index + 1}/"
                          f"{progress.entry_count} {text.name(progress.stage)}",
                          detail=f"step {progress.step}/{progress.steps}")

    def _finish(self, job_id: str) -> None:
        tasks = self._jobs.pop(job_id, None)
        if tasks is not None:
            for task in tasks:
                self._bars.remove_task(task)

    def close(self) -> None:
        """Stop redrawing."""
        self._bars.stop()
