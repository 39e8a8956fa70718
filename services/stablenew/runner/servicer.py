"""The gRPC edge of the runner: requests in, RunnerCore's use cases, responses out."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from stablenew.runner import mapping
from stablenew.runner.core import RunnerCore
from stablenew.v1 import runner_service_pb2 as pb
from stablenew.v1 import runner_service_pb2_grpc

Context = grpc.ServicerContext


class RunnerServicer(runner_service_pb2_grpc.RunnerServiceServicer):
    """RunnerService; the core raises ServiceError, which the server runtime answers with."""

    def __init__(self, core: RunnerCore) -> None:
        self.core = core

    def GetRunnerStatus(self, request: pb.GetRunnerStatusRequest,
                        context: Context) -> pb.GetRunnerStatusResponse:
        return pb.GetRunnerStatusResponse(status=mapping.status_to_proto(self.core.status()))

    def GetCapabilities(self, request: pb.GetCapabilitiesRequest,
                        context: Context) -> pb.GetCapabilitiesResponse:
        capabilities = self.core.capabilities(refresh=request.refresh)
        return pb.GetCapabilitiesResponse(
            capabilities=mapping.capabilities_to_proto(capabilities))

    def InterruptCurrent(self, request: pb.InterruptCurrentRequest,
                         context: Context) -> pb.InterruptCurrentResponse:
        job_id = self.core.interrupt_current()
        return pb.InterruptCurrentResponse(interrupted=bool(job_id), job_id=job_id)

    def ReadImage(self, request: pb.ReadImageRequest,
                  context: Context) -> Iterator[pb.ReadImageResponse]:
        for chunk in self.core.read_image(request.path, request.chunk_size):
            yield pb.ReadImageResponse(data=chunk.data, offset=chunk.offset,
                                       total_size=chunk.total_size)
