"""Where the services are by default and how much a message may carry: facts the servers and
every client (the SDK, other services) must agree on."""

from __future__ import annotations

SERVICE_NAMES = ("bundle", "queue", "runner", "history")

DEFAULT_ADDRESSES = {
    "bundle": "127.0.0.1:50051",
    "queue": "127.0.0.1:50052",
    "runner": "127.0.0.1:50053",
    "history": "127.0.0.1:50054",
}

# The send and receive limit on both sides: a preview page or a job of 10,000 normalized jobs is
# larger than gRPC's 4 MB default (STABLENEW_MAX_MESSAGE_BYTES changes it).
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024


# What a client trusts as its TLS roots, the first one set: the CA bundle that signed the
# servers' certificates, else the servers' certificate itself (a self-signed deployment, where
# it is its own root).
TLS_TRUST_VARIABLES = ("STABLENEW_TLS_CA", "STABLENEW_TLS_CERT")


def address_variable(service: str) -> str:
    """The variable naming a service's host:port, e.g. STABLENEW_QUEUE_ADDR."""
    return f"STABLENEW_{service.upper()}_ADDR"
