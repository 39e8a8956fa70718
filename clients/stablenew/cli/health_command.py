"""`stablenew health`: ask each service's standard health service."""

from __future__ import annotations

import argparse
import json
import os

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from stablenew.runtime.channel import open_channel
from stablenew.runtime.settings import SERVICE_NAMES, ConfigError, service_address


def check(service: str, timeout: float) -> dict[str, str]:
    """{"service", "address", "status"[, "error"]}: SERVING, NOT_SERVING or UNREACHABLE."""
    address = service_address(service, os.environ)
    result = {"service": service, "address": address}
    with open_channel(service) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        except grpc.RpcError as error:
            return result | {"status": "UNREACHABLE",
                             "error": f"{error.code().name}: {error.details()}"}
    return result | {"status": health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}


def run(args: argparse.Namespace) -> int:
    unknown = sorted(set(args.services) - set(SERVICE_NAMES))
    if unknown:
        known = ", ".join(SERVICE_NAMES)
        raise ConfigError(f"unknown service {', '.join(unknown)}; one of {known}")
    results = [check(service, args.timeout) for service in (args.services or SERVICE_NAMES)]
    if args.json:
        print(json.dumps({"services": results}, indent=2))
    else:
        for result in results:
            error = f"  ({result['error']})" if "error" in result else ""
            print(f"{result['service']:<8} {result['address']:<22} {result['status']}{error}")
    return 0 if all(result["status"] == "SERVING" for result in results) else 1
