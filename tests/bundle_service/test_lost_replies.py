"""An enqueue whose reply is lost and which is retried yields exactly one queued job; a queue that
is down leaves the draft as it was.

Replies are lost three ways: the bundle's reply to the client (a client interceptor throws it
away after the server finished), the client's deadline expiring while the queue is slow (a TCP
proxy holds the bundle's SubmitJob), and the queue's reply to the bundle (the proxy swallows it
and cuts the connection after the queue committed the job). "Exactly one" is checked in the
queue's active list and in its event log.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc
import pytest

from stablenew.contract.errors import Code
from stablenew.runtime.rich_status import details_of
from stablenew.v1 import bundle_service_pb2 as pb
from stablenew.v1 import job_pb2
from tests.bundle_service.conftest import Stack
from tests.bundle_service.harness import (
    PATIENCE_SECONDS,
    LoseReplies,
    LostReply,
    jobs_of_draft,
    preset,
    rpc_error,
    submitted_events_of_draft,
    txt2img_config,
    unique,
    write_pack,
)
from tests.service_harness import wait_for


def _filled_draft(stack: Stack) -> pb.Draft:
    pack_id = unique("lost_")
    write_pack(stack.packs_dir, f"{pack_id}.txt", "a [[job]] at dawn\n\na lighthouse\n")
    write_pack(stack.packs_dir, f"{pack_id}.json", {
        "pack_data": {"matrix": {"slots": [{"name": "job", "values": ["knight", "wizard"]}]}},
        "preset_data": preset()})
    draft = stack.bundle.new_draft()
    stack.bundle.add_pack(draft.draft_id, pack_id)
    return stack.bundle.add_manual(draft.draft_id, "a harbor", txt2img_config()).draft


def _exactly_one(stack: Stack, draft_id: str) -> job_pb2.Job:
    jobs = jobs_of_draft(stack.queue, draft_id)
    assert len(jobs) == 1, [job.job_id for job in jobs]
    assert [event.job_id for event in submitted_events_of_draft(stack.queue, draft_id)] == [
        jobs[0].job_id]
    return jobs[0]


def _warm(stack: Stack) -> None:
    """One enqueue through the link first: the connection to the queue is up and idle, so the
    next bytes on it are the SubmitJob under test."""
    stack.bundle.enqueue(_filled_draft(stack).draft_id)


def _until_the_queue_answers(call: Callable[[], job_pb2.Job]) -> job_pb2.Job:
    """Retry while the bundle reports the queue unavailable (its channel may still be backing
    off after the outage); any other error fails at once."""
    give_up = time.monotonic() + PATIENCE_SECONDS
    while True:
        try:
            return call()
        except grpc.RpcError as error:
            details = details_of(error)
            if details.reason != "DEPENDENCY_UNAVAILABLE" or time.monotonic() > give_up:
                raise
        time.sleep(0.05)


def _enqueue_request(draft: pb.Draft, request_id: str) -> pb.EnqueueDraftRequest:
    return pb.EnqueueDraftRequest(draft_id=draft.draft_id, run_mode=job_pb2.RUN_MODE_QUEUE,
                                  request_id=request_id)


def test_a_lost_reply_retried_with_its_request_id_queues_one_job(stack: Stack) -> None:
    draft = _filled_draft(stack)
    request_id = unique("lost-reply-")
    losing = LoseReplies("EnqueueDraft")
    channel, stub = stack.bundle.stub_with(losing)
    with channel, pytest.raises(LostReply):
        stub.EnqueueDraft(_enqueue_request(draft, request_id), timeout=30)
    [processed] = losing.lost  # the server did enqueue; only its answer was lost
    retried = stack.bundle.stub.EnqueueDraft(_enqueue_request(draft, request_id)).job
    assert retried.job_id == processed.job.job_id
    assert retried.origin.draft_revision == draft.revision
    assert _exactly_one(stack, draft.draft_id).job_id == retried.job_id
    # A retry without the request id finds the draft already emptied: nothing twice.
    details = rpc_error(lambda: stack.bundle.enqueue(draft.draft_id))
    assert (details.code, details.reason) == (Code.FAILED_PRECONDITION,
                                              "DRAFT_EMPTY")
    _exactly_one(stack, draft.draft_id)


def test_a_deadline_missed_while_the_queue_is_slow_then_a_retry(linked_stack: Stack) -> None:
    stack, link = linked_stack, linked_stack.link
    assert link is not None
    _warm(stack)
    draft = _filled_draft(stack)
    request_id = unique("slow-")
    link.hold_requests()
    details = rpc_error(lambda: stack.bundle.stub.EnqueueDraft(
        _enqueue_request(draft, request_id), timeout=0.5))
    assert details.code == Code.DEADLINE_EXCEEDED
    assert link.requests_held.wait(PATIENCE_SECONDS)  # the bundle is inside SubmitJob
    retry = stack.bundle.stub.EnqueueDraft.future(_enqueue_request(draft, request_id),
                                                  timeout=30)
    link.release_requests()
    job = retry.result().job
    assert _exactly_one(stack, draft.draft_id).job_id == job.job_id
    after = stack.bundle.draft(draft.draft_id)
    assert (len(after.parts), after.revision) == (0, draft.revision + 1)


def _lose_the_queue_reply(stack: Stack, draft: pb.Draft, request_id: str) -> None:
    """The queue commits the bundle's SubmitJob, then the connection dies before its reply."""
    link = stack.link
    assert link is not None
    _warm(stack)
    link.swallow_replies()
    call = stack.bundle.stub.EnqueueDraft.future(_enqueue_request(draft, request_id), timeout=30)
    wait_for(lambda: len(jobs_of_draft(stack.queue, draft.draft_id)) == 1,
             "the queue holds the job", PATIENCE_SECONDS)
    assert link.replies_swallowed.wait(PATIENCE_SECONDS)
    link.cut()
    link.deliver_replies()
    with pytest.raises(grpc.RpcError) as caught:
        call.result()
    details = details_of(caught.value)
    assert (details.code, details.reason) == (Code.UNAVAILABLE,
                                              "DEPENDENCY_UNAVAILABLE")
    # Not knowing, the bundle keeps the draft: the user can try again.
    assert stack.bundle.draft(draft.draft_id).revision == draft.revision


