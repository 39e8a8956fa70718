"""Wiring of the bundle service: what `stablenew serve bundle` starts.

Packs come from STABLENEW_PACKS_DIR (default: <data dir>/packs); drafts live in
<data dir>/bundle.sqlite3; EnqueueDraft submits to the queue at STABLENEW_QUEUE_ADDR.
STABLENEW_MAX_VARIANTS_PER_ROW (default 512, at most 8192) caps what one pack row may expand to.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import grpc

from stablenew.bundle.core import BundleCore
from stablenew.bundle.expansion import (
    DEFAULT_MAX_VARIANTS_PER_ROW,
    HARD_MAX_VARIANTS_PER_ROW,
    ExpansionLimits,
)
from stablenew.bundle.mapping import JobMessages
from stablenew.bundle.normalize import NormalizedBundle
from stablenew.bundle.packs.library import PackLibrary
from stablenew.bundle.servicer import BundleServicer
from stablenew.bundle.store import BundleStore
from stablenew.contract.errors import Code, ErrorReason, ServiceError
from stablenew.contract.model import Job, JobOrigin, Priority
from stablenew.contract.proto_mapping import fill_proto, from_proto
from stablenew.runtime.channel import open_channel
from stablenew.runtime.server import ServiceSpec
from stablenew.runtime.settings import ConfigError, ServerSettings, positive_int
from stablenew.v1 import (
    bundle_service_pb2,
    bundle_service_pb2_grpc,
    job_pb2,
    queue_service_pb2_grpc,
)
from stablenew.v1 import (
    queue_service_pb2 as queue_pb,
)

T = TypeVar("T")
SERVICE = bundle_service_pb2.DESCRIPTOR.services_by_name["BundleService"]


class QueueSubmitter:
    """The queue as the bundle core sees it: submit a bundle, look a job up."""

    def __init__(self, channel: grpc.Channel, job_messages: JobMessages) -> None:
        self.stub = queue_service_pb2_grpc.QueueServiceStub(channel)
        self.job_messages = job_messages

    def submit(self, bundle: NormalizedBundle, origin: JobOrigin, priority: Priority,
               label: str, request_id: str) -> Job:
        request = queue_pb.SubmitJobRequest(priority=job_pb2.Priority.ValueType(priority),
                                            label=label, request_id=request_id)
        fill_proto(origin, request.origin)
        request.entries.extend(self.job_messages.all(bundle))
        return from_proto(Job, self._call(lambda: self.stub.SubmitJob(request, timeout=60)).job)

    def lookup(self, job_id: str) -> Job:
        request = queue_pb.GetJobRequest(job_id=job_id, view=job_pb2.JOB_VIEW_BASIC)
        return from_proto(Job, self._call(lambda: self.stub.GetJob(request, timeout=10)).job)

    @staticmethod
    def _call(call: Callable[[], T]) -> T:
        try:
            return call()
        except grpc.RpcError as error:
            code = error.code()
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise ServiceError(Code.UNAVAILABLE, ErrorReason.DEPENDENCY_UNAVAILABLE,
                                   f"the queue did not answer ({code.name}); retrying is "
                                   "safe: a draft revision is queued at most once") from None
            raise


def expansion_limits(env: Mapping[str, str]) -> ExpansionLimits:
    cap = positive_int(env, "STABLENEW_MAX_VARIANTS_PER_ROW", DEFAULT_MAX_VARIANTS_PER_ROW)
    if cap > HARD_MAX_VARIANTS_PER_ROW:
        raise ConfigError(f"STABLENEW_MAX_VARIANTS_PER_ROW: {cap} is over the hard maximum "
                          f"of {HARD_MAX_VARIANTS_PER_ROW} variants a row")
    return ExpansionLimits(cap)


def build(settings: ServerSettings, env: Mapping[str, str] | None = None) -> ServiceSpec:
    env = os.environ if env is None else env
    store = BundleStore(settings.data_dir / "bundle.sqlite3",
                        settings.sqlite_synchronous)
    packs_dir = Path(env.get("STABLENEW_PACKS_DIR") or settings.data_dir / "packs")
    packs_dir.mkdir(parents=True, exist_ok=True)
    channel = open_channel("queue", env=env)
    job_messages = JobMessages()
    queue = QueueSubmitter(channel, job_messages)
    core = BundleCore(store, PackLibrary(packs_dir), queue.submit, queue.lookup,
                      expansion_limits(env))

    def register(server: grpc.Server) -> None:
        bundle_service_pb2_grpc.add_BundleServiceServicer_to_server(
            BundleServicer(core, job_messages), server)

    def stop() -> None:
        channel.close()
        store.close()

    return ServiceSpec(name=settings.service, proto_services=[SERVICE.full_name],
                       register=register, on_stop=stop)
