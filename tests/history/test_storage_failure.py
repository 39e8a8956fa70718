"""A write the database refuses (here: a disk that fills up mid-transaction) answers INTERNAL
STORAGE_FAILURE through the real servicer and changes nothing: the store's one transaction
rolls back, and the next write works."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from stablenew.contract.errors import Code
from stablenew.contract.model import JobState
from stablenew.history.store import HistoryStore
from stablenew.runtime.rich_status import details_of
from stablenew.v1 import history_service_pb2 as pb
from stablenew.v1 import job_pb2
from tests.history.records import T0, Records


def disk_full_in(monkeypatch: pytest.MonkeyPatch, method: str) -> None:
    """Make one store write fail as SQLite does when the disk is full."""
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise sqlite3.OperationalError("database or disk is full")
    monkeypatch.setattr(HistoryStore, method, refuse)


def storage_failure(call: Callable[[], object]) -> str:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    details = details_of(caught.value)
    assert (details.code, details.reason) == (Code.INTERNAL, "STORAGE_FAILURE")
    return details.message


def imported(job_id: str) -> pb.ImportedJob:
    job = job_pb2.Job(job_id=job_id, state=job_pb2.JOB_STATE_COMPLETED)
    job.create_time.FromDatetime(T0)
    return pb.ImportedJob(job=job)


def test_a_refused_update_changes_nothing(records: Records,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    job_id = records.add(JobState.COMPLETED, label="before")
    disk_full_in(monkeypatch, "set_search_text")  # after the label was written
    message = storage_failure(lambda: records.stub.UpdateJob(
        pb.UpdateJobRequest(job_id=job_id, label="after", bookmarked=True)))
    assert "database or disk is full" in message
    job = records.get(job_id).job
    assert (job.label, job.bookmarked) == ("before", False)
    assert records.list_ids(text="after") == []
    monkeypatch.undo()
    records.stub.UpdateJob(pb.UpdateJobRequest(job_id=job_id, label="after"))
    assert records.list_ids(text="after") == [job_id]


def test_a_refused_delete_keeps_the_record(records: Records,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    job_id = records.add(JobState.COMPLETED, pack_id="pack-a")
    real_delete = HistoryStore.delete_jobs

    def delete_then_fail(store: HistoryStore, refs: Any) -> list[str]:
        real_delete(store, refs)
        raise sqlite3.OperationalError("disk I/O error")
    monkeypatch.setattr(HistoryStore, "delete_jobs", delete_then_fail)
    storage_failure(lambda: records.stub.DeleteJob(pb.DeleteJobRequest(job_id=job_id)))
    assert records.get(job_id).job.job_id == job_id
    assert records.list_ids(prompt_pack_id="pack-a") == [job_id]


def test_a_refused_import_imports_none_of_the_request(records: Records,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    real_add = HistoryStore.add_transitions
    calls: list[int] = []

    def fail_the_second(store: HistoryStore, ref: int, transitions: Any) -> None:
        calls.append(ref)
        if len(calls) == 2:
            raise sqlite3.OperationalError("database or disk is full")
        real_add(store, ref, transitions)
    monkeypatch.setattr(HistoryStore, "add_transitions", fail_the_second)
    storage_failure(lambda: records.stub.ImportHistory(pb.ImportHistoryRequest(
        jobs=[imported("old-1"), imported("old-2")])))
    assert records.list_ids() == []
