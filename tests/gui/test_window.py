"""The real window under Xvfb against real services and the WebUI emulator, driven with real
key presses: a pack from the picker into the draft, the queue, a run, and the history; with a
screenshot of each panel. The Tk thread makes no service call and never works 100 ms on end."""

from __future__ import annotations

from pathlib import Path
from tkinter import ttk

from stablenew.cli.local import free_port
from stablenew.gui.formatting import short_id
from stablenew.sdk import Client, JobState
from tests.bundle_service.harness import unique
from tests.gui.conftest import addresses_of
from tests.gui.harness import write_text_pack
from tests.gui.window import CallThreads, Window, cut_off
from tests.queue.harness import QueueHarness
from tests.sdk.harness import PACK_ID, Stack

# The longest the Tk thread may work without returning to its event loop (CPU time).
STALL_SECONDS = 0.1


def test_a_pack_through_the_queue_into_the_history(window: Window, stack: Stack,
                                                   calls: CallThreads) -> None:
    build_the_draft(window)
    job_id = queue_and_run(window, stack)
    look_it_up_in_the_history(window, job_id)
    assert calls.total() > 20
    assert calls.calls_on(window.tk_thread) == 0
    assert window.main.monitor.longest_busy <= STALL_SECONDS, window.main.monitor.longest_busy


def build_the_draft(window: Window) -> None:
    """Two rows of the pack picked in the pipeline, and a typed prompt, into the preview."""
    models, pipeline = window.models, window.main.pipeline_view
    pipeline.pack_choice.set(PACK_ID)
    pipeline.pack_choice.event_generate("<<ComboboxSelected>>")
    window.until(lambda: models.pipeline.pack, "the pack's rows")
    assert pipeline.rows.size() == 3
    for index in (0, 2):
        pipeline.rows.selection_set(index)
    pipeline.rows.event_generate("<<ListboxSelect>>")
    window.until(lambda: models.pipeline.selected_rows == [0, 2], "the row selection")
    window.press("ctrl+shift+p")
    window.until(lambda: len(models.draft.jobs) == 2, "the pack's rows in the preview")
    window.press("type", "--delay", "5", "a red fox in the snow", into=pipeline.prompt)
    window.until(lambda: models.pipeline.prompt == "a red fox in the snow", "the typed prompt")
    window.press("ctrl+j", into=pipeline.prompt)
    window.until(lambda: len(models.draft.jobs) == 3 and not models.draft.busy,
                 "the prompt in the preview")
    assert pipeline.prompt.get("1.0", "end-1c") == "a red fox in the snow"  # no stray line
    preview = window.main.preview_view
    window.until(lambda: len(preview.table.shown_keys()) == 3, "the preview's table")
    assert str(preview.buttons["add_queue"].cget("state")) == "normal"
    assert not cut_off(preview.table, ("#", "seed", "size", "steps"))
    window.screenshot("preview")


def queue_and_run(window: Window, stack: Stack) -> str:
    """The draft into the held queue (F8, Ctrl+Enter), then released and run; its job id."""
    models, main = window.models, window.main
    window.press("F8")
    window.until(lambda: models.queue.paused, "the paused queue")
    window.press("ctrl+Return")
    job_id = window.until(lambda: next(iter(models.queue.order), None), "the queued job")
    assert models.draft.jobs == []
    window.press("alt+2")
    window.until(lambda: main.queue_view.table.shown_keys() == [job_id], "the queue's table")
    assert "Resume" in str(main.queue_view.pause_button.cget("text"))
    window.screenshot("queue")
    window.aside(lambda: stack.admin.faults(step_seconds=0.5))  # slow enough to watch it
    try:
        window.press("F8")
        window.until(lambda: "step" in models.running.detail(), "the running job's steps")
        window.until(lambda: _showing_its_newest_image(window), "the running job's own image")
        assert main.running_view.headline.cget("text").startswith(
            f"Running {short_id(job_id)}")
        assert not cut_off(main.queue_view.table, ("#", "state", "progress", "images"))
        window.screenshot("running")
    finally:
        window.aside(lambda: stack.admin.faults(step_seconds=0.002))
    return job_id


def _showing_its_newest_image(window: Window) -> bool:
    """Whether the running strip shows the newest image the running job wrote (read from its
    runner), not one of an earlier job."""
    running = window.models.running
    newest = running.job.progress.latest_image.path if running.job is not None else ""
    return bool(newest) and running.thumbnail is not None and running.thumbnail.path == newest


def look_it_up_in_the_history(window: Window, job_id: str) -> None:
    """The finished job leaves the queue, is in the history at once, with its images."""
    models, main = window.models, window.main
    window.until(lambda: job_id not in models.queue.items, "the job to leave the queue")
    shown = window.until(lambda: next((job for job in models.history.jobs
                                       if job.job_id == job_id), None), "the job in history")
    assert shown.state == JobState.COMPLETED
    window.press("alt+3")
    history = main.history_view
    window.until(lambda: job_id in history.table.shown_keys(), "the history's table")
    history.table.tree.selection_set(job_id)
    window.until(lambda: len(models.history.thumbnails) == 3, "the job's thumbnails")
    window.until(lambda: len(history.gallery.winfo_children()) == 3, "the gallery")
    assert not cut_off(history.table, ("job", "mode", "started", "completed", "took", "state",
                                       "images"))
    assert not cut_off(history.entries, ("#", "status", "seed", "images"))
    window.screenshot("history")
    window.until(lambda: models.running.thumbnail, "the newest image")
    window.screenshot("running-image", main.running_view)


