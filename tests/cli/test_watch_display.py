"""The live display of `stablenew watch` on a terminal (rich bars) and as plain lines, fed the
events the SDK delivers."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from rich.console import Console

from stablenew.cli import text, watch_display
from stablenew.sdk import EventKind, JobEvent, JobProgress, JobState, StageType, StateChange


def progress_event(sequence: int, entry: int, stage: StageType, step: int) -> JobEvent:
    return JobEvent(sequence=sequence, time=None, job_id="job-1", kind=EventKind.PROGRESS,
                    progress=JobProgress(entry_index=entry, entry_count=2, stage=stage,
                                         step=step, steps=10, fraction=(entry + step / 10) / 2,
                                         eta=timedelta(seconds=42)))


def change_event(sequence: int, to_state: JobState, error: str = "") -> JobEvent:
    change = StateChange(from_state=JobState.RUNNING, to_state=to_state, reason="",
                         runner_id="gpu-1", attempt=1, error_message=error, results=[])
    return JobEvent(sequence=sequence, time=None, job_id="job-1",
                    kind=EventKind.STATE_CHANGED, state_changed=change)


EVENTS = [change_event(1, JobState.RUNNING),
          progress_event(2, 0, StageType.TXT2IMG, 3),
          progress_event(3, 0, StageType.TXT2IMG, 7),
          progress_event(4, 0, StageType.UPSCALE, 1),
          progress_event(5, 1, StageType.TXT2IMG, 5),
          change_event(6, JobState.FAILED, "WebUI returned 500")]


def test_lines_name_each_entry_and_stage_once(capsys: pytest.CaptureFixture[str]) -> None:
    display = watch_display.LinesDisplay()
    for event in EVENTS:
        display.event(event)
    display.close()
    assert capsys.readouterr().out.splitlines() == [
        "job job-1: running (runner gpu-1, attempt 1)",
        "job job-1: entry 1/2 txt2img",
        "job job-1: entry 1/2 upscale",
        "job job-1: entry 2/2 txt2img",
        "job job-1: failed: WebUI returned 500"]


def test_bars_show_entry_stage_step_and_eta(monkeypatch: pytest.MonkeyPatch) -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120, color_system=None)
    monkeypatch.setattr(watch_display, "Console", lambda: console)
    display = watch_display.BarsDisplay()
    for event in EVENTS[:5]:
        display.event(event)
    display._bars.refresh()
    drawn = screen.getvalue()
    assert "job job-1" in drawn
    assert "entry 2/2 txt2img" in drawn and "step 5/10" in drawn and "eta 42.0s" in drawn
    display.event(EVENTS[5])
    display.close()
    assert "job job-1: failed: WebUI returned 500" in screen.getvalue()
    assert display._bars.tasks == []  # the finished job's bars are gone


def test_the_display_follows_the_output(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(watch_display.display_for(json_lines=True), watch_display.JsonDisplay)
    monkeypatch.setattr("sys.stdout.isatty", lambda: False)
    assert isinstance(watch_display.display_for(json_lines=False), watch_display.LinesDisplay)


@pytest.mark.parametrize(("number", "noun", "said"), [
    (1, "entry", "1 entry"), (2, "entry", "2 entries"), (0, "image", "0 images"),
    (1, "image file", "1 image file"), (6, "image file", "6 image files")])
def test_counts_are_said_in_the_singular_for_one(number: int, noun: str, said: str) -> None:
    assert text.count(number, noun) == said
