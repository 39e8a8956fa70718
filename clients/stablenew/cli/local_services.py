"""Helpers for starting services on this machine: a free loopback port, and waiting until a
service's standard health check answers SERVING."""

from __future__ import annotations

import socket
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_serving(address: str, timeout: float = 30.0, poll_seconds: float = 0.1) -> None:
    """Return once the gRPC server at `address` reports SERVING; RuntimeError after `timeout`."""
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == (
                        health_pb2.HealthCheckResponse.SERVING):
                    return
            except grpc.RpcError:
                pass
            time.sleep(poll_seconds)
    raise RuntimeError(f"{address} did not become SERVING within {timeout:.0f} s")
