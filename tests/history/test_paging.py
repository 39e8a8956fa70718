"""Paging edges: the empty history, exactly one page, the default and maximum page sizes, a
negative size, ties on create_time, walking every page of a filter, tampered and foreign tokens,
and ListJobEvents' pages."""

from __future__ import annotations

import base64
from datetime import timedelta

import grpc
import pytest

from stablenew.contract.errors import Code
from stablenew.contract.model import JobState
from stablenew.runtime.rich_status import details_of
from stablenew.v1 import history_service_pb2 as pb
from stablenew.v1 import job_pb2
from tests.history.records import T0, Records


def page(records: Records, size: int = 0, token: str = "",
         **filter_fields: object) -> pb.HistoryServiceListJobsResponse:
    request = pb.HistoryServiceListJobsRequest(
        filter=pb.JobFilter(**filter_fields), page_size=size,  # type: ignore[arg-type]
        page_token=token)
    return records.stub.ListJobs(request, timeout=30)


def walk(records: Records, size: int, **filter_fields: object) -> list[list[str]]:
    """Every page's job ids, following the tokens."""
    pages, token = [], ""
    while True:
        reply = page(records, size, token, **filter_fields)
        pages.append([job.job_id for job in reply.jobs])
        token = reply.next_page_token
        if not token:
            return pages


def add_many(records: Records, count: int, state: JobState = JobState.QUEUED) -> list[str]:
    """`count` jobs, oldest first."""
    return [records.add(state, T0 + timedelta(seconds=n)) for n in range(count)]


def invalid(call: object) -> tuple[str, list[str]]:
    assert callable(call)
    with pytest.raises(grpc.RpcError) as caught:
        call()
    details = details_of(caught.value)
    assert details.code == Code.INVALID_ARGUMENT
    return details.reason, [v.field for v in details.violations]


def test_an_empty_history_has_one_empty_page(records: Records) -> None:
    reply = page(records)
    assert list(reply.jobs) == []
    assert reply.next_page_token == ""


def test_exactly_one_default_page_has_no_token(records: Records) -> None:
    ids = add_many(records, 50)
    reply = page(records)  # page_size 0: the default, 50
    assert [job.job_id for job in reply.jobs] == ids[::-1]
    assert reply.next_page_token == ""


def test_one_more_than_a_page_gives_a_second_page_of_one(records: Records) -> None:
    ids = add_many(records, 51)
    assert walk(records, 0) == [ids[:0:-1], [ids[0]]]


def test_page_size_1000_and_larger_sizes_are_lowered_to_it(records: Records) -> None:
    ids = add_many(records, 1001)
    first = page(records, 1000)
    assert len(first.jobs) == 1000 and first.next_page_token
    capped = page(records, 5000)
    assert [job.job_id for job in capped.jobs] == [job.job_id for job in first.jobs]
    last = page(records, 1000, first.next_page_token)
    assert [job.job_id for job in last.jobs] == [ids[0]]
    assert last.next_page_token == ""


def test_a_negative_page_size_is_invalid(records: Records) -> None:
    assert invalid(lambda: page(records, -1)) == ("INVALID_FIELD", ["page_size"])
    assert invalid(lambda: records.stub.ListJobEvents(pb.ListJobEventsRequest(
        job_id="x", page_size=-5))) == ("INVALID_FIELD", ["page_size"])


def test_ties_on_create_time_are_ordered_by_job_id_and_paged_without_loss(
        records: Records) -> None:
    same = T0 + timedelta(hours=1)
    for job_id in ("tie-c", "tie-a", "tie-e", "tie-b", "tie-d"):
        records.add(JobState.COMPLETED, same, job_id=job_id)
    records.add(JobState.COMPLETED, same + timedelta(microseconds=1), job_id="after")
    records.add(JobState.COMPLETED, same - timedelta(microseconds=1), job_id="before")
    expected = ["after", "tie-e", "tie-d", "tie-c", "tie-b", "tie-a", "before"]
    assert walk(records, 1000) == [expected]
    for size in (1, 2, 3, 4):
        pages = walk(records, size)
        assert [job_id for each in pages for job_id in each] == expected, size
        assert all(len(each) == size for each in pages[:-1])


def test_walking_a_filter_returns_each_match_once_in_order(records: Records) -> None:
    made = []
    for n in range(60):
        state = (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED)[n % 3]
        made.append((records.add(state, T0 + timedelta(seconds=n // 2)), state))
    failed_or_cancelled = [job_id for job_id, state in reversed(made)
                           if state != JobState.COMPLETED]
    for size in (1, 7, 40):
        pages = walk(records, size, states=[job_pb2.JOB_STATE_FAILED,
                                            job_pb2.JOB_STATE_CANCELLED])
        flat = [job_id for each in pages for job_id in each]
        # Same create_time pairs are ordered by job id, which here is creation order.
        assert sorted(flat) == sorted(failed_or_cancelled)
        assert len(flat) == len(set(flat)) == 40


def test_a_tampered_token_is_invalid(records: Records) -> None:
    add_many(records, 3)
    token = page(records, 1).next_page_token
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[-2] ^= 1  # one bit of the position
    tampered = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    for bad in (tampered, token[:-3], "not-a-token", token + "x"):
        assert invalid(lambda b=bad: page(records, 1, b)) == (
            "INVALID_PAGE_TOKEN", ["page_token"])


def test_a_token_only_works_for_the_filter_it_was_issued_for(records: Records) -> None:
    add_many(records, 3, JobState.COMPLETED)
    token = page(records, 1, states=[job_pb2.JOB_STATE_COMPLETED]).next_page_token
    assert page(records, 1, token, states=[job_pb2.JOB_STATE_COMPLETED]).jobs
    assert invalid(lambda: page(records, 1, token)) == ("INVALID_PAGE_TOKEN", ["page_token"])
    assert invalid(lambda: page(records, 1, token, text="x")) == (
        "INVALID_PAGE_TOKEN", ["page_token"])
    # Nor for another list.
    assert invalid(lambda: records.stub.ListJobEvents(pb.ListJobEventsRequest(
        job_id="job-00001", page_token=token))) == ("INVALID_PAGE_TOKEN", ["page_token"])


def test_list_job_events_pages(records: Records) -> None:
    job_id = records.add(JobState.COMPLETED)
    seen, token = [], ""
    while True:
        reply = records.stub.ListJobEvents(pb.ListJobEventsRequest(
            job_id=job_id, page_size=1, page_token=token))
        seen += [event.WhichOneof("payload") for event in reply.events]
        token = reply.next_page_token
        if not token:
            break
    assert seen == ["submitted", "state_changed", "state_changed"]
    with pytest.raises(grpc.RpcError) as caught:
        records.stub.ListJobEvents(pb.ListJobEventsRequest(job_id="nope"))
    assert details_of(caught.value).reason == "JOB_NOT_FOUND"
