"""Each record's image count (Job.image_count): worked out by the history from the results it
records, never taken from a sender, carried by lists (basic view), GetJob and watchers; and a
watch asked to confirm its subscription says so first, after which no record is missed."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from stablenew.contract.model import EntryResult, EntryStatus, ImageRef, JobState
from stablenew.history.domain import StateChanged
from stablenew.v1 import history_service_pb2 as pb
from stablenew.v1 import job_pb2
from tests.history.records import T0, Records


def finish_with_images(records: Records, job_id: str, images_per_entry: list[int]) -> None:
    """A job of one entry per item of `images_per_entry`, completed with that many images."""
    records.add(JobState.RUNNING, job_id=job_id,
                prompts=tuple(f"prompt {n}" for n in range(len(images_per_entry))))
    results = [EntryResult(entry_index=index, status=EntryStatus.COMPLETED,
                           images=[ImageRef(path=f"{job_id}/{index}-{n}.png", runner_id="gpu-1")
                                   for n in range(count)])
               for index, count in enumerate(images_per_entry)]
    records.event(job_id, T0 + timedelta(hours=1), StateChanged(
        JobState.RUNNING, JobState.COMPLETED, "completed", "gpu-1", 1, "", results))


def test_lists_and_records_carry_the_image_count(records: Records) -> None:
    finish_with_images(records, "three", [2, 1])
    finish_with_images(records, "none", [0])
    records.add(JobState.QUEUED, job_id="waiting")
    listed = records.stub.ListJobs(pb.HistoryServiceListJobsRequest(), timeout=10)
    assert {job.job_id: job.image_count for job in listed.jobs} == {
        "three": 3, "none": 0, "waiting": 0}
    assert not any(job.results for job in listed.jobs)  # the basic view: no results read
    assert records.get("three").job.image_count == 3


def test_an_import_is_counted_by_the_history_not_by_the_file(records: Records) -> None:
    record = pb.ImportedJob(job=job_pb2.Job(job_id="desk", state=job_pb2.JOB_STATE_COMPLETED,
                                            image_count=99))
    record.job.create_time.FromDatetime(T0)
    record.job.results.add(entry_index=0, status=job_pb2.ENTRY_STATUS_COMPLETED).images.add(
        path="desk/0.png")
    request = pb.ImportHistoryRequest(jobs=[record])
    assert records.stub.ImportHistory(request, timeout=10).added_count == 1
    assert records.get("desk").job.image_count == 1
    # The file's own number does not make the record differ from what was imported.
    assert records.stub.ImportHistory(request, timeout=10).unchanged_count == 1


def test_a_confirmed_watch_misses_nothing_written_after_its_confirmation(
        records: Records) -> None:
    # Typed loosely: the generated stubs type a stream call without next() and cancel().
    stream: Any = records.stub.WatchHistory(
        pb.WatchHistoryRequest(confirm_subscription=True), timeout=30)
    try:
        first = next(stream)
        assert first.subscribed and not first.HasField("job")
        # Written the moment the confirmation arrived: no wait, and still delivered.
        finish_with_images(records, "right-after", [2])
        seen: list[pb.WatchHistoryResponse] = []
        for message in stream:
            seen.append(message)
            if message.job.state == job_pb2.JOB_STATE_COMPLETED:
                break
        assert {message.job.job_id for message in seen} == {"right-after"}
        assert not any(message.subscribed for message in seen)
        assert seen[-1].job.image_count == 2
    finally:
        stream.cancel()

