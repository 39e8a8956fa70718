"""Short human forms of the SDK's values, shared by the commands' plain-text output."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from enum import Enum

from stablenew.sdk import Job, JobProgress, RowError, StageType
from stablenew.sdk.formatting import format_duration


def name(member: Enum) -> str:
    """An enum member as a user types it: `JobState.RUNNING` -> "running"."""
    return member.name.lower().replace("_", "-")


def stages(plan: Iterable[StageType]) -> str:
    """A stage plan: "txt2img>adetailer>upscale"."""
    return ">".join(name(stage) for stage in plan) or "-"


def moment(value: datetime | None) -> str:
    """A time in local time, to the second; "-" when unset."""
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def duration(value: timedelta | None) -> str:
    """"1h02m", "3m05s" or "12.3s"; "-" when unknown."""
    return format_duration(value)


def progress(value: JobProgress) -> str:
    """"entry 2/8 txt2img step 12/20, 31%, eta 45.0s"."""
    text = f"entry {value.entry_index + 1}/{value.entry_count} {name(value.stage)}"
    if value.steps:
        text += f" step {value.step}/{value.steps}"
    return f"{text}, {value.fraction:.0%}, eta {duration(value.eta)}"


def count(number: int, noun: str) -> str:
    """"1 entry", "8 entries", "1 image file": the number and its noun, singular for one."""
    if number == 1:
        return f"1 {noun}"
    plural = noun[:-1] + "ies" if noun.endswith("y") else noun + "s"
    return f"{number} {plural}"


def job_line(job: Job, images_made: bool = False) -> list[str]:
    """The cells of a job in a list: id, state, mode, entries, images, label, summary.

    The queue knows only the images a job will make; the history counts those it made.
    """
    images = job.image_count if images_made else job.estimated_images
    return [job.job_id, name(job.state), name(job.origin.run_mode), str(job.entry_count),
            str(images), job.label or "-", job.payload_summary]


JOB_HEADER = ["JOB", "STATE", "MODE", "ENTRIES", "IMAGES", "LABEL", "SUMMARY"]


def row_error(error: RowError) -> str:
    """"castles row 3 (line 7): UNRESOLVED_TOKEN: [[place]] is not defined"; a manual part is
    "part ID: ...". The bundle's message names the row too: that part is not said twice."""
    if not error.prompt_pack_id:
        where = f"part {error.part_id}"
    elif error.row_index >= 0:
        where = f"{error.prompt_pack_id} row {error.row_index}"
    else:
        where = f"{error.prompt_pack_id} presets"
    if error.line:
        where += f" (line {error.line})"
    return f"{where}: {error.reason.name}: {error.message.removeprefix(f'{where}: ')}"
