"""Wiring of the history service: what `stablenew serve history` starts."""

from __future__ import annotations

from stablenew.common.pending import pending_spec
from stablenew.common.server import ServiceSpec
from stablenew.common.settings import ServerSettings
from stablenew.v1 import history_service_pb2 as contract

SERVICE = contract.DESCRIPTOR.services_by_name["HistoryService"]
MISSING = (
    "the history arrives with the history service work"
    " (SQLite store, queue event ingestion, queries)"
)


def build(settings: ServerSettings) -> ServiceSpec:
    return pending_spec(settings.service, SERVICE, MISSING)
