"""ListJobs filters one by one and in the combinations the GUI uses, GetLatestJob, views, filter
validation, and the query plans that keep every filtered page an index range scan."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from stablenew.contract.errors import Code
from stablenew.contract.model import JobSource, JobState, PromptSource, RunMode
from stablenew.history import domain
from stablenew.history.domain import JobFilter
from stablenew.history.store import queries
from stablenew.history.store.reads import Reader
from stablenew.runtime.rich_status import details_of
from stablenew.v1 import history_service_pb2 as pb
from stablenew.v1 import job_pb2, pipeline_pb2
from tests.history.records import T0, Records

COMPLETED, FAILED, CANCELLED = (job_pb2.JOB_STATE_COMPLETED, job_pb2.JOB_STATE_FAILED,
                                job_pb2.JOB_STATE_CANCELLED)
QUEUED, RUNNING = job_pb2.JOB_STATE_QUEUED, job_pb2.JOB_STATE_RUNNING


def minutes(n: int) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(T0 + timedelta(minutes=n))
    return stamp


@pytest.fixture
def gui(records: Records) -> Iterator[Records]:
    """Seven jobs, a to g, created a minute apart in that order (g is the newest)."""
    add = records.add
    add(JobState.COMPLETED, T0 + timedelta(minutes=1), job_id="a",
        prompts=("a red castle on a hill",))
    add(JobState.FAILED, T0 + timedelta(minutes=2), RunMode.DIRECT, job_id="b",
        label="Keeper", prompts=("portrait of an old sailor",))
    add(JobState.COMPLETED, T0 + timedelta(minutes=3), pack_id="pack-castles", job_id="c",
        prompts=("castle in fog", "castle at night"))
    add(JobState.CANCELLED, T0 + timedelta(minutes=4), pack_id="pack-portraits", job_id="d",
        prompts=("portrait of a knight",))
    add(JobState.RUNNING, T0 + timedelta(minutes=5), RunMode.DIRECT, job_id="e",
        prompts=("Sunset over the OCEAN, 100% vivid",))
    add(JobState.QUEUED, T0 + timedelta(minutes=6), pack_id="pack-castles", job_id="f",
        prompts=("castle ruins",))
    add(JobState.COMPLETED, T0 + timedelta(minutes=7), RunMode.DIRECT, job_id="g",
        source=JobSource.RUN, prompts=("forest path",))
    for job_id in ("b", "c"):
        records.stub.UpdateJob(pb.UpdateJobRequest(job_id=job_id, bookmarked=True))
    yield records


@pytest.fixture(params=["trigram index", "ordered scan"])
def text_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run text tests both ways: every word rare enough for the trigram index, or none."""
    if request.param == "ordered scan":
        monkeypatch.setattr(queries, "TEXT_INDEX_LIMIT", 0)
    return str(request.param)


def test_no_filter_lists_everything_newest_first(gui: Records) -> None:
    assert gui.list_ids() == ["g", "f", "e", "d", "c", "b", "a"]


@pytest.mark.parametrize(("states", "expected"), [
    ([COMPLETED], ["g", "c", "a"]),
    ([FAILED], ["b"]),
    ([FAILED, CANCELLED], ["d", "b"]),
    ([QUEUED, RUNNING], ["f", "e"]),
    ([COMPLETED, FAILED, CANCELLED], ["g", "d", "c", "b", "a"]),
    ([COMPLETED, COMPLETED], ["g", "c", "a"]),
])
def test_states(gui: Records, states: list[int], expected: list[str]) -> None:
    assert gui.list_ids(states=states) == expected


@pytest.mark.parametrize(("fields", "expected"), [
    ({"run_mode": job_pb2.RUN_MODE_DIRECT}, ["g", "e", "b"]),
    ({"run_mode": job_pb2.RUN_MODE_QUEUE}, ["f", "d", "c", "a"]),
    ({"source": job_pb2.JOB_SOURCE_RUN}, ["g"]),
    ({"source": job_pb2.JOB_SOURCE_RUN_NOW}, ["e", "b"]),
    ({"source": job_pb2.JOB_SOURCE_ADD_TO_QUEUE}, ["f", "d", "c", "a"]),
    ({"prompt_source": pipeline_pb2.PROMPT_SOURCE_PACK}, ["f", "d", "c"]),
    ({"prompt_source": pipeline_pb2.PROMPT_SOURCE_MANUAL}, ["g", "e", "b", "a"]),
    ({"prompt_pack_id": "pack-castles"}, ["f", "c"]),
    ({"prompt_pack_id": "no-such-pack"}, []),
    ({"bookmarked": True}, ["c", "b"]),
    ({"bookmarked": False}, ["g", "f", "e", "d", "a"]),
])
def test_single_filters(gui: Records, fields: dict[str, Any], expected: list[str]) -> None:
    assert gui.list_ids(**fields) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("castle", ["f", "c", "a"]),
    ("CASTLE", ["f", "c", "a"]),
    ("  Castle ", ["f", "c", "a"]),
    ("castle at night", ["c"]),
    ("ocean", ["e"]),
    ("100% vivid", ["e"]),
    ("keeper", ["b"]),  # the label
    ("KEEP", ["b"]),
    ("of", ["d", "b"]),  # shorter than a trigram: always the ordered scan
    ("_", []),
    ("dragon", []),
])
def test_text_in_prompts_and_label(gui: Records, text_path: str, text: str,
                                   expected: list[str]) -> None:
    assert gui.list_ids(text=text) == expected, text_path