def test_a_lost_queue_reply_retried_with_the_same_request_id_queues_one_job(
        linked_stack: Stack) -> None:
    draft = _filled_draft(linked_stack)
    request_id = unique("queue-reply-")
    _lose_the_queue_reply(linked_stack, draft, request_id)
    job = _until_the_queue_answers(lambda: linked_stack.bundle.enqueue(draft.draft_id,
                                                                       request_id=request_id))
    assert _exactly_one(linked_stack, draft.draft_id).job_id == job.job_id
    assert len(linked_stack.bundle.draft(draft.draft_id).parts) == 0


@pytest.mark.parametrize("retry_request_id", ["", "a-new-request-id"])
def test_a_lost_queue_reply_retried_by_revision_queues_one_job(linked_stack: Stack,
                                                               retry_request_id: str) -> None:
    draft = _filled_draft(linked_stack)
    _lose_the_queue_reply(linked_stack, draft, unique("first-attempt-"))
    _until_the_queue_answers(lambda: linked_stack.bundle.enqueue(
        draft.draft_id, request_id=retry_request_id and unique(retry_request_id),
        expected_revision=draft.revision))
    _exactly_one(linked_stack, draft.draft_id)


def test_a_queue_that_is_down_leaves_the_draft_until_it_is_back(linked_stack: Stack) -> None:
    stack, link = linked_stack, linked_stack.link
    assert link is not None
    draft = _filled_draft(stack)
    jobs, _ = stack.bundle.preview_all(draft.draft_id, 2)
    request_id = unique("down-")
    stack.queue.stop()
    details = rpc_error(lambda: stack.bundle.enqueue(draft.draft_id, request_id=request_id))
    assert (details.code, details.reason) == (Code.UNAVAILABLE,
                                              "DEPENDENCY_UNAVAILABLE")
    assert "queue" in details.message
    kept = stack.bundle.draft(draft.draft_id)
    assert kept == draft  # not cleared, not even a new revision
    assert stack.bundle.preview_all(draft.draft_id, 2)[0] == jobs
    stack.queue.start()  # same data directory, a new port behind the same address
    assert stack.queue.server is not None
    link.target_port = stack.queue.server.port
    job = _until_the_queue_answers(lambda: stack.bundle.enqueue(draft.draft_id,
                                                                request_id=request_id))
    assert job.entry_count == len(jobs)
    assert _exactly_one(stack, draft.draft_id).job_id == job.job_id
    assert len(stack.bundle.draft(draft.draft_id).parts) == 0


def test_concurrent_enqueues_of_one_draft_queue_one_job(stack: Stack) -> None:
    """Retries racing the original (a double click, an impatient client) never submit twice."""
    for request_id in (unique("race-"), ""):
        draft = _filled_draft(stack)
        calls = [stack.bundle.stub.EnqueueDraft.future(_enqueue_request(draft, request_id),
                                                       timeout=30) for _ in range(6)]
        job_ids, refused = set(), []
        for call in calls:
            try:
                job_ids.add(call.result().job.job_id)
            except grpc.RpcError as error:
                refused.append(details_of(error).reason)
        queued = _exactly_one(stack, draft.draft_id)
        assert job_ids == {queued.job_id}
        if request_id:
            assert refused == []  # every caller learns the job
        else:
            assert set(refused) <= {"DRAFT_EMPTY"}
