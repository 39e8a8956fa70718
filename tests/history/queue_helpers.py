"""Helpers for tests that compare the history with a real queue: submissions of every kind,
the queue's event log, and record comparison."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import grpc
from google.protobuf.json_format import MessageToDict

from stablenew.contract.model import StageType
from stablenew.contract.proto_mapping import to_proto
from stablenew.v1 import job_pb2, pipeline_pb2, queue_service_pb2_grpc
from stablenew.v1 import queue_service_pb2 as queue_pb
from tests.history.records import entry


def submit(stub: queue_service_pb2_grpc.QueueServiceStub, *, direct: bool = False,
           pack_id: str = "", prompts: tuple[str, ...] = ("a lighthouse at dusk",),
           label: str = "", stages: tuple[StageType, ...] = (StageType.TXT2IMG,),
           request_id: str = "") -> job_pb2.Job:
    """A job as the bundle service would submit it: DIRECT ("Run now") or QUEUE, from a manual
    prompt or from a pack's rows."""
    entries = [to_proto(entry(prompt, pack_id, index, stages))
               for index, prompt in enumerate(prompts)]
    origin = job_pb2.JobOrigin(
        run_mode=job_pb2.RUN_MODE_DIRECT if direct else job_pb2.RUN_MODE_QUEUE,
        source=job_pb2.JOB_SOURCE_RUN_NOW if direct else job_pb2.JOB_SOURCE_ADD_TO_QUEUE,
        prompt_source=(pipeline_pb2.PROMPT_SOURCE_PACK if pack_id
                       else pipeline_pb2.PROMPT_SOURCE_MANUAL),
        prompt_pack_id=pack_id, draft_id="draft-1", draft_revision=3)
    reply = stub.SubmitJob(queue_pb.SubmitJobRequest(
        entries=entries, origin=origin, priority=job_pb2.PRIORITY_NORMAL, label=label,
        metadata={"client": "test"}, request_id=request_id), timeout=10)
    return reply.job


def expected_transitions(events: list[job_pb2.JobEvent],
                         job_id: str) -> list[job_pb2.JobTransition]:
    """The transitions the history must hold for a job: its submission, then every state
    change, each once, in log order."""
    out = []
    for event in events:
        if event.job_id != job_id:
            continue
        kind = event.WhichOneof("payload")
        if kind == "submitted":
            out.append(job_pb2.JobTransition(
                sequence=event.sequence, from_state=job_pb2.JOB_STATE_UNSPECIFIED,
                to_state=job_pb2.JOB_STATE_QUEUED, time=event.time, reason="submitted",
                runner_id=event.submitted.job.runner_id, attempt=event.submitted.job.attempt))
        elif kind == "state_changed":
            change = event.state_changed
            out.append(job_pb2.JobTransition(
                sequence=event.sequence, from_state=change.from_state,
                to_state=change.to_state, time=event.time, reason=change.reason,
                runner_id=change.runner_id, attempt=change.attempt))
    return out


def kept_events(events: list[job_pb2.JobEvent], job_id: str) -> list[job_pb2.JobEvent]:
    """The events ListJobEvents returns for a job: all of its events but progress."""
    return [event for event in events
            if event.job_id == job_id and event.WhichOneof("payload") != "progress"]


def assert_same_record(recorded: job_pb2.Job, queued: job_pb2.Job) -> None:
    """The history's record equals the queue's, field by field (but for the fields one side
    alone has: the history's bookmark and image count, which must be the images of the queue's
    results, and why the queue has not leased a queued job yet, which the queue works out when
    the job is read and never logs)."""
    mine, theirs = job_pb2.Job(), job_pb2.Job()
    mine.CopyFrom(recorded)
    theirs.CopyFrom(queued)
    assert not mine.bookmarked
    assert not mine.waiting_reason
    assert mine.image_count == sum(len(result.images) for result in queued.results)
    mine.ClearField("image_count")
    theirs.ClearField("waiting_reason")
    assert MessageToDict(mine) == MessageToDict(theirs)
    assert mine == theirs


def acknowledged(queue_data_dir: Path, consumer_id: str = "history") -> int:
    """What the queue holds as the history's acknowledged sequence (read from its file)."""
    with sqlite3.connect(queue_data_dir / "queue.sqlite3") as db:
        row = db.execute("SELECT acked_sequence FROM consumers WHERE consumer_id = ?",
                         (consumer_id,)).fetchone()
    return 0 if row is None else int(row[0])


def is_pruned(stub: queue_service_pb2_grpc.QueueServiceStub) -> bool:
    """Whether the queue has pruned its first events."""
    stream = stub.WatchJobs(queue_pb.WatchJobsRequest(after_sequence=0), timeout=5)
    try:
        next(iter(stream))
    except grpc.RpcError as error:
        return error.code() == grpc.StatusCode.OUT_OF_RANGE
    except StopIteration:
        return False
    finally:
        stream.cancel()  # type: ignore[no-untyped-call]
    return False
