"""Wiring of the bundle service: what `stablenew serve bundle` starts."""

from __future__ import annotations

from stablenew.common.pending import pending_spec
from stablenew.common.server import ServiceSpec
from stablenew.common.settings import ServerSettings
from stablenew.v1 import bundle_service_pb2 as contract

SERVICE = contract.DESCRIPTOR.services_by_name["BundleService"]
MISSING = (
    "drafts, prompt packs and normalisation arrive with the bundle service work"
    " (pack parsers, SQLite drafts, preview, enqueue)"
)


def build(settings: ServerSettings) -> ServiceSpec:
    return pending_spec(settings.service, SERVICE, MISSING)
