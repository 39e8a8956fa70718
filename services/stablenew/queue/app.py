"""Wiring of the queue service: what `stablenew serve queue` starts."""

from __future__ import annotations

from stablenew.common.pending import pending_spec
from stablenew.common.server import ServiceSpec
from stablenew.common.settings import ServerSettings
from stablenew.v1 import queue_service_pb2 as contract

SERVICE = contract.DESCRIPTOR.services_by_name["QueueService"]
MISSING = (
    "the durable queue arrives with the queue service work (SQLite queue, event log, leases)"
)


def build(settings: ServerSettings) -> ServiceSpec:
    return pending_spec(settings.service, SERVICE, MISSING)
