"""Runner test helpers: normalized jobs with their hashes, a runner server in-process or as a
process, the emulator as a process, its admin endpoint, and waiting for jobs.

The in-process pieces bind port 0 on the loopback; the processes take a free loopback port
(tests/queue/processes.free_port) because the runner and the emulator are addressed by URL.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import requests

from stablenew.contract.config_hash import config_hash
from stablenew.contract.model import (
    AdetailerPass,
    NormalizedJob,
    StageType,
    UpscaleConfig,
    UpscaleMode,
)
from stablenew.contract.proto_mapping import to_proto
from stablenew.runner import app
from stablenew.runner.outputs import png_text
from stablenew.runtime.server import ServiceSpec
from stablenew.runtime.settings import ServerSettings
from stablenew.v1 import job_pb2, pipeline_pb2, queue_service_pb2_grpc, runner_service_pb2_grpc
from stablenew.v1 import queue_service_pb2 as pb
from stablenew.v1 import runner_service_pb2 as rpb
from tests.queue.harness import all_events, origin
from tests.queue.processes import free_port, wait_serving
from tests.service_harness import ServiceHarness, wait_for

MODEL = "v1-5-pruned-emaonly"
TERMINAL = (job_pb2.JOB_STATE_COMPLETED, job_pb2.JOB_STATE_FAILED, job_pb2.JOB_STATE_CANCELLED)
TXT2IMG, IMG2IMG, ADETAILER, UPSCALE = (StageType.TXT2IMG, StageType.IMG2IMG,
                                        StageType.ADETAILER, StageType.UPSCALE)
FULL_PLAN = (TXT2IMG, ADETAILER, UPSCALE)
PYTHON = sys.executable


# --- jobs ------------------------------------------------------------------------------------


def face_pass(model: str = "face_yolov8n.pt") -> AdetailerPass:
    return AdetailerPass(model=model, confidence=0.3, mask_blur=4, dilate_erode=4,
                         denoising_strength=0.4, inpaint_only_masked=True, inpaint_padding=32)


def extras_upscale(factor: float = 2.0, upscaler: str = "Lanczos") -> UpscaleConfig:
    return UpscaleConfig(mode=UpscaleMode.EXTRAS, upscaler=upscaler, factor=factor)


def make_job(index: int = 0, prompt: str = "", stages: Sequence[StageType] = (TXT2IMG,),
             **changes: Any) -> NormalizedJob:
    """A small valid normalized job (64x64, 4 steps) with its config hash."""
    entry = NormalizedJob(
        index=index, prompt=prompt or f"a lighthouse at dusk, variant {index}",
        stage_plan=list(stages), seed=100 + index, model=MODEL, sampler_name="Euler a",
        width=64, height=64, steps=4, cfg_scale=7.0, batch_size=1, n_iter=1)
    if ADETAILER in stages:
        entry.adetailer_passes = [face_pass()]
    if UPSCALE in stages:
        entry.upscale = extras_upscale()
    entry = replace(entry, **changes)
    entry.config_hash = config_hash(entry)
    return entry


def submit(stub: queue_service_pb2_grpc.QueueServiceStub,
           entries: Sequence[NormalizedJob]) -> job_pb2.Job:
    request = pb.SubmitJobRequest(entries=[to_proto(entry) for entry in entries],
                                  origin=origin())
    job: job_pb2.Job = stub.SubmitJob(request, timeout=10).job
    return job


def get_job(stub: queue_service_pb2_grpc.QueueServiceStub, job_id: str) -> job_pb2.Job:
    job: job_pb2.Job = stub.GetJob(pb.GetJobRequest(job_id=job_id), timeout=10).job
    return job


def wait_state(stub: queue_service_pb2_grpc.QueueServiceStub, job_id: str,
               states: Sequence[int] = TERMINAL, timeout: float = 30.0) -> job_pb2.Job:
    def probe() -> job_pb2.Job | None:
        job = get_job(stub, job_id)
        return job if job.state in states else None
    return wait_for(probe, f"job {job_id} to reach {states}", timeout)


def transitions(stub: queue_service_pb2_grpc.QueueServiceStub,
                job_id: str) -> list[job_pb2.JobStateChangedEvent]:
    return [event.state_changed for event in all_events(stub)
            if event.job_id == job_id and event.WhichOneof("payload") == "state_changed"]


# --- image files -----------------------------------------------------------------------------


def stablenew_chunk(png: bytes) -> dict[str, Any]:
    chunk: dict[str, Any] = json.loads(png_text(png)["stablenew"])
    return chunk


def check_image_refs(result: job_pb2.EntryResult, output_root: Path) -> None:
    """Every image a result names exists under the root, with the recorded hash, size and
    seed, and its stablenew chunk names the entry, stage and seed."""
    for image in result.images:
        data = (output_root / image.path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == image.sha256
        assert len(data) == image.size_bytes
        chunk = stablenew_chunk(data)
        assert chunk["entry"] == result.entry_index
        assert chunk["seed"] == image.seed
        assert chunk["stage"] == pipeline_pb2.StageType.Name(image.stage).removeprefix(
            "STAGE_TYPE_").lower()


def read_image(stub: runner_service_pb2_grpc.RunnerServiceStub, path: str,
               chunk_size: int = 0) -> tuple[bytes, list[rpb.ReadImageResponse]]:
    replies = list(stub.ReadImage(rpb.ReadImageRequest(path=path, chunk_size=chunk_size),
                                  timeout=10))
    return b"".join(reply.data for reply in replies), replies


# --- the emulator's admin endpoint -----------------------------------------------------------


class EmulatorAdmin:
    """POST /emulator/v1/faults and GET /emulator/v1/stats over HTTP (for a process or an
    in-process emulator alike)."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.session = requests.Session()
        self.session.trust_env = False  # never through a proxy: loopback only

    def faults(self, **changes: Any) -> dict[str, Any]:
        response = self.session.post(f"{self.url}/emulator/v1/faults", json=changes, timeout=5)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def stats(self) -> dict[str, Any]:
        response = self.session.get(f"{self.url}/emulator/v1/stats", timeout=5)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def progress(self) -> dict[str, Any]:
        response = self.session.get(f"{self.url}/sdapi/v1/progress", timeout=5)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def sampling(self) -> bool:
        """A generation is sampling right now (at least one step done)."""
        state = self.progress()["state"]
        return bool(state["job_count"] > 0 and state["sampling_step"] >= 1)

    def generations(self, prompt_part: str = "") -> list[dict[str, Any]]:
        """Finished generation requests (any status) whose prompt contains `prompt_part`."""
        return [item for item in self.stats()["recent"] if prompt_part in item["prompt"]]

    def close(self) -> None:
        self.session.close()


