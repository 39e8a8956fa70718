"""A real bundle server (and the queue it submits to) on loopback, restartable on the same data
directory, plus the tools the service tests use to break things on purpose: a TCP proxy between
the bundle and the queue that can hold requests, swallow replies or cut connections, and a client
interceptor that loses the reply of a call the server did process.

Everything here talks gRPC to real servers; nothing reaches into a server's internals.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from stablenew.bundle import app as bundle_app
from stablenew.contract.errors import ErrorDetails
from stablenew.runtime.rich_status import details_of
from stablenew.runtime.server import ServiceSpec
from stablenew.runtime.settings import ServerSettings
from stablenew.v1 import bundle_service_pb2 as pb
from stablenew.v1 import bundle_service_pb2_grpc, job_pb2, pipeline_pb2
from stablenew.v1 import queue_service_pb2 as queue_pb
from tests.queue.harness import QueueHarness, all_events
from tests.service_harness import ServiceHarness, open_test_channel

# How long a test waits for something that happens at once on a healthy machine.
PATIENCE_SECONDS = 20.0

_names = itertools.count()


def unique(prefix: str) -> str:
    """A name no other test of the session uses (pack ids, request ids, labels)."""
    return f"{prefix}{next(_names)}"


class BundleHarness(ServiceHarness):
    """A bundle server over one data directory and one packs dir."""

    service = "bundle"

    def __init__(self, data_dir: Path, packs_dir: Path, queue_address: str,
                 env: dict[str, str] | None = None) -> None:
        super().__init__({"STABLENEW_BUNDLE_ADDR": "127.0.0.1:0",
                          "STABLENEW_DATA_DIR": str(data_dir),
                          "STABLENEW_PACKS_DIR": str(packs_dir),
                          "STABLENEW_QUEUE_ADDR": queue_address, **(env or {})})
        self.data_dir = data_dir
        self.packs_dir = packs_dir
        self.stub: bundle_service_pb2_grpc.BundleServiceStub

    def build(self, settings: ServerSettings, env: Mapping[str, str]) -> ServiceSpec:
        self.packs_dir.mkdir(parents=True, exist_ok=True)
        return bundle_app.build(settings, env)

    def connect(self, channel: grpc.Channel) -> None:
        self.stub = bundle_service_pb2_grpc.BundleServiceStub(channel)

    def stub_with(self, *interceptors: grpc.UnaryUnaryClientInterceptor  # type: ignore[type-arg]
                  ) -> tuple[grpc.Channel, bundle_service_pb2_grpc.BundleServiceStub]:
        """A second channel to this server through client interceptors (close it after use)."""
        channel = grpc.intercept_channel(open_test_channel(self.address), *interceptors)
        return channel, bundle_service_pb2_grpc.BundleServiceStub(channel)

    # --- conveniences -------------------------------------------------------------------

    def new_draft(self, name: str = "") -> pb.Draft:
        return self.stub.CreateDraft(pb.CreateDraftRequest(display_name=name or unique("d")),
                                     timeout=10).draft

    def draft(self, draft_id: str) -> pb.Draft:
        return self.stub.GetDraft(pb.GetDraftRequest(draft_id=draft_id), timeout=10).draft

    def add_pack(self, draft_id: str, pack_id: str, rows: list[int] | None = None,
                 prepend: str = "",
                 overrides: pipeline_pb2.PipelineConfig | None = None) -> pb.AddPackPartsResponse:
        request = pb.AddPackPartsRequest(draft_id=draft_id, prompt_pack_id=pack_id,
                                         row_indices=rows or [], prepend_text=prepend)
        if overrides is not None:
            request.config_overrides.CopyFrom(overrides)
        return self.stub.AddPackParts(request, timeout=30)

    def add_manual(self, draft_id: str, prompt: str, config: pipeline_pb2.PipelineConfig,
                   negative: str = "", images: list[str] | None = None) -> pb.AddPartResponse:
        return self.stub.AddPart(pb.AddPartRequest(
            draft_id=draft_id, prompt=prompt, negative_prompt=negative, config=config,
            input_images=images or []), timeout=30)

    def preview_pages(self, draft_id: str, page_size: int) -> list[pb.PreviewDraftResponse]:
        """Every page of the preview, as they came."""
        pages: list[pb.PreviewDraftResponse] = []
        token = ""
        while True:
            page = self.stub.PreviewDraft(pb.PreviewDraftRequest(
                draft_id=draft_id, page_size=page_size, page_token=token), timeout=30)
            pages.append(page)
            token = page.next_page_token
            if not token:
                return pages

    def preview_all(self, draft_id: str, page_size: int
                    ) -> tuple[list[pipeline_pb2.NormalizedJob], list[pb.PreviewDraftResponse]]:
        """Every normalized job, page by page, and the pages as they came."""
        pages = self.preview_pages(draft_id, page_size)
        return [job for page in pages for job in page.jobs], pages

    def enqueue(self, draft_id: str, request_id: str = "",
                run_mode: job_pb2.RunMode.ValueType = job_pb2.RUN_MODE_QUEUE,
                expected_revision: int = 0, label: str = "",
                source: job_pb2.JobSource.ValueType = job_pb2.JOB_SOURCE_UNSPECIFIED,
                priority: job_pb2.Priority.ValueType = job_pb2.PRIORITY_UNSPECIFIED,
                timeout: float = 30) -> job_pb2.Job:
        return self.stub.EnqueueDraft(pb.EnqueueDraftRequest(
            draft_id=draft_id, run_mode=run_mode, request_id=request_id,
            expected_revision=expected_revision, label=label, source=source,
            priority=priority), timeout=timeout).job


def rpc_error(call: Callable[[], object]) -> ErrorDetails:
    """Run a call that must fail and decode its rich status."""
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return details_of(caught.value)


def full_job(queue: QueueHarness, job_id: str) -> job_pb2.Job:
    """The job with its entries (the harness channel passes a bundle over 4 MiB)."""
    return queue.stub.GetJob(queue_pb.GetJobRequest(job_id=job_id, view=job_pb2.JOB_VIEW_FULL),
                             timeout=30).job


def queued_jobs(queue: QueueHarness) -> list[job_pb2.Job]:
    """Every active job of the queue in run order (basic view), following the page tokens."""
    jobs: list[job_pb2.Job] = []
    token = ""
    while True:
        page = queue.stub.ListJobs(queue_pb.ListJobsRequest(page_size=1000, page_token=token),
                                   timeout=30)
        jobs.extend(page.jobs)
        token = page.next_page_token
        if not token:
            return jobs


def jobs_of_draft(queue: QueueHarness, draft_id: str) -> list[job_pb2.Job]:
    return [job for job in queued_jobs(queue) if job.origin.draft_id == draft_id]


def submitted_events_of_draft(queue: QueueHarness, draft_id: str) -> list[job_pb2.JobEvent]:
    """The queue's event log read from the start: the submissions that came from `draft_id`."""
    return [event for event in all_events(queue.stub)
            if event.WhichOneof("payload") == "submitted"
            and event.submitted.job.origin.draft_id == draft_id]