def test_a_changed_label_is_found_by_text(gui: Records, text_path: str) -> None:
    gui.stub.UpdateJob(pb.UpdateJobRequest(job_id="g", label="Winner"))
    assert gui.list_ids(text="winner") == ["g"]
    gui.stub.UpdateJob(pb.UpdateJobRequest(job_id="g", label=""))
    assert gui.list_ids(text="winner") == []


def test_a_refreshed_search_text_is_that_of_the_full_record(gui: Records) -> None:
    for job_id in ("a", "b", "g"):
        gui.core.update(job_id, "Refreshed LABEL", None)
        stored = gui.store.load(job_id, full=True)
        assert stored is not None
        assert gui.store.search_text(stored.ref) == domain.search_text(stored.job)
        assert gui.store.search_text(stored.ref).startswith("refreshed label\n")


def test_time_range_is_half_open(gui: Records) -> None:
    assert gui.list_ids(created_after=minutes(3), created_before=minutes(6)) == ["e", "d", "c"]
    assert gui.list_ids(created_after=minutes(6)) == ["g", "f"]
    assert gui.list_ids(created_before=minutes(2)) == ["a"]
    assert gui.list_ids(created_after=minutes(4), created_before=minutes(4)) == []


@pytest.mark.parametrize(("fields", "expected"), [
    # The history tab: finished jobs with a search.
    ({"states": [COMPLETED, FAILED, CANCELLED], "text": "castle"}, ["c", "a"]),
    # "What failed in Run now?"
    ({"states": [FAILED], "run_mode": job_pb2.RUN_MODE_DIRECT}, ["b"]),
    # A pack's finished jobs.
    ({"prompt_pack_id": "pack-castles", "states": [COMPLETED]}, ["c"]),
    ({"prompt_pack_id": "pack-castles", "states": [COMPLETED, QUEUED]}, ["f", "c"]),
    ({"prompt_pack_id": "pack-castles", "text": "ruins"}, ["f"]),
    # Favourites.
    ({"bookmarked": True, "states": [COMPLETED]}, ["c"]),
    ({"bookmarked": True, "text": "sailor"}, ["b"]),
    # Pack prompts with a word, within a day's window.
    ({"prompt_source": pipeline_pb2.PROMPT_SOURCE_PACK, "text": "portrait"}, ["d"]),
    ({"text": "castle", "created_after": minutes(2), "created_before": minutes(6)}, ["c"]),
    ({"run_mode": job_pb2.RUN_MODE_DIRECT, "source": job_pb2.JOB_SOURCE_RUN_NOW,
      "states": [RUNNING, FAILED]}, ["e", "b"]),
    # Everything at once, matching exactly one job.
    ({"states": [COMPLETED, CANCELLED], "run_mode": job_pb2.RUN_MODE_QUEUE,
      "source": job_pb2.JOB_SOURCE_ADD_TO_QUEUE,
      "prompt_source": pipeline_pb2.PROMPT_SOURCE_PACK, "prompt_pack_id": "pack-castles",
      "text": "fog", "created_after": minutes(1), "created_before": minutes(7),
      "bookmarked": True}, ["c"]),
])
def test_combinations_the_gui_uses(gui: Records, text_path: str, fields: dict[str, Any],
                                   expected: list[str]) -> None:
    assert gui.list_ids(**fields) == expected, text_path


def test_get_latest_job(gui: Records) -> None:
    latest = gui.stub.GetLatestJob(pb.GetLatestJobRequest())
    assert latest.job.job_id == "g"
    failed = gui.stub.GetLatestJob(pb.GetLatestJobRequest(filter=pb.JobFilter(states=[FAILED])))
    assert failed.job.job_id == "b"
    assert not failed.job.entries  # a basic record
    with pytest.raises(grpc.RpcError) as caught:
        gui.stub.GetLatestJob(pb.GetLatestJobRequest(filter=pb.JobFilter(text="dragon")))
    details = details_of(caught.value)
    assert (details.code, details.reason) == (Code.NOT_FOUND, "JOB_NOT_FOUND")


