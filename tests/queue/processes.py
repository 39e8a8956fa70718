"""Queue servers and protocol runners as separate processes, for the fault tests."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

# Ports for servers started later are picked below the kernel's ephemeral range: a port the
# kernel chose for a bind to port 0 can be given to an outgoing connection (the tests open many)
# before the server binds it, which failed a whole session's `stablenew up` once.
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_handed_out: set[int] = set()


def _below_ephemeral_ports() -> range:
    """Ports under the ephemeral range (Linux), or none where it cannot be read."""
    try:
        low = int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return range(0)
    return range(max(1024, low - 12_000), low)


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port free on 127.0.0.1 now, never handed out before by this process."""
    candidates = _below_ephemeral_ports()
    for _ in range(min(len(candidates), 200)):
        port = random.choice(candidates)
        if port not in _handed_out and _bindable(port):
            _handed_out.add(port)
            return port
    with socket.socket() as probe:  # no range known: the kernel's choice
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_serving(address: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.05)
    raise AssertionError(f"{address} did not become SERVING within {timeout} s")


class QueueProcess:
    """`stablenew serve queue` on a fixed port, killable and restartable."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = {**os.environ, "STABLENEW_QUEUE_ADDR": self.address,
                    "STABLENEW_DATA_DIR": str(data_dir), **(env or {})}
        self.log = (data_dir.parent / "queue.log").open("ab")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "stablenew.cli.main", "serve", "queue", "--log-level",
             "WARNING"], env=self.env, stdout=self.log, stderr=self.log)
        wait_serving(self.address)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=10)
        self.log.close()
        return code

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid
