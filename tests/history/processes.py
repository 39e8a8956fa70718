"""`stablenew serve history` as a separate process, killable and restartable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from stablenew.history.ingest import INGESTION_HEALTH
from tests.queue.processes import free_port


def health_of(address: str, service: str = "") -> int | None:
    """The health status of `service`, or None while nothing answers."""
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=1)
        except grpc.RpcError:
            return None
    status: int = reply.status
    return status


class HistoryProcess:
    """The history service in its own process, on a fixed port, following `queue_address`."""

    def __init__(self, data_dir: Path, queue_address: str,
                 env: dict[str, str] | None = None) -> None:
        self.address = f"127.0.0.1:{free_port()}"
        self.data_dir = data_dir
        self.env = {**os.environ, "STABLENEW_HISTORY_ADDR": self.address,
                    "STABLENEW_DATA_DIR": str(data_dir), "STABLENEW_QUEUE_ADDR": queue_address,
                    "STABLENEW_HISTORY_RETRY_MAX_SECONDS": "0.5", **(env or {})}
        self.log_path = data_dir.parent / "history.log"
        self.process: subprocess.Popen[bytes] | None = None

    def spawn(self) -> None:
        """Start the process without waiting for it."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "stablenew.cli.main", "serve", "history", "--log-level",
                 "WARNING"], env=self.env, stdout=log, stderr=log)

    def start(self, timeout: float = 30.0) -> None:
        """Start it and wait until its ingestion is SERVING (caught up with the queue)."""
        self.spawn()
        self.wait_status(health_pb2.HealthCheckResponse.SERVING, timeout, INGESTION_HEALTH)

    def wait_status(self, status: int, timeout: float = 30.0, service: str = "") -> None:
        """Wait until the health of `service` ("": the server) is `status`."""
        deadline = time.monotonic() + timeout
        while health_of(self.address, service) != status:
            assert self.process is not None and self.process.poll() is None, self.output()
            if time.monotonic() > deadline:
                raise AssertionError(f"history not {status} within {timeout} s\n{self.output()}")
            time.sleep(0.05)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=15)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""
