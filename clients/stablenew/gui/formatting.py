"""How the window writes values: states, stages, times, durations and progress, in words."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import IntEnum

from stablenew.sdk import JobProgress, JobState, StageType
from stablenew.sdk.formatting import format_duration

BAR_CELLS = 8
SHORT_ID = 8


def name_of(member: IntEnum) -> str:
    """An enum member as a word ("add to queue"); empty when unspecified."""
    return "" if member.value == 0 else member.name.lower().replace("_", " ")


def state_word(state: JobState) -> str:
    """A job's state as a word."""
    return name_of(state) or "unknown"


def stage_word(stage: StageType) -> str:
    """A stage's name as the WebUI calls it."""
    return {StageType.TXT2IMG: "txt2img", StageType.IMG2IMG: "img2img",
            StageType.ADETAILER: "ADetailer", StageType.UPSCALE: "upscale"}.get(stage, "")


def short_id(job_id: str) -> str:
    """The first characters of an id: enough to tell jobs apart on screen."""
    return job_id[:SHORT_ID]


def clock(moment: datetime | None, short: bool = False) -> str:
    """A time in the local time zone (empty when unset); `short`: month, day, hour and minute
    (for table cells)."""
    if moment is None:
        return ""
    return moment.astimezone().strftime("%m-%d %H:%M" if short else "%Y-%m-%d %H:%M:%S")


def duration(span: timedelta | None) -> str:
    """A duration as `1h 02m`, `3m 05s` or `4.2s` (empty when unknown)."""
    return format_duration(span, spaced=True, unknown="")


def between(start: datetime | None, end: datetime | None) -> str:
    """The duration from `start` to `end` (empty unless both are known)."""
    return duration(end - start) if start and end else ""


def bar(fraction: float) -> str:
    """A progress bar in text, for table cells: `■■■■□□□□□□  40%`."""
    fraction = min(max(fraction, 0.0), 1.0)
    filled = round(fraction * BAR_CELLS)
    return f"{'■' * filled}{'□' * (BAR_CELLS - filled)} {fraction:4.0%}"


def progress_line(progress: JobProgress) -> str:
    """Entry, stage, step and ETA of a running job in one line."""
    parts = []
    if progress.entry_count:
        parts.append(f"entry {progress.entry_index + 1} of {progress.entry_count}")
    if stage_word(progress.stage):
        parts.append(stage_word(progress.stage))
    if progress.steps:
        parts.append(f"step {progress.step} of {progress.steps}")
    if progress.eta is not None:
        parts.append(f"ETA {duration(progress.eta)}")
    return " · ".join(parts)


def yes_no(value: bool) -> str:
    """A flag as a table cell."""
    return "yes" if value else "no"


@dataclass(frozen=True)
class Row:
    """One line of a table as a view model writes it: its key, its cells, and a tag naming
    its colour (a state word, "job" or "error")."""

    key: str
    values: tuple[str, ...]
    tag: str
