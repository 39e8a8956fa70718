"""The automatic retention policy, applied in the background now and then.

STABLENEW_HISTORY_MAX_AGE_DAYS removes finished jobs created longer ago than that;
STABLENEW_HISTORY_MAX_ROWS removes the oldest finished jobs while the history holds more records
than that. Bookmarked jobs and jobs still in the queue are always kept. Records go in batches of
a few hundred per transaction, so the ingestion waits milliseconds at most, and the freed pages
are given back to the file system (incremental vacuum).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from datetime import timedelta

from stablenew.common.settings import positive_float, positive_int
from stablenew.history.core import HistoryCore
from stablenew.history.domain import RetentionPolicy

log = logging.getLogger("stablenew.history.retention")


def retention_policy(env: Mapping[str, str]) -> RetentionPolicy:
    days = positive_float(env, "STABLENEW_HISTORY_MAX_AGE_DAYS", 0.0) or None
    rows = positive_int(env, "STABLENEW_HISTORY_MAX_ROWS", 0) or None
    interval = positive_float(env, "STABLENEW_HISTORY_RETENTION_INTERVAL_SECONDS",
                              RetentionPolicy().interval_seconds)
    return RetentionPolicy(max_age=None if days is None else timedelta(days=days),
                           max_rows=rows, interval_seconds=interval)


class Retention:
    def __init__(self, core: HistoryCore, policy: RetentionPolicy) -> None:
        self.core = core
        self.policy = policy
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="history-retention", daemon=True)

    def start(self) -> None:
        if self.policy.enabled:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.core.enforce(self.policy)
            except Exception:
                # Disk full, say: the next round tries again; never die.
                log.exception("applying the retention policy failed")
            self._stop.wait(self.policy.interval_seconds)
