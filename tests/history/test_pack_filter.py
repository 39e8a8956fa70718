"""The pack filter finds a job by any prompt pack its prompts came from: a job that mixes packs
(its origin names none, each entry names its own) is found by each of them, in lists, pages,
GetLatestJob, exports and watchers; a record known only from its results is found by theirs;
deleting a record takes it out of its packs; and a database written before the pack index
existed is indexed when it is opened (and its records' images counted, migration 4)."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from stablenew.contract.model import (
    EntryResult,
    EntryStatus,
    ImageRef,
    Job,
    JobOrigin,
    JobState,
)
from stablenew.history import app
from stablenew.history.domain import StateChanged
from stablenew.history.store import HistoryStore
from stablenew.history.store.rows import (
    INSERT_ENTRY,
    INSERT_IMAGE,
    PROVENANCE_IMPORTED,
    entry_row,
    job_to_row,
    result_rows,
)
from stablenew.history.store.schema import MIGRATIONS
from stablenew.runtime.sqlite_db import open_database
from stablenew.v1 import history_service_pb2 as pb
from stablenew.v1 import job_pb2, pipeline_pb2
from tests.history.records import T0, Records, entry
from tests.service_harness import wait_for

CASTLES, PORTRAITS, FORESTS = "pack-castles", "pack-portraits", "pack-forests"


def minute(n: int) -> timedelta:
    return timedelta(minutes=n)


def stamp(minutes: int) -> Timestamp:
    made = Timestamp()
    made.FromDatetime(T0 + minute(minutes))
    return made


@pytest.fixture
def packs(records: Records) -> Records:
    """a: castles; b: portraits; m: castles and portraits mixed; n: manual; o: forests and
    portraits mixed (a to o, oldest first)."""
    add = records.add
    add(JobState.COMPLETED, T0 + minute(1), job_id="a", pack_id=CASTLES)
    add(JobState.FAILED, T0 + minute(2), job_id="b", pack_id=PORTRAITS)
    add(JobState.COMPLETED, T0 + minute(3), job_id="m", prompts=("castle in fog", "old sailor"),
        entry_packs=(CASTLES, PORTRAITS))
    add(JobState.COMPLETED, T0 + minute(4), job_id="n")
    add(JobState.QUEUED, T0 + minute(5), job_id="o", prompts=("pines", "a knight", "moss"),
        entry_packs=(FORESTS, PORTRAITS, FORESTS))
    return records


def test_a_job_that_mixes_packs_is_found_by_each_of_them(packs: Records) -> None:
    assert packs.get("m").job.origin.prompt_pack_id == ""
    assert packs.list_ids(prompt_pack_id=CASTLES) == ["m", "a"]
    assert packs.list_ids(prompt_pack_id=PORTRAITS) == ["o", "m", "b"]
    assert packs.list_ids(prompt_pack_id=FORESTS) == ["o"]
    assert packs.list_ids(prompt_pack_id="pack-unknown") == []


@pytest.mark.parametrize(("fields", "expected"), [
    ({"states": [job_pb2.JOB_STATE_COMPLETED]}, ["m"]),
    ({"states": [job_pb2.JOB_STATE_QUEUED, job_pb2.JOB_STATE_FAILED]}, ["o", "b"]),
    ({"text": "sailor"}, ["m"]),
    ({"text": "kn"}, ["o"]),  # too short for the trigram index: the ordered scan
    ({"prompt_source": pipeline_pb2.PROMPT_SOURCE_PACK}, ["o", "m", "b"]),
    ({"created_after": stamp(3)}, ["o", "m"]),
    ({"created_after": stamp(2), "created_before": stamp(5)}, ["m", "b"]),
    ({"bookmarked": False}, ["o", "m", "b"]),
])
def test_the_pack_filter_with_the_others(packs: Records, fields: dict[str, Any],
                                         expected: list[str]) -> None:
    assert packs.list_ids(prompt_pack_id=PORTRAITS, **fields) == expected


def test_pages_of_a_pack_follow_their_tokens(packs: Records) -> None:
    for n in range(6):
        packs.add(JobState.COMPLETED, T0 + minute(10 + n), job_id=f"p{n}",
                  prompts=("x", "y"), entry_packs=(PORTRAITS, FORESTS if n % 2 else CASTLES))
    pages, token = [], ""
    while True:
        reply = packs.stub.ListJobs(pb.HistoryServiceListJobsRequest(
            filter=pb.JobFilter(prompt_pack_id=PORTRAITS), page_size=2, page_token=token))
        pages.append([job.job_id for job in reply.jobs])
        token = reply.next_page_token
        if not token:
            break
    assert pages == [["p5", "p4"], ["p3", "p2"], ["p1", "p0"], ["o", "m"], ["b"]]


def test_latest_and_export_by_pack(packs: Records) -> None:
    latest = packs.stub.GetLatestJob(pb.GetLatestJobRequest(
        filter=pb.JobFilter(prompt_pack_id=CASTLES)))
    assert latest.job.job_id == "m"
    exported = list(packs.stub.ExportHistory(pb.ExportHistoryRequest(
        filter=pb.JobFilter(prompt_pack_id=FORESTS))))
    assert [item.job.job_id for item in exported] == ["o"]
    assert [e.origin.prompt_pack_id for e in exported[0].job.entries] == [
        FORESTS, PORTRAITS, FORESTS]


def test_a_watcher_of_a_pack_sees_a_job_that_mixes_it_in(packs: Records) -> None:
    stream = packs.stub.WatchHistory(pb.WatchHistoryRequest(
        filter=pb.JobFilter(prompt_pack_id=FORESTS)), timeout=30)
    received: list[pb.WatchHistoryResponse] = []

    def read() -> None:
        with contextlib.suppress(grpc.RpcError):  # the cancel at the end
            for reply in stream:
                received.append(reply)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        wait_for(lambda: packs.core.broadcaster.count == 1, "the watcher to subscribe")
        packs.add(JobState.QUEUED, T0 + minute(30), job_id="late-mixed", prompts=("a", "b"),
                  entry_packs=(CASTLES, FORESTS))
        packs.add(JobState.QUEUED, T0 + minute(31), job_id="late-other", pack_id=CASTLES)
        packs.stub.UpdateJob(pb.UpdateJobRequest(job_id="o", label="renamed"))
        wait_for(lambda: {r.job.job_id for r in received} >= {"late-mixed", "o"},
                 "the mixed jobs' changes")
    finally:
        stream.cancel()  # type: ignore[no-untyped-call]
        reader.join(timeout=10)
    assert "late-other" not in {r.job.job_id for r in received}


def test_a_record_known_from_its_results_is_found_by_their_packs(packs: Records) -> None:
    # Its submission never reached the history and the queue forgot it: the terminal event's
    # results are all there is.
    packs.event("ghost", T0 + minute(40), StateChanged(
        JobState.RUNNING, JobState.COMPLETED, "completed", "gpu-1", 1, "",
        [EntryResult(entry_index=0, prompt="lost prompt", status=EntryStatus.COMPLETED,
                     prompt_pack_id=FORESTS)]))
    assert packs.get("ghost").job.entries == []
    assert packs.list_ids(prompt_pack_id=FORESTS) == ["ghost", "o"]


def test_a_deleted_job_leaves_its_packs(packs: Records) -> None:
    packs.stub.DeleteJob(pb.DeleteJobRequest(job_id="m"))
    assert packs.list_ids(prompt_pack_id=CASTLES) == ["a"]
    assert packs.list_ids(prompt_pack_id=PORTRAITS) == ["o", "b"]
    left = packs.store.db.execute("SELECT DISTINCT job_id FROM job_packs").fetchall()
    assert sorted(row[0] for row in left) == ["a", "b", "o"]


def test_an_imported_record_is_found_by_its_origin_pack(packs: Records) -> None:
    record = job_pb2.Job(job_id="desk-1", state=job_pb2.JOB_STATE_COMPLETED,
                         origin=job_pb2.JobOrigin(prompt_pack_id=FORESTS))
    record.create_time.FromDatetime(T0)
    packs.stub.ImportHistory(pb.ImportHistoryRequest(jobs=[pb.ImportedJob(job=record)]))
    assert packs.list_ids(prompt_pack_id=FORESTS) == ["o", "desk-1"]


def write_first_schema_history(path: Path) -> None:
    """A history database as the schema before the pack index left it (its first DDL and its
    rows): a single-pack job, one mixing packs, a manual one, one known only from its results,
    and an import naming a pack in its origin."""
    open_database(path, MIGRATIONS[:1]).close()

    def job(job_id: str, minutes: int, origin_pack: str = "") -> Job:
        return Job(job_id=job_id, state=JobState.COMPLETED, create_time=T0 + minute(minutes),
                   update_time=T0 + minute(minutes), queue_position=-1,
                   origin=JobOrigin(prompt_pack_id=origin_pack))

    with sqlite3.connect(path) as db:
        entries = {"single": [entry("a", CASTLES)],
                   "mixed": [entry("b", CASTLES), entry("c", PORTRAITS, 1)],
                   "manual": [entry("d")]}
        for ref, (job_id, minutes, origin_pack) in enumerate(
                [("single", 1, CASTLES), ("mixed", 2, ""), ("manual", 3, ""),
                 ("results-only", 4, "")], start=1):
            insert_first_schema_job(db, {"id": ref,
                                         **job_to_row(job(job_id, minutes, origin_pack))})
            db.executemany(INSERT_ENTRY, [entry_row(ref, e) for e in entries.get(job_id, [])])
        results, images = result_rows(4, [EntryResult(
            prompt_pack_id=FORESTS, images=[ImageRef(path="a.png"), ImageRef(path="b.png")])])
        # Without the ADetailer outcomes of migration 5: the first schema's twelve columns.
        db.executemany(f"INSERT INTO results VALUES ({', '.join('?' * 12)})",
                       [row[:12] for row in results])
        db.executemany(INSERT_IMAGE, images)
        insert_first_schema_job(db, job_to_row(job("imported", 5, FORESTS),
                                               PROVENANCE_IMPORTED))


def insert_first_schema_job(db: sqlite3.Connection, row: dict[str, Any]) -> None:
    """A `jobs` row as the first schema held it (without the image count of migration 4)."""
    columns = [name for name in row if name != "image_count"]
    db.execute(f"INSERT INTO jobs ({', '.join(columns)}) "
               f"VALUES ({', '.join(':' + name for name in columns)})", row)


def test_a_database_from_before_the_pack_index_is_indexed_when_opened(tmp_path: Path) -> None:
    data = tmp_path / "records-data"
    write_first_schema_history(data / app.DATABASE_NAME)
    migrated = Records(data)
    try:
        assert migrated.list_ids(prompt_pack_id=CASTLES) == ["mixed", "single"]
        assert migrated.list_ids(prompt_pack_id=PORTRAITS) == ["mixed"]
        assert migrated.list_ids(prompt_pack_id=FORESTS) == ["imported", "results-only"]
        assert migrated.list_ids() == ["imported", "results-only", "manual", "mixed", "single"]
        # Migration 4 counts the images of the records written before it.
        listed = migrated.stub.ListJobs(pb.HistoryServiceListJobsRequest(), timeout=10).jobs
        assert {job.job_id: job.image_count for job in listed} == {
            "imported": 0, "results-only": 2, "manual": 0, "mixed": 0, "single": 0}
        (result,) = migrated.get("results-only").job.results
        assert (result.prompt_pack_id, list(result.adetailer_outcomes)) == (FORESTS, [])
    finally:
        migrated.close()
    store = HistoryStore(data / app.DATABASE_NAME)
    try:
        indexes = [row[0] for row in store.db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'jobs'")]
        assert "jobs_pack" not in indexes
        assert store.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    finally:
        store.close()