def test_a_lost_queue_shows_a_banner_until_it_is_back(display: str, stack: Stack,
                                                      tmp_path: Path) -> None:
    queue = QueueHarness(tmp_path / "queue",
                         {"STABLENEW_QUEUE_ADDR": f"127.0.0.1:{free_port()}"}).start()
    window = Window(display, addresses_of(stack) | {"queue": queue.address}, tmp_path / "gui")
    try:
        models, banner = window.models, window.main.banner
        window.until(lambda: models.queue.loaded, "the queue")
        assert not banner.winfo_ismapped()
        queue.stop()
        window.until(banner.winfo_ismapped, "the banner")
        assert f"queue ({queue.address})" in banner.cget("text")
        window.screenshot("banner")
        queue.start()
        job_id = queue.submit(label="while the window reconnects").job_id
        window.until(lambda: not banner.winfo_ismapped(), "the banner to go")
        window.until(lambda: models.queue.order == [job_id], "the job queued meanwhile")
    finally:
        window.close()
        queue.stop()


def test_the_form_marks_what_it_refuses_and_keeps_it(window: Window) -> None:
    models, pipeline = window.models, window.main.pipeline_view
    steps = pipeline.field("txt2img.steps")
    sampler = pipeline.field("txt2img.sampler_name")
    assert isinstance(sampler, ttk.Combobox)
    assert sampler.get() == "(default)"
    offered = models.pipeline.capabilities.samplers if models.pipeline.capabilities else []
    assert list(sampler.cget("values")) == ["(default)", *offered]
    window.press("type", "many", into=steps)
    window.press("ctrl+j", into=steps)
    window.until(lambda: pipeline.field_error("txt2img.steps"), "the marked field")
    assert pipeline.field_error("txt2img.steps") == "'many' is not a whole number"
    assert "write a prompt first" in pipeline.prompt_error.cget("text")
    assert "Add to Job failed: fix the marked fields" in window.main.status.cget("text")
    assert models.draft.jobs == []
    window.press("End", *["BackSpace"] * len("many"), "6", into=steps)
    sampler.set(offered[-1])
    sampler.event_generate("<<ComboboxSelected>>")
    window.press("type", "a lantern", into=pipeline.prompt)
    window.press("ctrl+j", into=pipeline.prompt)
    job = window.until(lambda: next(iter(models.draft.jobs), None), "the part in the preview")
    assert (job.prompt, job.steps, job.sampler_name) == ("a lantern", 6, offered[-1])
    assert pipeline.field_error("txt2img.steps") == ""


def test_f5_reads_the_packs_and_the_history_again(window: Window, stack: Stack) -> None:
    pack_id = unique("gui-f5-")
    write_text_pack(stack.packs_dir, pack_id, ["a new pack's row"])
    history, draft = window.models.history, window.models.draft
    window.until(lambda: not history.loading, "the history's first page")
    listed = history.jobs
    previews: list[None] = []
    draft.changed.connect(previews.append)
    window.press("F5")
    window.until(lambda: pack_id in window.main.pipeline_view.pack_choice.cget("values"),
                 "the new pack in the picker")
    window.until(lambda: history.jobs is not listed and not history.loading,
                 "the history read again")
    window.until(lambda: previews and not draft.busy, "the draft previewed again")


def test_the_queue_and_history_keys(window: Window, stack: Stack, client: Client,
                                    paused: None) -> None:
    """The table keys with real key presses: Ctrl+Home and Ctrl+↓ move the selected job,
    Delete cancels it; in the history Ctrl+B bookmarks the selected job."""
    models, main = window.models, window.main
    label = unique("gui-keys-")
    first, second, third = (stack.queue.submit(label=label).job_id for _ in range(3))
    window.until(lambda: models.queue.order[-3:] == [first, second, third], "the three jobs")
    window.press("alt+2")
    queue_tree = main.queue_view.table.tree
    window.until(lambda: third in main.queue_view.table.shown_keys(), "the queue's table")
    queue_tree.selection_set(third)
    window.press("ctrl+Home", into=queue_tree)
    window.until(lambda: models.queue.order[0] == third, "Ctrl+Home: to the front")
    window.press("ctrl+Down", into=queue_tree)
    window.until(lambda: models.queue.order[1] == third, "Ctrl+Down: one place down")
    window.press("Delete", into=queue_tree)
    window.until(lambda: third not in models.queue.items, "Delete: cancelled")
    assert window.aside(lambda: client.queue.get(third).state) == JobState.CANCELLED
    window.press("alt+3")
    history = main.history_view
    window.until(lambda: third in history.table.shown_keys(), "the cancelled job in history")
    history.table.tree.selection_set(third)
    window.until(lambda: models.history.selected_id == third, "the selection")
    window.press("ctrl+b", into=history.table.tree)
    window.until(lambda: getattr(models.history.selected_job(), "bookmarked", False),
                 "Ctrl+B: bookmarked")
    assert window.aside(lambda: client.history.get(third).job.bookmarked)
