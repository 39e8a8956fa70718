"""The window with 10,000 jobs in the history and 1,000 in the queue, on a real display against
real services: it reads, shows, scrolls and follows them while no service call ever runs on the
Tk thread, and the Tk thread never works 100 ms without returning to its event loop.

The second bound is measured as the Tk thread's own CPU time between two ticks of a 20 ms timer
(`StallMonitor.longest_busy`): what the window itself holds up, whatever else the machine runs
meanwhile. The wall-clock gaps are reported for information.
"""

from __future__ import annotations

import gc
from functools import partial
from pathlib import Path

import pytest

from stablenew.gui.history_model import PAGE_SIZE
from stablenew.sdk import Client, MovePosition
from tests.bundle_service.harness import unique
from tests.gui.conftest import addresses_of
from tests.gui.harness import finished_job, import_jobs
from tests.gui.window import CallThreads, Window
from tests.sdk.harness import Stack

HISTORY_JOBS = 10_000
QUEUED_JOBS = 1_000
PAGES_SCROLLED = 10
STALL_SECONDS = 0.1


@pytest.mark.timeout(600)
def test_the_window_stays_responsive(display: str, stack: Stack, client: Client,
                                     calls: CallThreads, tmp_path: Path) -> None:
    label = unique("gui-load-")
    import_jobs(client, tmp_path / "history.jsonl",
                [finished_job(f"{label}-{n:05d}", n, label) for n in range(HISTORY_JOBS)])
    client.queue.pause()
    queued = [stack.queue.submit(label=label).job_id for _ in range(QUEUED_JOBS)]
    calls.reset()  # from here on, the test's own calls run aside from the Tk thread
    # The window runs in this process, whose heap holds what every earlier test left: freezing
    # it keeps the garbage collector's full passes over that heap (a quarter of a second after
    # the whole suite) out of the Tk thread's figure, as in the window's own process.
    gc.collect()
    gc.freeze()
    window = Window(display, addresses_of(stack), tmp_path / "gui")
    try:
        follow_the_queue(window, client, queued)
        scroll_the_history(window)
        monitor = window.main.monitor
        print(f"longest Tk work between ticks: {monitor.longest_busy * 1000:.1f} ms; "
              f"longest wall-clock gap: {monitor.longest_gap * 1000:.1f} ms over "
              f"{monitor.ticks} ticks; {calls.total()} SDK calls")
        assert calls.total() > PAGES_SCROLLED
        assert calls.calls_on(window.tk_thread) == 0
        assert monitor.longest_busy <= STALL_SECONDS, monitor.longest_busy
    finally:
        window.close()
        gc.unfreeze()
        for job in client.queue.list(page_size=1000):
            if job.label == label:
                client.queue.cancel(job.job_id)
        client.queue.resume()


def follow_the_queue(window: Window, client: Client, queued: list[str]) -> None:
    """All 1,000 queued jobs in the table; then one moved to the front and 100 cancelled,
    followed live."""
    models, view = window.models, window.main.queue_view
    window.press("alt+2")
    window.until(lambda: len(view.table.shown_keys()) == QUEUED_JOBS, "1,000 rows", 120)
    window.aside(partial(client.queue.move, queued[-1], MovePosition.FRONT))
    for job_id in queued[:100]:
        window.aside(partial(client.queue.cancel, job_id))
    expected = window.aside(lambda: [job.job_id for job in client.queue.list(page_size=1000)])
    assert expected[0] == queued[-1] and len(expected) == QUEUED_JOBS - 100
    window.until(lambda: models.queue.order == expected
                 and view.table.shown_keys() == expected, "the moves and cancels", 120)


def _pages_shown(window: Window, pages: int) -> bool:
    history, table = window.models.history, window.main.history_view.table
    return (len(history.jobs) >= pages * PAGE_SIZE and not history.loading
            and len(table.shown_keys()) == len(history.jobs))


def scroll_the_history(window: Window) -> None:
    """Scroll down the history page after page, as a person does."""
    view = window.main.history_view
    window.press("alt+3")
    for page in range(1, PAGES_SCROLLED + 1):
        window.until(partial(_pages_shown, window, page), f"page {page} in the table", 120)
        view.table.tree.yview_moveto(1.0)
        window.pump(0.05)
    window.until(lambda: len(view.table.shown_keys()) >= PAGES_SCROLLED * PAGE_SIZE,
                 "the pages in the table", 120)
    count, history = view.count, window.models.history
    window.until(lambda: count.cget("text") == f"{len(history.jobs):,}+ jobs"
                 and not history.loading, "the count of the jobs read")
    assert count.winfo_width() >= count.winfo_reqwidth(), "the count is cut off"