# --- the runner in-process -------------------------------------------------------------------


class RunnerHarness(ServiceHarness):
    """`stablenew serve runner` in this process (app.build), on a loopback port 0."""

    service = "runner"
    stop_grace = 0.1

    def __init__(self, data_dir: Path, queue_address: str, webui_url: str,
                 runner_id: str = "runner-a", env: Mapping[str, str] | None = None) -> None:
        self.output_root = data_dir / "images"
        self.input_root = data_dir / "inputs"
        self.input_root.mkdir(parents=True, exist_ok=True)
        self.runner_id = runner_id
        super().__init__({
            "STABLENEW_RUNNER_ADDR": "127.0.0.1:0", "STABLENEW_DATA_DIR": str(data_dir),
            "STABLENEW_QUEUE_ADDR": queue_address, "STABLENEW_WEBUI_URL": webui_url,
            "STABLENEW_RUNNER_ID": runner_id, "STABLENEW_OUTPUT_DIR": str(self.output_root),
            "STABLENEW_INPUT_DIR": str(self.input_root), "STABLENEW_GRACE_SECONDS": "0.1",
            **(env or {})})
        self.stub: runner_service_pb2_grpc.RunnerServiceStub

    def build(self, settings: ServerSettings, env: Mapping[str, str]) -> ServiceSpec:
        return app.build(settings, env)

    def connect(self, channel: grpc.Channel) -> None:
        self.stub = runner_service_pb2_grpc.RunnerServiceStub(channel)

    def status(self) -> rpb.RunnerStatus:
        status: rpb.RunnerStatus = self.stub.GetRunnerStatus(
            rpb.GetRunnerStatusRequest(), timeout=10).status
        return status

    def wait_webui(self, state: int, timeout: float = 15.0) -> rpb.RunnerStatus:
        def probe() -> rpb.RunnerStatus | None:
            status = self.status()
            return status if status.webui_state == state else None
        return wait_for(probe, f"runner WebUI state {rpb.WebuiState.Name(state)}",  # type: ignore[arg-type]
                        timeout)


