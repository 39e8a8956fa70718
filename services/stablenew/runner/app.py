"""Wiring of the runner service: what `stablenew serve runner` starts.

It serves RunnerService, and runs the worker that leases jobs from the queue
(STABLENEW_QUEUE_ADDR) and drives the WebUI at STABLENEW_WEBUI_URL. With STABLENEW_WEBUI_CMD it
also owns the WebUI process: starts it, waits until its API answers, restarts it after a crash
(bounded) and stops its whole process group on shutdown.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import grpc

from stablenew.contract.model import WebuiState
from stablenew.runner.core import JobRunner, RunnerCore, fresh_capabilities
from stablenew.runner.domain import RunnerState
from stablenew.runner.executor import Executor
from stablenew.runner.queue_client import QueueClient
from stablenew.runner.servicer import RunnerServicer
from stablenew.runner.webui_client import WebuiClient
from stablenew.runner.webui_process import WebuiProcess, WebuiProcessError
from stablenew.runner.worker import Worker
from stablenew.runtime.channel import open_channel
from stablenew.runtime.server import ServiceSpec
from stablenew.runtime.settings import ConfigError, ServerSettings, parse_address, positive_float
from stablenew.v1 import runner_service_pb2, runner_service_pb2_grpc

log = logging.getLogger("stablenew.runner")
SERVICE = runner_service_pb2.DESCRIPTOR.services_by_name["RunnerService"]


@dataclass(frozen=True)
class RunnerConfig:
    runner_id: str
    hostname: str
    webui_url: str
    webui_auth: tuple[str, str] | None
    output_root: Path
    input_root: Path
    advertised_address: str
    webui_start_timeout: float


def _auth(text: str) -> tuple[str, str] | None:
    if not text:
        return None
    user, sep, password = text.partition(":")
    if not sep or not user:
        raise ConfigError("STABLENEW_WEBUI_AUTH: expected user:password")
    return user, password


def _webui_url(text: str) -> tuple[str, tuple[str, str] | None]:
    """The WebUI's base URL without credentials, and the `user:password@` it held (moved to
    the auth, so that no status, log line or error message ever shows them). http(s) only."""
    parts = urlsplit(text.rstrip("/"))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"STABLENEW_WEBUI_URL: expected an http:// or https:// URL with a "
                          f"host, got scheme {parts.scheme!r}")
    if parts.username is None:
        return parts.geturl(), None
    netloc = parts.netloc.rpartition("@")[2]
    credentials = (unquote(parts.username), unquote(parts.password or ""))
    return urlunsplit(parts._replace(netloc=netloc)), credentials


def runner_config(settings: ServerSettings, env: Mapping[str, str]) -> RunnerConfig:
    host = socket.gethostname()
    _, port = parse_address(settings.address, "runner address")
    webui_url, url_auth = _webui_url(settings.webui_url)
    return RunnerConfig(
        runner_id=env.get("STABLENEW_RUNNER_ID") or f"{host}-{port}",
        hostname=host,
        webui_url=webui_url,
        webui_auth=_auth(env.get("STABLENEW_WEBUI_AUTH", "")) or url_auth,
        output_root=Path(env.get("STABLENEW_OUTPUT_DIR") or settings.data_dir / "images"),
        input_root=Path(env.get("STABLENEW_INPUT_DIR") or settings.data_dir / "inputs"),
        advertised_address=env.get("STABLENEW_RUNNER_ADVERTISE_ADDR") or settings.address,
        webui_start_timeout=positive_float(env, "STABLENEW_WEBUI_START_SECONDS", 300.0),
    )


class WebuiSupervisor:
    """Starts the owned WebUI and restarts it after a crash, from a thread of its own."""

    def __init__(self, process: WebuiProcess, client: WebuiClient, state: RunnerState,
                 start_timeout: float) -> None:
        self.process = process
        self.client = client
        self.state = state
        self.start_timeout = start_timeout
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="webui-supervisor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        self.state.set_webui(WebuiState.STARTING, "starting the WebUI")
        try:
            self.process.start()
        except WebuiProcessError as error:
            self.state.set_webui(WebuiState.ERROR, f"cannot start the WebUI: {error}")
            return
        if not self.process.wait_ready(self.client, self.start_timeout):
            self.state.set_webui(WebuiState.ERROR, "the WebUI did not become ready")
        while not self._stop.wait(1.0):
            try:
                self.process.supervise()
            except Exception as error:  # the restart bound was hit: say so, keep serving
                self.state.set_webui(WebuiState.ERROR, str(error))

    def stop(self, grace: float) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.process.stop(grace)


def build(settings: ServerSettings, env: Mapping[str, str] | None = None) -> ServiceSpec:
    env = os.environ if env is None else env
    config = runner_config(settings, env)
    # STABLENEW_WEBUI_CMD: the WebUI this runner owns, if any.
    process = WebuiProcess.from_env(settings.data_dir / "logs", env)
    client = WebuiClient(config.webui_url, auth=config.webui_auth)
    state = RunnerState(config.runner_id, config.hostname, config.webui_url,
                        owns_process=process is not None)
    channel = open_channel("queue", env=env)
    executor = Executor(client, config.output_root, config.input_root, config.runner_id,
                        refresh_capabilities=partial(fresh_capabilities, client, state))
    worker = Worker(JobRunner(QueueClient(channel), client, executor, state,
                              config.advertised_address))
    supervisor = None
    if process is not None:
        supervisor = WebuiSupervisor(process, client, state, config.webui_start_timeout)

    def register(server: grpc.Server) -> None:
        runner_service_pb2_grpc.add_RunnerServiceServicer_to_server(
            RunnerServicer(RunnerCore(state, client, config.output_root)), server)
        if supervisor is not None:
            supervisor.start()
        worker.start()

    def draining() -> None:
        worker.shut_down()

    def stop() -> None:
        worker.stop(timeout=settings.grace_seconds)
        if supervisor is not None:
            supervisor.stop(settings.grace_seconds)
        executor.close()
        channel.close()
        client.close()

    return ServiceSpec(name=settings.service, proto_services=[SERVICE.full_name],
                       register=register, on_draining=draining, on_stop=stop)
