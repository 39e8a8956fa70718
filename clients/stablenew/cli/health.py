"""The health checks of the CLI: the standard gRPC health check of one service, and whether a
WebUI (or the emulator) answers its API.

Health is gRPC's own protocol (grpc.health.v1), not a StableNew API, and the SDK has no call for
it; this is the CLI's one gRPC call of its own. The channel is the SDK's own (`open_channel`,
configured by `ClientConfig`: address, TLS roots, message limits), so it dials what the SDK dials.
Health needs no token: the services exempt it, so probes work without credentials.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
import requests
from grpc_health.v1 import health_pb2, health_pb2_grpc

from stablenew.cli.output import service_at, tls_mismatch
from stablenew.sdk import ClientConfig
from stablenew.sdk.transport import open_channel

UNREACHABLE = "UNREACHABLE"


@dataclass(frozen=True)
class Health:
    """A service's answer: SERVING, NOT_SERVING, ... or UNREACHABLE with the reason."""

    status: str
    error: str = ""

    @property
    def serving(self) -> bool:
        """Whether the service serves its RPCs."""
        return self.status == "SERVING"


def check(config: ClientConfig, service: str, timeout: float) -> Health:
    """Ask `service` ("queue", ...) at its configured address, within `timeout` seconds."""
    channel: grpc.Channel = open_channel(config, service, config.addresses[service])
    with channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        except grpc.RpcError as error:
            return Health(UNREACHABLE, _unreachable_reason(config, service, error))
    return Health(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def webui_answers(url: str, timeout: float) -> bool:
    """Whether a Stable Diffusion WebUI (or an emulator) answers its API at `url`."""
    with requests.Session() as session:
        session.trust_env = False  # ask the URL itself, never through a proxy
        try:
            reply = session.get(f"{url.rstrip('/')}/sdapi/v1/options", timeout=timeout)
        except requests.RequestException:
            return False
    return reply.status_code in (200, 401)  # 401: a WebUI behind --api-auth


def _unreachable_reason(config: ClientConfig, service: str, error: grpc.RpcError) -> str:
    """gRPC's reason, or what it says about TLS between this client and the service."""
    details = str(error.details())
    where = service_at(service, config.addresses[service])
    mismatch = tls_mismatch(where, details, config.tls_root_certificate is not None)
    return mismatch or f"{error.code().name}: {details}"
