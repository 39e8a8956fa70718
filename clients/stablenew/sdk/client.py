"""One client for the four services, configured like them (STABLENEW_*_ADDR, STABLENEW_TOKEN,
STABLENEW_TLS_CERT). Jobs come back as `stablenew.contract.model.Job` dataclasses; list calls
follow page tokens; `watch_jobs` reconnects from the last sequence it delivered, so a dropped
stream neither loses nor repeats an event."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping

import grpc

from stablenew.contract.model import Job
from stablenew.contract.proto_mapping import from_proto
from stablenew.runtime.channel import open_channel
from stablenew.sdk.errors import calling, typed
from stablenew.v1 import (
    bundle_service_pb2 as bundle_pb,
)
from stablenew.v1 import (
    bundle_service_pb2_grpc,
    history_service_pb2_grpc,
    job_pb2,
    pipeline_pb2,
    queue_service_pb2_grpc,
)
from stablenew.v1 import (
    history_service_pb2 as history_pb,
)
from stablenew.v1 import (
    queue_service_pb2 as queue_pb,
)

RECONNECT_CODES = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED,
                   grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}


class Client:
    def __init__(self, env: Mapping[str, str] | None = None, timeout: float = 30.0) -> None:
        self.env = os.environ if env is None else env
        self.timeout = timeout
        self._channels: dict[str, grpc.Channel] = {}

    def _channel(self, service: str) -> grpc.Channel:
        if service not in self._channels:
            self._channels[service] = open_channel(service, env=self.env)
        return self._channels[service]

    @property
    def bundle(self) -> bundle_service_pb2_grpc.BundleServiceStub:
        return bundle_service_pb2_grpc.BundleServiceStub(self._channel("bundle"))

    @property
    def queue(self) -> queue_service_pb2_grpc.QueueServiceStub:
        return queue_service_pb2_grpc.QueueServiceStub(self._channel("queue"))

    @property
    def history(self) -> history_service_pb2_grpc.HistoryServiceStub:
        return history_service_pb2_grpc.HistoryServiceStub(self._channel("history"))

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()

    # --- drafts -------------------------------------------------------------------------

    def create_draft(self, display_name: str, request_id: str = "") -> bundle_pb.Draft:
        request = bundle_pb.CreateDraftRequest(display_name=display_name, request_id=request_id)
        return calling(lambda: self.bundle.CreateDraft(request, timeout=self.timeout)).draft

    def add_pack(self, draft_id: str, pack_id: str, rows: list[int] | None = None,
                 prepend_text: str = "") -> bundle_pb.Draft:
        request = bundle_pb.AddPackPartsRequest(draft_id=draft_id, prompt_pack_id=pack_id,
                                                row_indices=rows or [],
                                                prepend_text=prepend_text)
        return calling(lambda: self.bundle.AddPackParts(request, timeout=self.timeout)).draft

    def preview(self, draft_id: str, page_size: int = 500) -> Iterator[pipeline_pb2.NormalizedJob]:
        """Every normalized job of the draft, following page tokens."""
        token = ""
        while True:
            request = bundle_pb.PreviewDraftRequest(draft_id=draft_id, page_size=page_size,
                                                    page_token=token)
            page = calling(lambda r=request: self.bundle.PreviewDraft(r, timeout=self.timeout))  # type: ignore[misc]
            yield from page.jobs
            token = page.next_page_token
            if not token:
                return

    def enqueue(self, draft_id: str, run_mode: job_pb2.RunMode.ValueType = job_pb2.RUN_MODE_QUEUE,
                request_id: str = "") -> Job:
        request = bundle_pb.EnqueueDraftRequest(draft_id=draft_id, run_mode=run_mode,
                                                request_id=request_id)
        reply = calling(lambda: self.bundle.EnqueueDraft(request, timeout=self.timeout))
        return from_proto(Job, reply.job)

    # --- queue and history ----------------------------------------------------------------

    def job(self, job_id: str) -> Job:
        request = queue_pb.GetJobRequest(job_id=job_id)
        return from_proto(Job, calling(lambda: self.queue.GetJob(request,
                                                                 timeout=self.timeout)).job)

    def history_job(self, job_id: str) -> tuple[Job, list[job_pb2.JobTransition]]:
        request = history_pb.HistoryServiceGetJobRequest(job_id=job_id)
        reply = calling(lambda: self.history.GetJob(request, timeout=self.timeout))
        return from_proto(Job, reply.job), list(reply.transitions)

    def watch_jobs(self, after_sequence: int = 0, job_ids: list[str] | None = None,
                   give_up_after: float = 60.0) -> Iterator[job_pb2.JobEvent]:
        """Events after `after_sequence`, live, reconnecting from the last one delivered."""
        cursor = after_sequence
        down_since: float | None = None
        while True:
            request = queue_pb.WatchJobsRequest(after_sequence=cursor, job_ids=job_ids or [])
            try:
                for reply in self.queue.WatchJobs(request):
                    down_since = None
                    cursor = reply.event.sequence
                    yield reply.event
                return
            except grpc.RpcError as error:
                if error.code() not in RECONNECT_CODES:
                    raise typed(error) from None
                down_since = down_since or time.monotonic()
                if time.monotonic() - down_since > give_up_after:
                    raise typed(error) from None
                time.sleep(0.5)
