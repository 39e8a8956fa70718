"""Owning the WebUI process when the runner is given STABLENEW_WEBUI_CMD.

The WebUI runs in a process group of its own (start_new_session) because a real one is a
shell script that starts Python that may start helpers: stopping it means signalling the whole
group, SIGTERM first and SIGKILL after a grace period, or GPU memory stays held by orphans.
Its stdout and stderr go to a log file whose tail explains a crash in the runner's status.

Restarts after a crash are bounded (by default 3 within 10 minutes, a sliding window): a WebUI
that crashes on start-up would otherwise be restarted forever while the runner looks healthy.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Protocol

log = logging.getLogger("stablenew.runner.webui")

ENV_COMMAND = "STABLENEW_WEBUI_CMD"
LOG_NAME = "webui.log"
# The log is rotated (one old copy kept) when a start finds it larger than this.
MAX_LOG_BYTES = 20 * 1024 * 1024
TAIL_LINES = 15
_TAIL_BYTES = 16 * 1024
# After the group leader has exited, how long SIGKILL waits for the group to disappear.
_KILL_WAIT_SECONDS = 5.0


class ReadinessProbe(Protocol):
    """What wait_ready needs from WebuiClient (a Protocol so tests can pass a stand-in)."""

    def is_ready(self) -> bool: ...


class WebuiPhase(Enum):
    NOT_STARTED = "not started"
    STARTING = "starting"
    READY = "ready"
    EXITED = "exited"
    STOPPED = "stopped"


@dataclass(frozen=True)
class WebuiProcessState:
    phase: WebuiPhase
    pid: int | None
    exit_code: int | None
    # Why the WebUI is in this phase; for EXITED the exit and the tail of its log.
    reason: str
    restarts: int  # restarts within the current window
    max_restarts: int


class WebuiProcessError(RuntimeError):
    """The WebUI command could not be started."""


class RestartLimitError(WebuiProcessError):
    """The WebUI crashed more often than the restart bound allows."""


class WebuiProcess:
    """One WebUI started from a command line; thread-safe (a supervisor thread restarts it
    while the service's shutdown stops it)."""

    def __init__(self, command: str | Sequence[str], log_dir: Path | str,
                 max_restarts: int = 3, restart_window: float = 600.0,
                 env: Mapping[str, str] | None = None, cwd: Path | str | None = None,
                 poll_interval: float = 0.25) -> None:
        self.args = shlex.split(command) if isinstance(command, str) else list(command)
        if not self.args:
            raise ValueError(f"{ENV_COMMAND} is empty: no WebUI command to run")
        self.log_path = Path(log_dir) / LOG_NAME
        self.max_restarts = max_restarts
        self.restart_window = restart_window
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.poll_interval = poll_interval
        # _control serialises start/restart/stop; _lock guards the fields read by `state`.
        self._control = threading.RLock()
        self._lock = threading.Lock()
        self._wake = threading.Event()  # set by stop() to end a wait_ready early
        self._process: subprocess.Popen[bytes] | None = None
        self._phase = WebuiPhase.NOT_STARTED
        self._exit_code: int | None = None
        self._reason = "not started"
        self._restart_times: list[float] = []
        self._stopping = False
        self._limit_logged = False
        self._log_offset = 0
        self._probe: ReadinessProbe | None = None

    @classmethod
    def from_env(cls, log_dir: Path | str, environ: Mapping[str, str] | None = None,
                 max_restarts: int = 3, restart_window: float = 600.0) -> WebuiProcess | None:
        """The process STABLENEW_WEBUI_CMD describes, or None when it is unset."""
        command = (os.environ if environ is None else environ).get(ENV_COMMAND, "").strip()
        if not command:
            return None
        return cls(command, log_dir, max_restarts=max_restarts, restart_window=restart_window)

    # Status -------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None else None

    @property
    def alive(self) -> bool:
        process = self._process
        return process is not None and process.poll() is None

    @property
    def state(self) -> WebuiProcessState:
        self._notice_exit()
        with self._lock:
            return WebuiProcessState(self._phase, self.pid, self._exit_code, self._reason,
                                     len(self._recent_restarts()), self.max_restarts)

    def _notice_exit(self) -> None:
        """Turn STARTING/READY into EXITED once the process is gone (it crashed)."""
        process = self._process
        if process is None or process.poll() is None:
            return
        with self._lock:
            if self._phase not in (WebuiPhase.STARTING, WebuiPhase.READY):
                return
            self._phase = WebuiPhase.EXITED
            self._exit_code = process.returncode
            self._reason = self._exit_reason(process.returncode)
        log.warning("the WebUI exited", extra={"exit_code": process.returncode})

    def _exit_reason(self, code: int) -> str:
        how = f"was killed by {_signal_name(-code)}" if code < 0 else f"exited with code {code}"
        tail = self.log_tail()
        return f"the WebUI {how}; last log lines:\n{tail}" if tail else f"the WebUI {how}"

    def log_tail(self, lines: int = TAIL_LINES) -> str:
        """The last lines this run wrote to the log."""
        try:
            with self.log_path.open("rb") as handle:
                size = handle.seek(0, os.SEEK_END)
                handle.seek(max(self._log_offset, size - _TAIL_BYTES))
                text = handle.read().decode("utf-8", errors="replace")
        except OSError:
            return ""
        kept = [line.rstrip() for line in text.splitlines() if line.strip()]
        return "\n".join(kept[-lines:])

    # Start, readiness ---------------------------------------------------------------------

    def start(self) -> None:
        """Launch the WebUI (no-op while it runs). Raises WebuiProcessError if it cannot."""
        with self._control:
            if self.alive:
                return
            self._stopping = False
            self._wake.clear()
            self._launch()

    def _launch(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._rotate_log()
        with self.log_path.open("ab") as log_file:
            stamp = datetime.now(UTC).isoformat(timespec="seconds")
            log_file.write(f"--- {stamp} stablenew starts: {shlex.join(self.args)}\n".encode())
            log_file.flush()
            self._log_offset = log_file.tell()
            try:
                process = subprocess.Popen(
                    self.args, stdin=subprocess.DEVNULL, stdout=log_file,
                    stderr=subprocess.STDOUT, start_new_session=True, cwd=self.cwd,
                    env={**os.environ, **self.env} if self.env is not None else None)
            except OSError as error:
                message = f"cannot start the WebUI ({shlex.join(self.args)}): {error}"
                self._set(WebuiPhase.EXITED, None, message)
                raise WebuiProcessError(message) from error
        self._process = process
        self._set(WebuiPhase.STARTING, None, "started; waiting for its API to answer")
        log.info("started the WebUI", extra={"pid": process.pid, "log": str(self.log_path)})

    def _rotate_log(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            if self.log_path.stat().st_size > MAX_LOG_BYTES:
                self.log_path.replace(self.log_path.with_name(LOG_NAME + ".1"))

    def _set(self, phase: WebuiPhase, exit_code: int | None, reason: str) -> None:
        with self._lock:
            self._phase, self._exit_code, self._reason = phase, exit_code, reason

    def wait_ready(self, client: ReadinessProbe, timeout: float) -> bool:
        """Poll client.is_ready() until it is true (READY), the process exits, stop() is
        called, or `timeout` seconds pass. The client is kept for supervise()."""
        self._probe = client
        deadline = time.monotonic() + timeout
        while True:
            if self.state.phase not in (WebuiPhase.STARTING, WebuiPhase.READY):
                return False
            if client.is_ready():
                return self._mark_ready()
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._wake.wait(min(self.poll_interval, remaining)):
                return False

    def _mark_ready(self) -> bool:
        # The port may answer for another WebUI when ours failed to bind it: check ours lives.
        if not self.alive:
            self._notice_exit()
            return False
        with self._lock:
            if self._phase is WebuiPhase.STARTING:
                self._phase, self._reason = WebuiPhase.READY, "its API answers"
                log.info("the WebUI is ready", extra={"pid": self.pid})
            return self._phase is WebuiPhase.READY

    # Restart, supervision -----------------------------------------------------------------

    def _recent_restarts(self) -> list[float]:
        now = time.monotonic()
        self._restart_times = [t for t in self._restart_times if now - t < self.restart_window]
        return self._restart_times

    def restart(self, grace: float = 10.0) -> None:
        """Stop (if running) and start again. Raises RestartLimitError when max_restarts
        restarts already happened within restart_window seconds."""
        with self._control:
            with self._lock:
                recent = self._recent_restarts()
                if len(recent) >= self.max_restarts:
                    raise self._limit_error()
                recent.append(time.monotonic())
            self._stopping = False
            self._wake.clear()
            if self._process is not None:
                self._terminate(self._process, grace)
            self._launch()

    def _limit_error(self) -> RestartLimitError:
        minutes = self.restart_window / 60
        message = (f"the WebUI was restarted {self.max_restarts} times within {minutes:g} "
                   f"minutes and is not restarted again; {self._reason}")
        self._reason = message
        return RestartLimitError(message)

    def supervise(self, client: ReadinessProbe | None = None) -> WebuiProcessState:
        """One supervision tick, cheap enough to call every second: restarts a crashed WebUI
        (within the bound; RestartLimitError beyond it) and marks a restarted one READY once
        its API answers. Does nothing after stop()."""
        probe = client or self._probe
        with self._control:
            state = self.state
            if self._stopping or state.phase is not WebuiPhase.EXITED:
                restarted = False
            else:
                self._restart_after_crash(state)
                restarted = True
        if not restarted and state.phase is WebuiPhase.STARTING and probe is not None \
                and probe.is_ready():
            self._mark_ready()
        return self.state

    def _restart_after_crash(self, state: WebuiProcessState) -> None:
        try:
            self.restart()
        except RestartLimitError as error:
            if not self._limit_logged:  # supervise is called every second: say it once
                log.error("%s", error)
                self._limit_logged = True
            raise
        self._limit_logged = False
        log.warning("restarted the WebUI after it exited",
                    extra={"exit_code": state.exit_code, "pid": self.pid})

    # Stop ---------------------------------------------------------------------------------

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the WebUI's whole process group, SIGKILL it after `grace` seconds."""
        self._stopping = True  # before taking the lock: a supervise tick must not restart
        self._wake.set()
        with self._control:
            self._stopping = True
            process = self._process
            if process is not None:
                self._terminate(process, grace)
                self._set(WebuiPhase.STOPPED, process.returncode, "stopped by the runner")
            else:
                self._set(WebuiPhase.STOPPED, None, "stopped by the runner")

    @staticmethod
    def _terminate(process: subprocess.Popen[bytes], grace: float) -> None:
        group = process.pid  # start_new_session: the group id is the leader's pid
        _signal_group(group, signal.SIGTERM)
        deadline = time.monotonic() + grace
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)
        # The leader may be gone while its children still shut down: give them the rest.
        while _group_alive(group) and time.monotonic() < deadline:
            time.sleep(0.05)
        if process.poll() is None or _group_alive(group):
            log.warning("the WebUI did not stop in %.1f s; killing it", grace)
            _signal_group(group, signal.SIGKILL)
            process.wait(timeout=_KILL_WAIT_SECONDS)
            kill_deadline = time.monotonic() + _KILL_WAIT_SECONDS
            while _group_alive(group) and time.monotonic() < kill_deadline:
                time.sleep(0.05)


def _signal_group(group: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(group, signum)


def _group_alive(group: int) -> bool:
    """Whether any process of the group is still running (zombies do not count: one left to
    an init that does not reap would otherwise keep a stop waiting for nothing)."""
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _has_running_member(group)


def _has_running_member(group: int) -> bool:
    proc = Path("/proc")
    if not proc.is_dir():
        return True  # no /proc to tell zombies apart: trust kill(0)
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 2 and fields[0] != "Z" and fields[2] == str(group):
            return True
    return False


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
