"""The history's edge refuses what it cannot serve sensibly before doing any work: a text filter,
an id, a label, a page token or a state list past its stated limit is INVALID_ARGUMENT with a
BadRequest violation naming the field, and an id is never echoed back at any length. Also the
RPCs of the ingestion's own reports (GetIngestionStatus, ListQuarantinedEvents) over gRPC, and a
record larger than the server may send read in parts."""

from __future__ import annotations

from collections.abc import Callable
from itertools import islice
from pathlib import Path
from typing import Any

import grpc
import pytest

from stablenew.contract.errors import Code, ErrorReason
from stablenew.history import core, mapping
from stablenew.history.domain import JobFilter
from stablenew.runtime.rich_status import details_of
from stablenew.v1 import history_service_pb2 as pb
from stablenew.v1 import job_pb2
from tests.history.records import Records

MEGABYTE_TEXT = "lighthouse " * 100_000
LONG_ID = "j" * 20_000


def refused(call: Callable[[], Any], field: str) -> str:
    """Asserts the call is INVALID_ARGUMENT INVALID_FIELD naming `field`; returns the message."""
    with pytest.raises(grpc.RpcError) as caught:
        call()
    details = details_of(caught.value)
    assert details.code == Code.INVALID_ARGUMENT, details
    assert details.reason == ErrorReason.INVALID_FIELD.name
    assert [v.field for v in details.violations] == [field]
    assert len(details.message) < 200  # the value itself is never echoed
    return details.message


def test_a_megabyte_text_filter_is_refused_by_every_rpc_that_takes_a_filter(
        records: Records) -> None:
    records.add(prompts=("a lighthouse at dusk",))
    huge = pb.JobFilter(text=MEGABYTE_TEXT)
    stub = records.stub
    calls: list[Callable[[], Any]] = [
        lambda: stub.ListJobs(pb.HistoryServiceListJobsRequest(filter=huge), timeout=10),
        lambda: stub.GetLatestJob(pb.GetLatestJobRequest(filter=huge), timeout=10),
        lambda: list(stub.ExportHistory(pb.ExportHistoryRequest(filter=huge), timeout=10)),
        lambda: list(islice(stub.WatchHistory(pb.WatchHistoryRequest(filter=huge),
                                              timeout=10), 1)),
    ]
    for call in calls:
        message = refused(call, "filter.text")
        assert message == (f"filter.text: at most {mapping.MAX_TEXT_LENGTH} characters "
                           f"(got {len(MEGABYTE_TEXT)})")


def test_a_text_filter_at_the_limit_is_searched(records: Records) -> None:
    prompt = ("a lighthouse at dusk " * 20)[:mapping.MAX_TEXT_LENGTH]
    job_id = records.add(prompts=(prompt,))
    records.add(prompts=("something else",))
    assert records.list_ids(text=prompt.upper()) == [job_id]
    # LIKE wildcards are plain characters of the needle.
    assert records.list_ids(text="%" * mapping.MAX_TEXT_LENGTH) == []


@pytest.mark.parametrize("rpc", ["GetJob", "ListJobEvents", "UpdateJob", "DeleteJob"])
def test_a_job_id_too_long_is_refused_without_being_echoed(records: Records, rpc: str) -> None:
    request = {"GetJob": pb.HistoryServiceGetJobRequest(job_id=LONG_ID),
               "ListJobEvents": pb.ListJobEventsRequest(job_id=LONG_ID),
               "UpdateJob": pb.UpdateJobRequest(job_id=LONG_ID, label="x"),
               "DeleteJob": pb.DeleteJobRequest(job_id=LONG_ID)}[rpc]
    message = refused(lambda: getattr(records.stub, rpc)(request, timeout=10), "job_id")
    assert message == f"job_id: at most {mapping.MAX_ID_LENGTH} characters (got 20000)"


def test_an_id_at_the_limit_is_looked_up(records: Records) -> None:
    job_id = records.add(job_id="j" * mapping.MAX_ID_LENGTH)
    assert records.get(job_id).job.job_id == job_id


@pytest.mark.parametrize(("request_", "field"), [
    (pb.HistoryServiceListJobsRequest(filter=pb.JobFilter(prompt_pack_id="p" * 257)),
     "filter.prompt_pack_id"),
    (pb.HistoryServiceListJobsRequest(filter=pb.JobFilter(
        states=[job_pb2.JOB_STATE_QUEUED] * 17)), "filter.states"),
    (pb.HistoryServiceListJobsRequest(page_token="t" * 1025), "page_token"),
])
def test_list_request_limits(records: Records, request_: pb.HistoryServiceListJobsRequest,
                             field: str) -> None:
    refused(lambda: records.stub.ListJobs(request_, timeout=10), field)


