"""PruneHistory (age, states, bookmarks, dry run), the automatic retention policy (maximum age
and rows, bookmarked and active jobs kept), small delete batches, and disk space given back."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from stablenew.contract.errors import Code
from stablenew.contract.model import JobState
from stablenew.history import core as core_module
from stablenew.history.domain import RetentionPolicy
from stablenew.history.retention import retention_policy
from stablenew.history.store import HistoryStore
from stablenew.runtime.rich_status import details_of
from stablenew.v1 import history_service_pb2 as pb
from stablenew.v1 import job_pb2
from tests.history.harness import HistoryHarness
from tests.history.records import T0, Records
from tests.service_harness import wait_for

DAY = timedelta(days=1)


def stamp(days: float) -> Timestamp:
    value = Timestamp()
    value.FromDatetime(T0 + timedelta(days=days))
    return value


def prune(records: Records, **fields: object) -> int:
    reply = records.stub.PruneHistory(pb.PruneHistoryRequest(**fields))  # type: ignore[arg-type]
    return int(reply.removed_count)


@pytest.fixture
def aged(records: Records) -> Records:
    """Jobs a day apart, oldest first: o1..o4 finished, q5 queued, r6 running, o7 finished;
    o2 is bookmarked."""
    states = [JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED, JobState.COMPLETED,
              JobState.QUEUED, JobState.RUNNING, JobState.COMPLETED]
    names = ["o1", "o2", "o3", "o4", "q5", "r6", "o7"]
    for day, (name, state) in enumerate(zip(names, states, strict=True), start=1):
        records.add(state, T0 + day * DAY, job_id=name)
    records.stub.UpdateJob(pb.UpdateJobRequest(job_id="o2", bookmarked=True))
    return records


def test_prune_older_than_takes_finished_jobs_only_by_default(aged: Records) -> None:
    assert prune(aged, older_than=stamp(6), dry_run=True) == 4
    assert aged.list_ids() == ["o7", "r6", "q5", "o4", "o3", "o2", "o1"]  # a dry run
    assert prune(aged, older_than=stamp(6)) == 4
    assert aged.list_ids() == ["o7", "r6", "q5"]


def test_prune_keeps_bookmarked_jobs_when_asked(aged: Records) -> None:
    assert prune(aged, older_than=stamp(4), keep_bookmarked=True) == 2
    assert aged.list_ids() == ["o7", "r6", "q5", "o4", "o2"]
    assert prune(aged, older_than=stamp(4)) == 1
    assert aged.list_ids() == ["o7", "r6", "q5", "o4"]


def test_prune_by_state_and_without_an_age(aged: Records) -> None:
    assert prune(aged, states=[job_pb2.JOB_STATE_COMPLETED]) == 3
    assert aged.list_ids() == ["r6", "q5", "o3", "o2"]
    assert prune(aged, states=[job_pb2.JOB_STATE_QUEUED, job_pb2.JOB_STATE_FAILED],
                 keep_bookmarked=True) == 1
    assert aged.list_ids() == ["r6", "o3", "o2"]
    assert prune(aged) == 2  # every finished job
    assert aged.list_ids() == ["r6"]


def test_prune_refuses_bad_states(aged: Records) -> None:
    for states, field in (([job_pb2.JOB_STATE_UNSPECIFIED], "states[0]"),
                          ([job_pb2.JOB_STATE_COMPLETED, 17], "states[1]")):
        with pytest.raises(grpc.RpcError) as caught:
            prune(aged, states=states)
        details = details_of(caught.value)
        assert details.code == Code.INVALID_ARGUMENT
        assert [v.field for v in details.violations] == [field]
    assert len(aged.list_ids()) == 7


def test_the_automatic_policy_by_age(aged: Records) -> None:
    policy = RetentionPolicy(max_age=timedelta(days=3.5))
    # "Now" is day 7.2: jobs created before day 3.7 go, the bookmarked o2 and active ones stay.
    assert aged.core.enforce(policy, now=T0 + timedelta(days=7.2)) == 2
    assert aged.list_ids() == ["o7", "r6", "q5", "o4", "o2"]
    assert aged.core.enforce(policy, now=T0 + timedelta(days=7.2)) == 0


def test_the_automatic_policy_by_rows(aged: Records) -> None:
    assert aged.core.enforce(RetentionPolicy(max_rows=5)) == 2
    assert aged.list_ids() == ["o7", "r6", "q5", "o4", "o2"]
    # Beyond what may go: active and bookmarked jobs stay even above the limit.
    assert aged.core.enforce(RetentionPolicy(max_rows=1)) == 2
    assert aged.list_ids() == ["r6", "q5", "o2"]
    assert aged.core.enforce(RetentionPolicy(max_rows=100)) == 0


def test_both_limits_together(aged: Records) -> None:
    policy = RetentionPolicy(max_age=timedelta(days=5.5), max_rows=4)
    assert aged.core.enforce(policy, now=T0 + timedelta(days=7.2)) == 3
    assert aged.list_ids() == ["o7", "r6", "q5", "o2"]


def test_the_retention_interval_defaults_to_five_minutes() -> None:
    assert RetentionPolicy().interval_seconds == 300.0
    assert retention_policy({}).interval_seconds == 300.0
    assert retention_policy(
        {"STABLENEW_HISTORY_RETENTION_INTERVAL_SECONDS": "42"}).interval_seconds == 42.0


def test_deletes_go_in_small_batches(records: Records, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core_module, "DELETE_BATCH", 7)
    for n in range(40):
        records.add(JobState.COMPLETED, T0 + timedelta(seconds=n))
    sizes: list[int] = []
    real = HistoryStore.delete_jobs

    def spy(self: HistoryStore, refs: list[int]) -> list[str]:
        sizes.append(len(refs))
        return real(self, refs)

    monkeypatch.setattr(HistoryStore, "delete_jobs", spy)
    assert records.core.enforce(RetentionPolicy(max_rows=5)) == 35
    assert max(sizes) <= 7 and sum(sizes) == 35
    assert prune(records) == 5
    assert max(sizes) <= 7


def test_pruning_gives_disk_space_back(records: Records) -> None:
    long_prompts = tuple(f"{n} " + "a very detailed prompt " * 200 for n in range(3))
    for n in range(150):
        records.add(JobState.COMPLETED, T0 + timedelta(seconds=n), prompts=long_prompts)
    db = records.store.db
    assert db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # INCREMENTAL
    before = db.execute("PRAGMA page_count").fetchone()[0]
    assert prune(records) == 150
    after = db.execute("PRAGMA page_count").fetchone()[0]
    assert db.execute("PRAGMA freelist_count").fetchone()[0] == 0
    assert after < before / 5, (before, after)
    # The store's background checkpoint may hold the checkpoint lock right now (busy = 1):
    # the shrink is asserted after a checkpoint that ran to the end.
    wait_for(lambda: db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0,
             "a checkpoint that is not busy")
    size = (records.data_dir / "history.sqlite3").stat().st_size
    assert size <= after * db.execute("PRAGMA page_size").fetchone()[0]


def test_the_service_applies_its_policy_in_the_background(tmp_path: Path) -> None:
    history = HistoryHarness(tmp_path / "data", env={
        "STABLENEW_HISTORY_INGEST": "off", "STABLENEW_HISTORY_MAX_ROWS": "3",
        "STABLENEW_HISTORY_RETENTION_INTERVAL_SECONDS": "0.05"})
    history.start()
    try:
        jobs = []
        for n in range(6):
            job = job_pb2.Job(job_id=f"old-{n}", state=job_pb2.JOB_STATE_COMPLETED,
                              payload_summary=f"imported {n}")
            job.create_time.FromDatetime(T0 + timedelta(minutes=n))
            jobs.append(pb.ImportedJob(job=job))
        history.stub.ImportHistory(pb.ImportHistoryRequest(jobs=jobs))
        wait_for(lambda: history.list_ids() == ["old-5", "old-4", "old-3"], "the policy")
    finally:
        history.stop()
