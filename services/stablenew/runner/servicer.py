"""The gRPC edge of the runner: status, capabilities, interrupt, and image files in chunks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc

from stablenew.contract.errors import Code, ErrorReason, ServiceError, invalid_argument
from stablenew.runner import mapping, outputs
from stablenew.runner.status import RunnerState, fetch_capabilities
from stablenew.runner.webui_client import WebuiClient
from stablenew.runner.webui_errors import WebuiError
from stablenew.v1 import runner_service_pb2 as pb
from stablenew.v1 import runner_service_pb2_grpc

Context = grpc.ServicerContext
DEFAULT_CHUNK = 64 * 1024
MAX_CHUNK = 1024 * 1024


def _webui_unavailable(error: WebuiError) -> ServiceError:
    return ServiceError(Code.UNAVAILABLE, ErrorReason.WEBUI_UNAVAILABLE,
                        f"the WebUI did not answer: {error}")


class RunnerServicer(runner_service_pb2_grpc.RunnerServiceServicer):
    def __init__(self, state: RunnerState, client: WebuiClient, output_root: Path) -> None:
        self.state = state
        self.client = client
        self.output_root = output_root

    def GetRunnerStatus(self, request: pb.GetRunnerStatusRequest,
                        context: Context) -> pb.GetRunnerStatusResponse:
        return pb.GetRunnerStatusResponse(status=mapping.status_to_proto(self.state))

    def GetCapabilities(self, request: pb.GetCapabilitiesRequest,
                        context: Context) -> pb.GetCapabilitiesResponse:
        capabilities = self.state.capabilities
        if request.refresh or capabilities is None:
            try:
                capabilities = fetch_capabilities(self.client)
            except WebuiError as error:
                raise _webui_unavailable(error) from None
            self.state.set_capabilities(capabilities)
        return pb.GetCapabilitiesResponse(
            capabilities=mapping.capabilities_to_proto(capabilities))

    def InterruptCurrent(self, request: pb.InterruptCurrentRequest,
                         context: Context) -> pb.InterruptCurrentResponse:
        job_id = self.state.current_job_id
        try:
            self.client.interrupt()
        except WebuiError as error:
            raise _webui_unavailable(error) from None
        return pb.InterruptCurrentResponse(interrupted=bool(job_id), job_id=job_id)

    def ReadImage(self, request: pb.ReadImageRequest,
                  context: Context) -> Iterator[pb.ReadImageResponse]:
        if request.chunk_size < 0 or request.chunk_size > MAX_CHUNK:
            raise invalid_argument("chunk_size", f"0 (default {DEFAULT_CHUNK}) to {MAX_CHUNK}")
        path = self._image_path(request.path)
        chunk_size = request.chunk_size or DEFAULT_CHUNK
        total = path.stat().st_size
        with path.open("rb") as handle:
            offset = 0
            while chunk := handle.read(chunk_size):
                yield pb.ReadImageResponse(data=chunk, offset=offset, total_size=total)
                offset += len(chunk)

    def _image_path(self, relative: str) -> Path:
        if not relative:
            raise invalid_argument("path", "required")
        try:
            path = outputs.resolve_inside(self.output_root, relative)
        except outputs.UnsafePathError as error:
            raise ServiceError(Code.PERMISSION_DENIED, ErrorReason.PATH_OUTSIDE_ROOT,
                               str(error)) from None
        if not path.is_file():
            raise ServiceError(Code.NOT_FOUND, ErrorReason.IMAGE_NOT_FOUND,
                               f"no image {relative!r} under the output root")
        return path