# --- packs on disk -------------------------------------------------------------------------


def write_pack(packs_dir: Path, file_name: str, content: str | bytes | dict[str, Any]) -> Path:
    path = packs_dir / file_name
    if isinstance(content, dict):
        path.write_text(json.dumps(content, indent=1, ensure_ascii=False), encoding="utf-8")
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def preset(stages: tuple[str, ...] = ("txt2img",), **txt2img: Any) -> dict[str, Any]:
    """A pack's `preset_data` running `stages`, with a detection pass and an upscaler."""
    values: dict[str, Any] = {"model": "v1-5-pruned-emaonly", "sampler_name": "Euler a",
                              "steps": 20, "cfg_scale": 7, "width": 512, "height": 512,
                              "seed": -1}
    values.update(txt2img)
    return {
        "txt2img": values,
        "adetailer": {"adetailer_model": "face_yolov8n.pt", "adetailer_confidence": 0.35},
        "upscale": {"upscaler": "R-ESRGAN 4x+", "upscaling_resize": 2},
        "pipeline": {f"{stage}_enabled": True for stage in stages}
        | {"images_per_prompt": 1, "n_iter": 1},
    }


def txt2img_config(width: int = 512, height: int = 512, steps: int = 20, seed: int = -1,
                   batch_size: int = 1, n_iter: int = 1,
                   adetailer: bool = False, upscale: bool = False) -> pipeline_pb2.PipelineConfig:
    """A valid "current config" for a manual prompt."""
    config = pipeline_pb2.PipelineConfig(
        stages=pipeline_pb2.StageFlags(txt2img_enabled=True, adetailer_enabled=adetailer,
                                       upscale_enabled=upscale),
        txt2img=pipeline_pb2.Txt2ImgConfig(model="v1-5-pruned-emaonly", sampler_name="Euler a",
                                           steps=steps, cfg_scale=7.0, width=width,
                                           height=height, seed=seed),
        batch_size=batch_size, n_iter=n_iter)
    if adetailer:
        config.adetailer.passes.add(model="face_yolov8n.pt", confidence=0.35)
    if upscale:
        config.upscale.upscaler = "R-ESRGAN 4x+"
        config.upscale.factor = 2.0
    return config


