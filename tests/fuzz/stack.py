"""Every service as its own process over one temporary directory, the way `stablenew serve`
runs them: queue, history (following the queue), bundle (submitting to the queue), the WebUI
emulator and a runner driving it. For the RPC fuzz: it needs the four gRPC services up, and
afterwards whether any of them exited and what their logs say."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from grpc_health.v1 import health_pb2

from tests.history.processes import HistoryProcess, health_of
from tests.queue.processes import QueueProcess, free_port, wait_serving
from tests.runner.harness import (
    EmulatorProcess,
    ManagedProcess,
    RunnerProcess,
    _base_env,
    _service_command,
)

# A traceback in a log: the start of one, whether printed or inside a JSON log line.
TRACEBACK = re.compile(r"Traceback \(most recent call last\)")


class BundleProcess(ManagedProcess):
    """`stablenew serve bundle` on a fixed free loopback port, submitting to `queue_address`."""

    def __init__(self, data_dir: Path, queue_address: str) -> None:
        self.address = f"127.0.0.1:{free_port()}"
        data_dir.mkdir(parents=True, exist_ok=True)
        env = _base_env({"STABLENEW_BUNDLE_ADDR": self.address,
                         "STABLENEW_DATA_DIR": str(data_dir),
                         "STABLENEW_QUEUE_ADDR": queue_address})
        super().__init__(_service_command("bundle", "--log-level", "WARNING"), env,
                         data_dir.parent / "bundle.log")

    def start(self) -> BundleProcess:
        self.launch()
        wait_serving(self.address)
        return self


class ServiceStack:
    """The five processes, started in dependency order and stopped in reverse."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.queue = QueueProcess(root / "queue-data")
        self.history = HistoryProcess(root / "history-data", self.queue.address)
        self.bundle = BundleProcess(root / "bundle-data", self.queue.address)
        self.emulator = EmulatorProcess(root, "--step-seconds", "0.002")
        self.runner = RunnerProcess(root / "runner", self.queue.address, self.emulator.url,
                                    "fuzz-runner")

    @property
    def addresses(self) -> Mapping[str, str]:
        """The gRPC services by name (as tests/fuzz/rpc_fuzz.py names them)."""
        return {"bundle": self.bundle.address, "queue": self.queue.address,
                "runner": self.runner.address, "history": self.history.address}

    def start(self) -> None:
        self.queue.start()
        self.history.start()
        self.bundle.start()
        self.emulator.start()
        self.runner.start()

    def exits(self) -> dict[str, int]:
        """The services that are no longer running, with their exit codes."""
        processes = {"queue": self.queue.process, "history": self.history.process,
                     "bundle": self.bundle.process, "emulator": self.emulator.process,
                     "runner": self.runner.process}
        return {name: code for name, process in processes.items()
                if process is not None and (code := process.poll()) is not None}

    def unanswering(self) -> list[str]:
        """The gRPC services whose health check does not answer SERVING (exited, or refusing
        every call)."""
        return [name for name, address in self.addresses.items()
                if health_of(address) != health_pb2.HealthCheckResponse.SERVING]

    def logs(self) -> dict[str, str]:
        """Each service's log so far."""
        paths = {"queue": self.root / "queue.log", "history": self.history.log_path}
        return {**{name: path.read_text(errors="replace") if path.exists() else ""
                   for name, path in paths.items()},
                "bundle": self.bundle.log_text(), "emulator": self.emulator.log_text(),
                "runner": self.runner.log_text()}

    def tracebacks(self) -> dict[str, int]:
        """How many tracebacks each service's log holds."""
        return {name: len(TRACEBACK.findall(text)) for name, text in self.logs().items()}

    def stop(self) -> None:
        for managed in (self.runner, self.emulator, self.bundle):
            managed.close_channel()
            managed.end()
        for process in (self.history, self.queue):
            if process.process is not None and process.process.poll() is None:
                process.stop()


@contextmanager
def running_stack(root: Path) -> Iterator[ServiceStack]:
    """A started stack, stopped at the end whatever happens."""
    stack = ServiceStack(root)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