def test_a_label_too_long_is_refused_and_changes_nothing(records: Records) -> None:
    job_id = records.add(label="kept")
    refused(lambda: records.stub.UpdateJob(pb.UpdateJobRequest(
        job_id=job_id, label="l" * (mapping.MAX_LABEL_LENGTH + 1)), timeout=10), "label")
    assert records.get(job_id).job.label == "kept"
    records.stub.UpdateJob(pb.UpdateJobRequest(
        job_id=job_id, label="l" * mapping.MAX_LABEL_LENGTH), timeout=10)


def test_an_imported_job_id_too_long_is_refused(records: Records) -> None:
    job = job_pb2.Job(job_id=LONG_ID, state=job_pb2.JOB_STATE_COMPLETED)
    job.create_time.seconds = 1_700_000_000
    refused(lambda: records.stub.ImportHistory(pb.ImportHistoryRequest(
        jobs=[pb.ImportedJob(job=job)]), timeout=10), "jobs[0].job.job_id")


def test_quarantined_events_are_listed_over_grpc_as_the_queue_sent_them(
        records: Records) -> None:
    events = []
    for sequence in (1, 2, 3):
        event = job_pb2.JobEvent(sequence=sequence, job_id=f"bad{sequence}")
        event.state_changed.to_state = 99  # type: ignore[assignment]
        events.append(event)
        assert records.core.quarantine(sequence, event.job_id, f"error {sequence}",
                                       event.SerializeToString())
    assert not records.core.quarantine(2, "again", "already past", b"")
    first = records.stub.ListQuarantinedEvents(
        pb.ListQuarantinedEventsRequest(page_size=2), timeout=10)
    second = records.stub.ListQuarantinedEvents(pb.ListQuarantinedEventsRequest(
        page_size=2, page_token=first.next_page_token), timeout=10)
    listed = [*first.events, *second.events]
    assert second.next_page_token == ""
    assert [(e.sequence, e.job_id, e.error) for e in listed] == [
        (1, "bad1", "error 1"), (2, "bad2", "error 2"), (3, "bad3", "error 3")]
    assert [e.event for e in listed] == events  # the unknown state number kept
    assert all(e.HasField("quarantine_time") for e in listed)
    status = records.stub.GetIngestionStatus(pb.GetIngestionStatusRequest(), timeout=10)
    assert not status.enabled
    assert (status.quarantined_count, status.recorded_sequence) == (3, 3)


def test_a_quarantine_page_token_of_another_list_is_refused(records: Records) -> None:
    records.add()
    records.add()
    token = records.stub.ListJobs(pb.HistoryServiceListJobsRequest(page_size=1),
                                  timeout=10).next_page_token
    assert token
    with pytest.raises(grpc.RpcError) as caught:
        records.stub.ListQuarantinedEvents(pb.ListQuarantinedEventsRequest(page_token=token),
                                           timeout=10)
    details = details_of(caught.value)
    assert (details.code, details.reason) == (Code.INVALID_ARGUMENT,
                                              ErrorReason.INVALID_PAGE_TOKEN.name)
    refused(lambda: records.stub.ListQuarantinedEvents(
        pb.ListQuarantinedEventsRequest(page_size=-1), timeout=10), "page_size")


def test_a_record_larger_than_a_message_is_read_in_parts(tmp_path: Path) -> None:
    limit = 256 * 1024
    records = Records(tmp_path / "data", env={"STABLENEW_MAX_MESSAGE_BYTES": str(limit)})
    try:
        prompts = tuple(f"prompt {n} " + "x" * 20_000 for n in range(40))
        job_id = records.add(prompts=prompts)  # about 800 kB of entries and as much of results
        entries: list[str] = []
        results: list[str] = []
        parts = 0
        request = pb.HistoryServiceGetJobRequest(job_id=job_id)
        while True:
            reply = records.stub.GetJob(request, timeout=10)
            parts += 1
            assert reply.ByteSize() <= limit
            assert len(reply.transitions) == 3 and reply.job.job_id == job_id
            entries += [entry.prompt for entry in reply.job.entries]
            results += [result.prompt for result in reply.job.results]
            assert (reply.next_entry_offset, reply.next_result_offset) == (
                len(entries), len(results))
            if not reply.truncated:
                break
            request = pb.HistoryServiceGetJobRequest(
                job_id=job_id, entry_offset=reply.next_entry_offset,
                result_offset=reply.next_result_offset)
        assert entries == list(prompts) and results == list(prompts)
        assert parts >= 6
        [exported] = records.stub.ExportHistory(pb.ExportHistoryRequest(), timeout=10)
        assert exported.truncated and exported.ByteSize() <= limit
        assert exported.next_entry_offset == len(exported.job.entries) > 0
        refused(lambda: records.stub.GetJob(pb.HistoryServiceGetJobRequest(
            job_id=job_id, entry_offset=-1), timeout=10), "entry_offset")
    finally:
        records.close()


def test_a_record_that_fits_is_one_part(records: Records) -> None:
    job_id = records.add(prompts=("one", "two"))
    reply = records.get(job_id)
    assert not reply.truncated
    assert (reply.next_entry_offset, reply.next_result_offset) == (2, 2)
    assert [entry.prompt for entry in reply.job.entries] == ["one", "two"]


