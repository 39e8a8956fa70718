"""The services of `stablenew up` and `stablenew demo` as child processes.

Each child is `stablenew serve NAME` in its own session (so a Ctrl-C in the terminal reaches only
the supervisor, which stops the children in order) with its output in `<logs>/NAME.log`. Every
child gets `--stop-with-fd` on the read end of one pipe whose write end only this process holds:
when this process ends, even by SIGKILL, the children read end of file and stop as on SIGTERM.
No orphans, whatever happens to the supervisor.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

STOP_SECONDS = 15.0  # SIGTERM drains for STABLENEW_GRACE_SECONDS (3 s by default) first
POLL_SECONDS = 0.1


@dataclass
class Child:
    """One running `stablenew serve NAME`."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def last_words(self, lines: int = 3) -> str:
        """Why it stopped, from its log: its last `stablenew:` error line, else the log's
        last lines."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        written = [line.strip() for line in text.splitlines() if line.strip()]
        ours = [line for line in written if line.startswith("stablenew: ")]
        return ours[-1] if ours else " | ".join(written[-lines:])


class ChildFailedError(Exception):
    """A child exited, or did not become ready in time."""

    def __init__(self, child: Child, what: str) -> None:
        words = child.last_words()
        super().__init__(f"{child.name} {what} (log: {child.log_path})"
                         + (f": {words}" if words else ""))
        self.child = child


class Supervisor:
    """Starts children, watches them, and stops them all on `stop()` or leaving the `with`."""

    def __init__(self, env: Mapping[str, str], logs: Path) -> None:
        self._env = dict(env)
        self._logs = logs
        # os.pipe() descriptors are not inherited: only the read end, passed on purpose, is.
        self._lifeline_read, self._lifeline_write = os.pipe()
        self.groups: list[list[Child]] = []

    @property
    def children(self) -> list[Child]:
        """Every child, in the order started."""
        return [child for group in self.groups for child in group]

    def start(self, *names: str) -> list[Child]:
        """Start `stablenew serve NAME` for each name, as one group: `stop()` stops the groups
        in the reverse order, the children of one group together."""
        group = [self._start(name) for name in names]
        self.groups.append(group)
        return group

    def _start(self, name: str) -> Child:
        self._logs.mkdir(parents=True, exist_ok=True)
        log_path = self._logs / f"{name}.log"
        command = [sys.executable, "-m", "stablenew.cli.main", "serve", name,
                   "--stop-with-fd", str(self._lifeline_read)]
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command, env=self._env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, pass_fds=(self._lifeline_read,),
                start_new_session=True)
        return Child(name, process, log_path)

    def wait_ready(self, child: Child, ready: Callable[[], bool], timeout: float) -> None:
        """Return once `ready()` is true; ChildFailedError if the child exits or time runs out."""
        deadline = time.monotonic() + timeout
        while not ready():
            self.check(child)
            if time.monotonic() > deadline:
                raise ChildFailedError(child, f"not ready within {timeout:.0f} s")
            time.sleep(POLL_SECONDS)

    def check(self, *children: Child) -> None:
        """ChildFailedError for the first of `children` (default: all) that has exited."""
        for child in children or tuple(self.children):
            code = child.process.poll()
            if code is not None:
                raise ChildFailedError(child, f"exited with code {code}")

    def stop(self) -> None:
        """SIGTERM to every child, group by group, the last started first; SIGKILL for any
        still running STOP_SECONDS after its SIGTERM. Further signals to this process wait
        until it is done."""
        previous = {number: signal.signal(number, signal.SIG_IGN)
                    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        try:
            while self.groups:
                running = [c.process for c in self.groups.pop() if c.process.poll() is None]
                for process in running:
                    process.send_signal(signal.SIGTERM)
                deadline = time.monotonic() + STOP_SECONDS
                for process in running:
                    _wait_or_kill(process, deadline)
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)

    def close(self) -> None:
        """Stop the children and let go of the lifeline."""
        self.stop()
        for fd in (self._lifeline_read, self._lifeline_write):
            os.close(fd)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()


def _wait_or_kill(process: subprocess.Popen[bytes], deadline: float) -> None:
    try:
        process.wait(timeout=max(deadline - time.monotonic(), 0))
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
