"""Durable watching through the SDK against the real system: a script that processes job events
as a durable consumer (docs/SDK.md) acknowledges some, stops, and its restart with a new client
sees exactly the events it had not acknowledged; an unknown consumer is ConsumerNotFoundError."""

from __future__ import annotations

from contextlib import closing
from typing import Any

import pytest

from stablenew.sdk import ConsumerNotFoundError, EventKind, JobEvent
from tests.sdk.harness import Stack, connect, new_draft


def _script_run(kind: str, stack: Stack, consumer_id: str, start: int, job_ids: list[str],
                acknowledge: int) -> list[JobEvent]:
    """One run of a script that processes the jobs' events as a durable consumer, as in
    docs/SDK.md: its own client, the consumer created on its first run (found again by its
    request_id later), events read until the last job is cancelled. It acknowledges the first
    `acknowledge` events it reads, then stops without acknowledging the one after (a crash
    between processing an event and acknowledging it)."""
    with connect(kind, queue_address=stack.queue.address) as client:
        client.queue.create_consumer(consumer_id, after_sequence=start,
                                     request_id=f"{consumer_id}-setup")
        processed: list[JobEvent] = []
        with closing(client.watch(consumer_id=consumer_id, job_ids=job_ids,
                                  exclude_progress=True)) as events:
            for event in events:
                processed.append(event)
                if len(processed) > acknowledge:
                    break
                client.queue.acknowledge(consumer_id, event.sequence)
                if event.job_id == job_ids[-1] and event.state_changed is not None:
                    break
        return processed


def test_a_durable_watch_resumes_after_what_was_acknowledged(kind: str, stack: Stack,
                                                             client: Any, paused: None) -> None:
    consumer_id = f"sdk-script-{kind}"
    start = client.queue.state().last_sequence
    jobs = [client.drafts.enqueue(new_draft(client, rows=[0]).draft_id).job_id
            for _ in range(2)]
    for job_id in jobs:
        client.queue.cancel(job_id)
    try:
        # Four events: two submissions, two cancellations. The first run acknowledges two and
        # stops while processing the third; the restarted script gets the third and fourth.
        first = _script_run(kind, stack, consumer_id, start, jobs, acknowledge=2)
        consumer = next(c for c in client.queue.consumers() if c.consumer_id == consumer_id)
        assert consumer.acknowledged_sequence == first[1].sequence
        second = _script_run(kind, stack, consumer_id, start, jobs, acknowledge=2)
    finally:
        client.queue.delete_consumer(consumer_id)
    assert [(e.kind, e.job_id) for e in first] == [
        (EventKind.SUBMITTED, jobs[0]), (EventKind.SUBMITTED, jobs[1]),
        (EventKind.STATE_CHANGED, jobs[0])]
    assert [e.sequence for e in second[:1]] == [first[2].sequence]
    assert [(e.kind, e.job_id) for e in second] == [
        (EventKind.STATE_CHANGED, jobs[0]), (EventKind.STATE_CHANGED, jobs[1])]
    # An explicit start overrides the acknowledged one.
    with closing(client.watch(after_sequence=start, job_ids=jobs[:1])) as replay:
        assert next(replay).sequence == first[0].sequence


def test_a_durable_watch_or_acknowledgement_of_an_unknown_consumer(client: Any) -> None:
    with pytest.raises(ConsumerNotFoundError) as caught:
        next(client.watch(consumer_id="sdk-no-such-consumer"))
    assert caught.value.metadata["consumer_id"] == "sdk-no-such-consumer"
    with pytest.raises(ConsumerNotFoundError):
        client.queue.acknowledge("sdk-no-such-consumer", 0)


