"""What docs/CONTRACT.md tells watchers in other languages about the end of a WatchJobs stream:
a queue that shuts down ends it normally (OK), and watching again from the last sequence seen
misses nothing and repeats nothing."""

from __future__ import annotations

from pathlib import Path

from stablenew.v1 import queue_service_pb2 as pb
from stablenew.v1 import queue_service_pb2_grpc
from tests.queue.harness import QueueHarness
from tests.service_harness import open_test_channel


def test_a_watch_ends_normally_when_the_queue_stops_and_resumes_after_a_restart(
        tmp_path: Path) -> None:
    queue = QueueHarness(tmp_path / "data", {})
    queue.start()
    try:
        queue.submit()
        queue.submit()
        watcher = open_test_channel(queue.address)
        stream = queue_service_pb2_grpc.QueueServiceStub(watcher).WatchJobs(
            pb.WatchJobsRequest(after_sequence=0), timeout=60)
        replies = iter(stream)
        seen = [next(replies).event.sequence, next(replies).event.sequence]

        queue.stop()

        assert list(replies) == []  # the end of the stream, not an error
        watcher.close()
        queue.start()
        queue.submit()
        resumed = queue.stub.WatchJobs(pb.WatchJobsRequest(after_sequence=seen[-1]), timeout=60)
        assert (seen, next(iter(resumed)).event.sequence) == ([1, 2], 3)
        resumed.cancel()  # type: ignore[no-untyped-call]
    finally:
        queue.stop()