# --- processes -------------------------------------------------------------------------------


def _service_command(*arguments: str) -> list[str]:
    return [PYTHON, "-m", "stablenew.cli.main", "serve", *arguments]


def _base_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("STABLENEW_")}
    return {**env, **extra}


class ManagedProcess:
    """A service process whose output goes to a log file; killed at the end of the test."""

    def __init__(self, command: list[str], env: dict[str, str], log: Path) -> None:
        self.command = command
        self.env = env
        self.log_path = log
        self.process: subprocess.Popen[bytes] | None = None

    def launch(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(self.command, env=self.env, stdout=log, stderr=log,
                                            stdin=subprocess.DEVNULL)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def terminate(self, timeout: float = 10.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def end(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time; nothing if it already ended."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.terminate(timeout=5)

    def close_channel(self) -> None:
        """Close any gRPC channel to the process (subclasses that open one)."""

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class EmulatorProcess(ManagedProcess):
    """`stablenew serve emulator` on a fixed free loopback port (kept across restarts)."""

    def __init__(self, log_dir: Path, *flags: str, port: int = 0) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.flags = flags
        super().__init__(
            _service_command("emulator", "--address", f"127.0.0.1:{self.port}",
                             "--model-load-seconds", "0", "--log-level", "WARNING", *flags),
            _base_env({}), log_dir / f"emulator-{self.port}.log")

    def start(self, wait: bool = True) -> EmulatorProcess:
        self.launch()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        session = requests.Session()
        session.trust_env = False

        def probe() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"the emulator exited: {self.log_text()}")
            try:
                return session.get(f"{self.url}/sdapi/v1/sd-models", timeout=1).ok
            except requests.RequestException:
                return False
        try:
            wait_for(probe, f"the emulator at {self.url}", timeout, interval=0.05)
        finally:
            session.close()


class RunnerProcess(ManagedProcess):
    """`stablenew serve runner` on a fixed free loopback port."""

    def __init__(self, data_dir: Path, queue_address: str, webui_url: str,
                 runner_id: str, output_root: Path | None = None) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.runner_id = runner_id
        self.output_root = output_root or data_dir / "images"
        data_dir.mkdir(parents=True, exist_ok=True)
        env = _base_env({
            "STABLENEW_RUNNER_ADDR": self.address, "STABLENEW_DATA_DIR": str(data_dir),
            "STABLENEW_QUEUE_ADDR": queue_address, "STABLENEW_WEBUI_URL": webui_url,
            "STABLENEW_RUNNER_ID": runner_id, "STABLENEW_OUTPUT_DIR": str(self.output_root),
            "STABLENEW_INPUT_DIR": str(data_dir / "inputs"), "STABLENEW_GRACE_SECONDS": "0.5"})
        super().__init__(_service_command("runner", "--log-level", "WARNING"), env,
                         data_dir / f"{runner_id}.log")
        self.channel: grpc.Channel | None = None
        self.stub: runner_service_pb2_grpc.RunnerServiceStub

    def start(self) -> RunnerProcess:
        self.launch()
        wait_serving(self.address)
        self.channel = grpc.insecure_channel(self.address)
        self.stub = runner_service_pb2_grpc.RunnerServiceStub(self.channel)
        return self

    def close_channel(self) -> None:
        if self.channel is not None:
            self.channel.close()
            self.channel = None
