"""A real history server (in this process) fed by a real queue server, restartable on the same
data directory, with helpers to wait for the history to catch up."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from stablenew.history import app
from stablenew.history.ingest import INGESTION_HEALTH
from stablenew.runtime.server import ServiceSpec
from stablenew.runtime.settings import ServerSettings
from stablenew.v1 import history_service_pb2 as pb
from stablenew.v1 import history_service_pb2_grpc, job_pb2
from tests.service_harness import ServiceHarness, wait_for

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# The health name that is SERVING only while the history is caught up with the queue.
INGESTION = INGESTION_HEALTH


class HistoryHarness(ServiceHarness):
    """A history server over one data directory."""

    service = "history"

    def __init__(self, data_dir: Path, queue_address: str = "127.0.0.1:1",
                 env: dict[str, str] | None = None) -> None:
        super().__init__({"STABLENEW_HISTORY_ADDR": "127.0.0.1:0",
                          "STABLENEW_DATA_DIR": str(data_dir),
                          "STABLENEW_QUEUE_ADDR": queue_address,
                          "STABLENEW_HISTORY_RETRY_MAX_SECONDS": "0.5",
                          **(env or {})})
        self.data_dir = data_dir
        self.stub: history_service_pb2_grpc.HistoryServiceStub

    @property
    def database(self) -> Path:
        return self.data_dir / app.DATABASE_NAME

    def build(self, settings: ServerSettings, env: Mapping[str, str]) -> ServiceSpec:
        return app.build(settings, env)

    def connect(self, channel: grpc.Channel) -> None:
        self.stub = history_service_pb2_grpc.HistoryServiceStub(channel)

    def health(self, service: str = "") -> int:
        """The health of `service` ("": the whole server; INGESTION: caught up)."""
        assert self.channel is not None
        reply = health_pb2_grpc.HealthStub(self.channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5)
        status: int = reply.status
        return status

    def get(self, job_id: str) -> pb.HistoryServiceGetJobResponse:
        return self.stub.GetJob(pb.HistoryServiceGetJobRequest(job_id=job_id), timeout=10)

    def find(self, job_id: str) -> pb.HistoryServiceGetJobResponse | None:
        try:
            return self.get(job_id)
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise

    def wait_state(self, job_id: str, state: job_pb2.JobState.ValueType,
                   transitions: int | None = None) -> pb.HistoryServiceGetJobResponse:
        """The record once it reached `state` (and has that many transitions)."""
        def reached() -> pb.HistoryServiceGetJobResponse | None:
            found = self.find(job_id)
            if found is None or found.job.state != state:
                return None
            if transitions is not None and len(found.transitions) != transitions:
                return None
            return found
        return wait_for(reached, f"job {job_id} to be {job_pb2.JobState.Name(state)}")

    def wait_health(self, status: int, service: str = "") -> None:
        wait_for(lambda: self.health(service) == status,
                 f"health of {service!r} "
                 f"{health_pb2.HealthCheckResponse.ServingStatus.Name(status)}")

    def ingestion_status(self) -> pb.GetIngestionStatusResponse:
        return self.stub.GetIngestionStatus(pb.GetIngestionStatusRequest(), timeout=10)

    def list_ids(self, page_size: int = 1000, **filter_fields: object) -> list[str]:
        request = pb.HistoryServiceListJobsRequest(
            filter=pb.JobFilter(**filter_fields), page_size=page_size)  # type: ignore[arg-type]
        return [job.job_id for job in self.stub.ListJobs(request, timeout=10).jobs]