def test_a_full_view_page_holds_what_fits_in_a_message(tmp_path: Path) -> None:
    limit = 256 * 1024
    records = Records(tmp_path / "data", env={"STABLENEW_MAX_MESSAGE_BYTES": str(limit)})
    try:
        # About 100 kB each in the full view (two prompts, in the entries and the results).
        medium = [records.add(prompts=(f"{n} a " + "y" * 25_000, f"{n} b " + "y" * 25_000))
                  for n in range(4)]
        huge = records.add(prompts=tuple(f"{n} " + "x" * 20_000 for n in range(40)))
        pages: list[list[str]] = []
        truncated: list[str] = []
        token = ""
        while True:
            reply = records.stub.ListJobs(pb.HistoryServiceListJobsRequest(
                page_size=10, page_token=token, view=job_pb2.JOB_VIEW_FULL), timeout=10)
            assert reply.ByteSize() <= limit
            pages.append([job.job_id for job in reply.jobs])
            truncated += reply.truncated_job_ids
            token = reply.next_page_token
            if not token:
                break
        assert pages == [[huge], medium[:1:-1], medium[1::-1]]  # newest first, two a page
        assert truncated == [huge]
    finally:
        records.close()


def _event_pages(records: Records, job_id: str, limit: int) -> list[pb.ListJobEventsResponse]:
    """Every ListJobEvents page of a job, each checked to fit in `limit` bytes."""
    pages: list[pb.ListJobEventsResponse] = []
    token = ""
    while True:
        reply = records.stub.ListJobEvents(pb.ListJobEventsRequest(
            job_id=job_id, page_size=100, page_token=token), timeout=10)
        assert reply.ByteSize() <= limit
        pages.append(reply)
        token = reply.next_page_token
        if not token:
            return pages


def test_job_events_are_paged_by_size_and_a_huge_event_is_trimmed(tmp_path: Path) -> None:
    limit = 256 * 1024
    records = Records(tmp_path / "data", env={"STABLENEW_MAX_MESSAGE_BYTES": str(limit)})
    try:
        # About 140 kB each: the submission and the completion do not fit one page together.
        medium = records.add(prompts=(f"a {'y' * 70_000}", f"b {'y' * 70_000}"))
        pages = _event_pages(records, medium, limit)
        assert [[e.sequence for e in page.events] for page in pages] == [[1, 2], [3]]
        assert all(not page.truncated_sequences for page in pages)
        assert [len(p.events[0].submitted.job.entries) for p in pages[:1]] == [2]
        # About 800 kB each: the submission and the completion each start a page, trimmed
        # (the small RUNNING change fits in what the trimmed submission left).
        prompts = tuple(f"prompt {n} " + "x" * 20_000 for n in range(40))
        huge = records.add(prompts=prompts)
        pages = _event_pages(records, huge, limit)
        assert [[e.sequence for e in page.events] for page in pages] == [[4, 5], [6]]
        assert [list(page.truncated_sequences) for page in pages] == [[4], [6]]
        entries = pages[0].events[0].submitted.job.entries
        results = pages[1].events[0].state_changed.results
        assert 0 < len(entries) < 40 and 0 < len(results) < 40
        assert [entry.prompt for entry in entries] == list(prompts[:len(entries)])
        assert pages[0].events[1].state_changed.to_state == job_pb2.JOB_STATE_RUNNING
    finally:
        records.close()


def test_an_export_reads_records_in_batches_bounded_by_their_size(tmp_path: Path) -> None:
    records = Records(tmp_path / "data")
    try:
        # About 3 MiB stored each (1.5 MiB of entries, as much of results): the 8 MiB bound
        # takes two a batch, where a batch of 200 records once held them all.
        made = [records.add(prompts=tuple(f"{n} {m} " + "z" * 50_000 for m in range(30)))
                for n in range(3)]
        with records.store.reading() as reader:
            sizes = {job_id: reader.record_bytes(reader.load(job_id).ref)  # type: ignore[union-attr]
                     for job_id in made}
        assert all(3_000_000 < size < 3_200_000 for size in sizes.values())
        batches = [[job.job_id for job, _ in batch]
                   for batch in records.core.export_batches(JobFilter())]
        assert batches == [made[:0:-1], made[:1]]  # newest first
        assert all(sum(sizes[j] for j in batch) <= core.EXPORT_BATCH_BYTES for batch in batches)
        # A record larger than the bound makes a batch alone.
        alone = [len(batch) for batch in records.core.export_batches(JobFilter(), 1)]
        assert alone == [1, 1, 1]
        exported = list(records.stub.ExportHistory(pb.ExportHistoryRequest(), timeout=30))
        assert [e.job.job_id for e in exported] == made[::-1]
        assert not any(e.truncated for e in exported)
        assert all(len(e.job.entries) == 30 for e in exported)
    finally:
        records.close()
