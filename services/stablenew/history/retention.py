"""The automatic retention policy, applied in the background now and then.

STABLENEW_HISTORY_MAX_AGE_DAYS removes finished jobs created longer ago than that;
STABLENEW_HISTORY_MAX_ROWS removes the oldest finished jobs while the history holds more records
than that. Bookmarked jobs and jobs still in the queue are always kept. Records go in batches of
a few hundred per transaction, so the ingestion waits milliseconds at most, and the freed pages
are given back to the file system (incremental vacuum).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from stablenew.history.core import HistoryCore
from stablenew.history.domain import RetentionPolicy
from stablenew.runtime.periodic import PeriodicTask
from stablenew.runtime.settings import positive_float, positive_int


def retention_policy(env: Mapping[str, str]) -> RetentionPolicy:
    days = positive_float(env, "STABLENEW_HISTORY_MAX_AGE_DAYS", 0.0) or None
    rows = positive_int(env, "STABLENEW_HISTORY_MAX_ROWS", 0) or None
    interval = positive_float(env, "STABLENEW_HISTORY_RETENTION_INTERVAL_SECONDS",
                              RetentionPolicy().interval_seconds)
    return RetentionPolicy(max_age=None if days is None else timedelta(days=days),
                           max_rows=rows, interval_seconds=interval)


def retention_task(core: HistoryCore, policy: RetentionPolicy) -> PeriodicTask:
    """Applies the policy at start and every interval after, if it asks for anything."""
    return PeriodicTask("history-retention", policy.interval_seconds,
                        lambda: core.enforce(policy), run_first=True, enabled=policy.enabled)