def test_views(gui: Records) -> None:
    basic = gui.stub.ListJobs(pb.HistoryServiceListJobsRequest(
        filter=pb.JobFilter(prompt_pack_id="pack-castles")))
    assert [len(job.entries) for job in basic.jobs] == [0, 0]
    full = gui.stub.ListJobs(pb.HistoryServiceListJobsRequest(
        filter=pb.JobFilter(prompt_pack_id="pack-castles"), view=job_pb2.JOB_VIEW_FULL))
    assert [len(job.entries) for job in full.jobs] == [1, 2]
    assert [len(job.results) for job in full.jobs] == [0, 2]
    assert full.jobs[1].entries[1].prompt == "castle at night"


@pytest.mark.parametrize(("request_filter", "field"), [
    (pb.JobFilter(created_after=minutes(5), created_before=minutes(4)), "filter.created_after"),
    (pb.JobFilter(states=[job_pb2.JOB_STATE_UNSPECIFIED]), "filter.states[0]"),
    (pb.JobFilter(states=[COMPLETED, 42]), "filter.states[1]"),  # type: ignore[list-item]
    (pb.JobFilter(run_mode=9), "filter.run_mode"),  # type: ignore[arg-type]
    (pb.JobFilter(source=9), "filter.source"),  # type: ignore[arg-type]
    (pb.JobFilter(prompt_source=9), "filter.prompt_source"),  # type: ignore[arg-type]
])
def test_a_bad_filter_is_invalid_argument(gui: Records, request_filter: pb.JobFilter,
                                          field: str) -> None:
    for call in (lambda: gui.stub.ListJobs(pb.HistoryServiceListJobsRequest(
                     filter=request_filter)),
                 lambda: gui.stub.GetLatestJob(pb.GetLatestJobRequest(filter=request_filter)),
                 lambda: list(gui.stub.ExportHistory(pb.ExportHistoryRequest(
                     filter=request_filter)))):
        with pytest.raises(grpc.RpcError) as caught:
            call()
        details = details_of(caught.value)
        assert details.code == Code.INVALID_ARGUMENT
        assert [v.field for v in details.violations] == [field]


def plan(reader: Reader, job_filter: JobFilter,
         after: tuple[int, str] | None = None) -> str:
    query = reader.list_query(job_filter, after, 50)
    rows = reader.db.execute("EXPLAIN QUERY PLAN " + query.sql, query.params).fetchall()
    return " | ".join(str(row[3]) for row in rows)


PACK_SCAN = "SEARCH job_packs USING PRIMARY KEY (pack_id=?"


@pytest.mark.parametrize(("job_filter", "scan"), [
    (JobFilter(), "INDEX jobs_created"),
    (JobFilter(states=(JobState.COMPLETED,)), "INDEX jobs_state"),
    (JobFilter(states=(JobState.COMPLETED, JobState.FAILED)), "INDEX jobs_state"),
    (JobFilter(run_mode=RunMode.DIRECT), "INDEX jobs_run_mode"),
    (JobFilter(source=JobSource.RUN), "INDEX jobs_source"),
    (JobFilter(prompt_source=PromptSource.PACK), "INDEX jobs_prompt_source"),
    (JobFilter(prompt_pack_id="pack-castles"), PACK_SCAN),
    (JobFilter(prompt_pack_id="pack-castles", states=(JobState.COMPLETED, JobState.QUEUED),
               text="ru"), PACK_SCAN),  # a text too short for the trigram index
    (JobFilter(bookmarked=True), "INDEX jobs_bookmarked"),
    (JobFilter(states=(JobState.FAILED,), run_mode=RunMode.DIRECT, text="ai"),
     "INDEX jobs_state"),
])
def test_every_filter_is_an_index_range_scan_without_sorting(
        gui: Records, job_filter: JobFilter, scan: str) -> None:
    """What makes page 10,000 cost what page 1 costs: the page is read in index order from
    the keyset position (no OFFSET, no sort of all matches). The pack filter reads the pack's
    rows of job_packs, kept in list order, and each one's record by its rowid."""
    with gui.store.reading() as reader:
        for after in (None, (1, "zzz")):
            described = plan(reader, job_filter, after)
            assert scan in described, described
            if after is not None and scan == PACK_SCAN:
                assert "(pack_id=? AND (create_time,job_id)<(?,?))" in described, described
            if len(job_filter.states) < 2 or scan == PACK_SCAN:
                assert "TEMP B-TREE" not in described, described
            else:  # one ordered scan per state, then at most states x page_size rows sorted
                assert described.count(scan) == len(job_filter.states), described