# --- breaking things on purpose ------------------------------------------------------------


class LostReply(grpc.RpcError):
    """What a client sees when the connection died after the server answered."""

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return "the reply was lost on the way back (simulated)"


class LoseReplies(grpc.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    """Lets the first `count` calls of `method` reach the server and complete there, then throws
    their replies away and raises UNAVAILABLE, as a dropped connection would."""

    def __init__(self, method: str, count: int = 1) -> None:
        self.method = method
        self.remaining = count
        self.lost: list[Any] = []

    def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any,
                              request: Any) -> Any:
        outcome = continuation(details, request)
        if details.method.endswith(f"/{self.method}") and self.remaining > 0:
            self.remaining -= 1
            self.lost.append(outcome.result())  # the server has finished processing the call
            raise LostReply()
        return outcome


@dataclass
class _Link:
    client: socket.socket
    upstream: socket.socket
    threads: list[threading.Thread] = field(default_factory=list)

    def close(self) -> None:
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()


class FaultyLink:
    """A loopback TCP proxy in front of a server (the queue, as the bundle sees it).

    - `hold_requests()` / `release_requests()`: bytes towards the server wait (a slow queue);
      `requests_held` is set once something is waiting.
    - `swallow_replies()`: bytes from the server are dropped (`replies_swallowed` is set); then
      `cut()` closes every connection, as a network failure after the server answered.
    - `target_port` may change while running (a restarted server on a new port); a target that
      refuses the connection makes the proxy close the client side at once (a server that is down).
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self._open = threading.Event()
        self._open.set()
        self.requests_held = threading.Event()
        self._swallow = False
        self.replies_swallowed = threading.Event()
        self._links: list[_Link] = []
        self._lock = threading.Lock()
        self._closed = False
        self._acceptor = threading.Thread(target=self._accept, name="faulty-link", daemon=True)
        self._acceptor.start()

    def hold_requests(self) -> None:
        self.requests_held.clear()
        self._open.clear()

    def release_requests(self) -> None:
        self._open.set()

    def swallow_replies(self) -> None:
        self.replies_swallowed.clear()
        self._swallow = True

    def deliver_replies(self) -> None:
        self._swallow = False

    def cut(self) -> None:
        with self._lock:
            links, self._links = self._links, []
        for link in links:
            link.close()

    def close(self) -> None:
        self._closed = True
        self._open.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        self.cut()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            link = _Link(client, upstream)
            with self._lock:
                self._links.append(link)
            for source, sink, towards_server in ((client, upstream, True),
                                                 (upstream, client, False)):
                thread = threading.Thread(target=self._pump, args=(source, sink, towards_server),
                                          daemon=True)
                link.threads.append(thread)
                thread.start()

    def _pump(self, source: socket.socket, sink: socket.socket, towards_server: bool) -> None:
        with contextlib.suppress(OSError):
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if towards_server and not self._open.is_set():
                    self.requests_held.set()
                    self._open.wait()
                if not towards_server and self._swallow:
                    self.replies_swallowed.set()
                    continue
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

