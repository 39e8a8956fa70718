"""What the runner knows about itself and its WebUI: state, capabilities, the current job."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum

from stablenew.contract.model import JobProgress
from stablenew.runner.model_matching import ModelEntry, queue_model_name
from stablenew.runner.webui_client import WebuiClient
from stablenew.runner.webui_errors import WebuiError

log = logging.getLogger("stablenew.runner")


class WebuiState(IntEnum):
    """Numbers as stablenew.v1.WebuiState."""

    UNSPECIFIED = 0
    DISCONNECTED = 1
    STARTING = 2
    READY = 3
    BUSY = 4
    ERROR = 5


@dataclass
class Capabilities:
    models: list[ModelEntry] = field(default_factory=list)
    vaes: list[str] = field(default_factory=list)
    samplers: list[str] = field(default_factory=list)
    schedulers: list[str] = field(default_factory=list)
    upscalers: list[str] = field(default_factory=list)
    adetailer_models: list[str] = field(default_factory=list)
    fetch_time: datetime | None = None


def fetch_capabilities(client: WebuiClient) -> Capabilities:
    return Capabilities(
        models=client.sd_models(), vaes=client.sd_vaes(), samplers=client.samplers(),
        schedulers=client.schedulers(), upscalers=client.upscalers(),
        adetailer_models=client.adetailer_models(), fetch_time=datetime.now(UTC))


class RunnerState:
    """Shared by the worker (writes) and the servicer (reads); every access takes the lock."""

    def __init__(self, runner_id: str, host: str, webui_url: str, owns_process: bool) -> None:
        self.runner_id = runner_id
        self.host = host
        self.webui_url = webui_url
        self.owns_process = owns_process
        self._lock = threading.Lock()
        self._webui_state = WebuiState.DISCONNECTED
        self._reason = "not checked yet"
        self._capabilities: Capabilities | None = None
        self._loaded_title = ""
        self._current_job_id = ""
        self._progress: JobProgress | None = None

    # --- WebUI -------------------------------------------------------------------------

    def refresh_webui(self, client: WebuiClient) -> bool:
        """Check the WebUI; fetch capabilities the first time it answers. True when ready."""
        if not client.is_ready():
            if self.webui[0] != WebuiState.STARTING:  # an owned WebUI still booting says so
                self.set_webui(WebuiState.DISCONNECTED, f"no answer from {self.webui_url}")
            return False
        try:
            if self.capabilities is None:
                self.set_capabilities(fetch_capabilities(client))
            title = client.loaded_model_title()
        except WebuiError as error:
            self.set_webui(WebuiState.ERROR, str(error))
            return False
        with self._lock:
            self._loaded_title = title
            busy = bool(self._current_job_id)
        self.set_webui(WebuiState.BUSY if busy else WebuiState.READY, "")
        return True

    def set_webui(self, state: WebuiState, reason: str) -> None:
        with self._lock:
            if (state, reason) != (self._webui_state, self._reason):
                log.info("WebUI %s %s", state.name, reason)
            self._webui_state, self._reason = state, reason

    def set_capabilities(self, capabilities: Capabilities) -> None:
        with self._lock:
            self._capabilities = capabilities

    @property
    def capabilities(self) -> Capabilities | None:
        with self._lock:
            return self._capabilities

    @property
    def webui(self) -> tuple[WebuiState, str]:
        with self._lock:
            return self._webui_state, self._reason

    @property
    def loaded_model_name(self) -> str:
        """The loaded checkpoint as the queue names models (model_name, no extension)."""
        with self._lock:
            title, capabilities = self._loaded_title, self._capabilities
        return queue_model_name(title, capabilities.models if capabilities else [])

    # --- the current job ---------------------------------------------------------------

    def job_started(self, job_id: str) -> None:
        with self._lock:
            self._current_job_id, self._progress = job_id, None
            if self._webui_state == WebuiState.READY:
                self._webui_state = WebuiState.BUSY

    def job_finished(self) -> None:
        with self._lock:
            self._current_job_id, self._progress = "", None
            if self._webui_state == WebuiState.BUSY:
                self._webui_state = WebuiState.READY

    def set_progress(self, progress: JobProgress) -> None:
        with self._lock:
            self._progress = progress

    @property
    def progress(self) -> JobProgress | None:
        with self._lock:
            return self._progress

    @property
    def current_job_id(self) -> str:
        with self._lock:
            return self._current_job_id
