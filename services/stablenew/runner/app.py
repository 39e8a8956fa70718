"""Wiring of the runner service: what `stablenew serve runner` starts."""

from __future__ import annotations

from stablenew.common.pending import pending_spec
from stablenew.common.server import ServiceSpec
from stablenew.common.settings import ServerSettings
from stablenew.v1 import runner_service_pb2 as contract

SERVICE = contract.DESCRIPTOR.services_by_name["RunnerService"]
MISSING = (
    "the runner arrives with the runner service work (WebUI client, stage plans, image files)"
)


def build(settings: ServerSettings) -> ServiceSpec:
    return pending_spec(settings.service, SERVICE, MISSING)
