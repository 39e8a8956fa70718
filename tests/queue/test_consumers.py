"""Durable consumers are explicit: created, listed and deleted by RPC, refused when unknown,
and expired after their idle time, so a forgotten one no longer holds the event log."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message

from stablenew.contract.errors import Code
from stablenew.runtime.rich_status import details_of
from stablenew.v1 import queue_service_pb2 as pb
from tests.queue.harness import QueueHarness
from tests.service_harness import wait_for


def _refused(call: Callable[[Any], Any], request: Message) -> tuple[Code, str, dict[str, str]]:
    """The code, reason and metadata a unary or streaming call fails with."""
    with pytest.raises(grpc.RpcError) as caught:
        reply = call(request)
        if not isinstance(reply, Message):
            list(reply)  # a stream fails when read
    details = details_of(caught.value)
    return details.code, details.reason, dict(details.metadata)


def _ids(queue: QueueHarness, page_size: int = 0) -> list[str]:
    """Every consumer id, read page by page."""
    ids, token = [], ""
    while True:
        reply = queue.stub.ListConsumers(pb.ListConsumersRequest(page_size=page_size,
                                                                 page_token=token))
        ids += [consumer.consumer_id for consumer in reply.consumers]
        token = reply.next_page_token
        if not token:
            return ids


def test_create_list_delete(queue: QueueHarness) -> None:
    queue.submit()
    created = queue.stub.CreateConsumer(
        pb.CreateConsumerRequest(consumer_id="b", after_sequence=1)).consumer
    assert (created.consumer_id, created.acknowledged_sequence) == ("b", 1)
    assert created.HasField("expire_time") and not created.watching
    for name in ("a", "c"):
        queue.stub.CreateConsumer(pb.CreateConsumerRequest(consumer_id=name))
    assert _ids(queue, page_size=2) == ["a", "b", "c"]
    queue.stub.DeleteConsumer(pb.DeleteConsumerRequest(consumer_id="b"))
    assert _ids(queue) == ["a", "c"]
    assert _refused(queue.stub.DeleteConsumer, pb.DeleteConsumerRequest(consumer_id="b")) == (
        Code.NOT_FOUND, "CONSUMER_NOT_FOUND", {"consumer_id": "b"})


def test_create_is_idempotent_per_request_id_and_refuses_a_taken_id(
        queue: QueueHarness) -> None:
    first = queue.stub.CreateConsumer(
        pb.CreateConsumerRequest(consumer_id="h", request_id="r1")).consumer
    again = queue.stub.CreateConsumer(
        pb.CreateConsumerRequest(consumer_id="h", request_id="r1")).consumer
    assert again.create_time == first.create_time
    code, reason, _ = _refused(queue.stub.CreateConsumer,
                               pb.CreateConsumerRequest(consumer_id="h", request_id="r2"))
    assert (code, reason) == (Code.ALREADY_EXISTS, "CONSUMER_ALREADY_EXISTS")


@pytest.mark.parametrize(("request_fields", "field"), [
    ({}, "consumer_id"),
    ({"consumer_id": "x" * 257}, "consumer_id"),
    ({"consumer_id": "h", "after_sequence": -1}, "after_sequence"),
    ({"consumer_id": "h", "after_sequence": 99}, "after_sequence"),
    ({"consumer_id": "h", "request_id": "r" * 257}, "request_id"),
])
def test_create_refuses_bad_fields(queue: QueueHarness, request_fields: dict[str, object],
                                   field: str) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        queue.stub.CreateConsumer(pb.CreateConsumerRequest(**request_fields))  # type: ignore[arg-type]
    details = details_of(caught.value)
    assert (details.code, details.reason) == (Code.INVALID_ARGUMENT, "INVALID_FIELD")
    assert [v.field for v in details.violations] == [field]


def test_list_refuses_a_bad_page_size_and_token(queue: QueueHarness) -> None:
    for request, reason in ((pb.ListConsumersRequest(page_size=-1), "INVALID_FIELD"),
                            (pb.ListConsumersRequest(page_token="forged"),
                             "INVALID_PAGE_TOKEN")):
        code, got, _ = _refused(queue.stub.ListConsumers, request)
        assert (code, got) == (Code.INVALID_ARGUMENT, reason)


def test_watching_or_acknowledging_as_an_unknown_consumer_is_not_found(
        queue: QueueHarness) -> None:
    queue.submit()
    for call, request in (
            (queue.stub.WatchJobs, pb.WatchJobsRequest(consumer_id="ghost")),
            (queue.stub.AcknowledgeEvents,
             pb.AcknowledgeEventsRequest(consumer_id="ghost", sequence=1))):
        assert _refused(call, request) == (Code.NOT_FOUND, "CONSUMER_NOT_FOUND",
                                           {"consumer_id": "ghost"})
    assert _ids(queue) == []  # neither registered it


def test_a_watching_consumer_shows_as_watching(queue: QueueHarness) -> None:
    queue.stub.CreateConsumer(pb.CreateConsumerRequest(consumer_id="h"))
    stream = queue.stub.WatchJobs(pb.WatchJobsRequest(consumer_id="h"))
    queue.submit()
    next(iter(stream))

    def watching() -> pb.Consumer:
        return queue.stub.ListConsumers(pb.ListConsumersRequest()).consumers[0]

    assert watching().watching and not watching().HasField("expire_time")
    stream.cancel()  # type: ignore[no-untyped-call]
    wait_for(lambda: not watching().watching, "the watch to end")
    assert watching().HasField("expire_time")


@pytest.fixture
def expiring_queue(tmp_path: Path) -> Iterator[QueueHarness]:
    harness = QueueHarness(tmp_path / "data", {
        "STABLENEW_EVENT_RETENTION_SECONDS": "0.001", "STABLENEW_PRUNE_INTERVAL_SECONDS": "0.05",
        "STABLENEW_CONSUMER_IDLE_SECONDS": "0.5"})
    with harness.running():
        yield harness


def _oldest(queue: QueueHarness) -> int:
    """The oldest sequence the log still holds (1 while nothing was pruned)."""
    try:
        next(iter(queue.stub.WatchJobs(pb.WatchJobsRequest(after_sequence=0), timeout=2)))
    except grpc.RpcError as error:
        return int(details_of(error).metadata["oldest_sequence"])
    return 1


def test_an_idle_consumer_expires_and_stops_holding_the_log(
        expiring_queue: QueueHarness) -> None:
    queue = expiring_queue
    queue.stub.CreateConsumer(pb.CreateConsumerRequest(consumer_id="ghost"))
    queue.submit()
    queue.submit()
    # Held while the consumer lives; pruned once it expired, and it is gone from the list.
    assert _oldest(queue) == 1
    wait_for(lambda: _ids(queue) == [], "the idle consumer to expire")
    wait_for(lambda: _oldest(queue) == 3, "the log to be pruned")
    assert _refused(queue.stub.WatchJobs, pb.WatchJobsRequest(consumer_id="ghost"))[1] == (
        "CONSUMER_NOT_FOUND")


def test_a_deleted_consumer_stops_holding_the_log(expiring_queue: QueueHarness) -> None:
    queue = expiring_queue
    queue.stub.CreateConsumer(pb.CreateConsumerRequest(consumer_id="gone"))
    queue.submit()
    queue.stub.DeleteConsumer(pb.DeleteConsumerRequest(consumer_id="gone"))
    wait_for(lambda: _oldest(queue) == 2, "the log to be pruned")


def test_a_watching_consumer_does_not_expire(expiring_queue: QueueHarness) -> None:
    queue = expiring_queue
    for name in ("live", "idle"):
        queue.stub.CreateConsumer(pb.CreateConsumerRequest(consumer_id=name))
    stream = queue.stub.WatchJobs(pb.WatchJobsRequest(consumer_id="live"))
    queue.submit()
    assert next(iter(stream)).event.sequence == 1
    # Created together: once the idle one expired, the watching one outlived its idle time.
    wait_for(lambda: _ids(queue) == ["live"], "the idle consumer to expire")
    assert _oldest(queue) == 1
    stream.cancel()  # type: ignore[no-untyped-call]
