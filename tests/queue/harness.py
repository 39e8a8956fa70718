"""A real queue server on a free loopback port with its SQLite file on disk, restartable on the
same data directory, helpers to build valid submissions, and the whole event log."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import grpc

from stablenew.contract.config_hash import config_hash
from stablenew.contract.model import NormalizedJob, StageType
from stablenew.contract.proto_mapping import to_proto
from stablenew.queue import app
from stablenew.runtime.server import ServiceSpec
from stablenew.runtime.settings import ServerSettings
from stablenew.v1 import job_pb2, pipeline_pb2, queue_service_pb2_grpc
from stablenew.v1 import queue_service_pb2 as pb
from tests.service_harness import ServiceHarness


def make_entry(index: int = 0, model: str = "sd15", prompt: str = "",
               stages: tuple[StageType, ...] = (StageType.TXT2IMG,)) -> pipeline_pb2.NormalizedJob:
    entry = NormalizedJob(index=index, prompt=prompt or f"a lighthouse, variant {index}",
                          stage_plan=list(stages), seed=1000 + index, model=model, width=512,
                          height=512, steps=20, cfg_scale=7.0, batch_size=1, n_iter=1,
                          sampler_name="Euler a")
    entry.config_hash = config_hash(entry)
    message: pipeline_pb2.NormalizedJob = to_proto(entry)
    return message


def origin(run_mode: job_pb2.RunMode.ValueType = job_pb2.RUN_MODE_QUEUE) -> job_pb2.JobOrigin:
    source = (job_pb2.JOB_SOURCE_RUN_NOW if run_mode == job_pb2.RUN_MODE_DIRECT
              else job_pb2.JOB_SOURCE_ADD_TO_QUEUE)
    return job_pb2.JobOrigin(run_mode=run_mode, source=source,
                             prompt_source=pipeline_pb2.PROMPT_SOURCE_MANUAL)


class QueueHarness(ServiceHarness):
    """A queue server over one data directory."""

    service = "queue"

    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        super().__init__({"STABLENEW_QUEUE_ADDR": "127.0.0.1:0",
                          "STABLENEW_DATA_DIR": str(data_dir), **env})
        self.data_dir = data_dir
        self.stub: queue_service_pb2_grpc.QueueServiceStub

    def build(self, settings: ServerSettings, env: Mapping[str, str]) -> ServiceSpec:
        return app.build(settings, env)

    def connect(self, channel: grpc.Channel) -> None:
        self.stub = queue_service_pb2_grpc.QueueServiceStub(channel)

    def submit(self, entries: int = 1, model: str = "sd15",
               run_mode: job_pb2.RunMode.ValueType = job_pb2.RUN_MODE_QUEUE,
               priority: job_pb2.Priority.ValueType = job_pb2.PRIORITY_NORMAL, request_id: str = "",
               label: str = "") -> job_pb2.Job:
        request = pb.SubmitJobRequest(
            entries=[make_entry(i, model) for i in range(entries)], origin=origin(run_mode),
            priority=priority, request_id=request_id, label=label)
        return self.stub.SubmitJob(request, timeout=10).job

    def active_ids(self) -> list[str]:
        return [job.job_id for job in self.stub.ListJobs(pb.ListJobsRequest(page_size=1000)).jobs]

    def get(self, job_id: str) -> job_pb2.Job:
        return self.stub.GetJob(pb.GetJobRequest(job_id=job_id), timeout=10).job


def all_events(stub: queue_service_pb2_grpc.QueueServiceStub) -> list[job_pb2.JobEvent]:
    """The queue's whole event log, from the first kept event to the last one, as a watcher
    without a consumer id reads it."""
    last = stub.GetQueueState(pb.GetQueueStateRequest(), timeout=10).state.last_sequence
    events: list[job_pb2.JobEvent] = []
    if last == 0:
        return events
    stream = stub.WatchJobs(pb.WatchJobsRequest(after_sequence=0), timeout=60)
    for reply in stream:
        events.append(reply.event)
        if reply.event.sequence >= last:
            stream.cancel()  # type: ignore[no-untyped-call]
            break
    return events
