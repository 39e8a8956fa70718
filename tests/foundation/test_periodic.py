"""The background task runner of the services (queue maintenance, history retention)."""

from __future__ import annotations

import threading

from stablenew.runtime.periodic import PeriodicTask
from tests.service_harness import wait_for


def test_a_failing_tick_is_tried_again_and_stop_ends_the_thread() -> None:
    calls: list[int] = []

    def tick() -> None:
        calls.append(len(calls))
        if len(calls) < 3:
            raise OSError("disk full")

    task = PeriodicTask("test-periodic", 0.01, tick)
    task.start()
    wait_for(lambda: len(calls) >= 4, "ticks after the failing ones")
    task.stop()
    assert not [t for t in threading.enumerate() if t.name == "test-periodic"]


def test_run_first_ticks_at_once_and_a_disabled_task_never_starts() -> None:
    ran = threading.Event()
    first = PeriodicTask("test-first", 3600, ran.set, run_first=True)
    first.start()
    assert ran.wait(5)
    first.stop()
    never = PeriodicTask("test-never", 0.01, ran.clear, enabled=False)
    never.start()
    never.stop()
    assert ran.is_set()  # its tick (clearing the event) never ran
