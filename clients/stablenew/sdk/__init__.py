"""The Python SDK: typed calls to the StableNew services (see stablenew.sdk.client)."""

from stablenew.sdk.client import Client
from stablenew.sdk.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    StableNewError,
    UnauthenticatedError,
    UnavailableError,
)

__all__ = [
    "Client",
    "FailedPreconditionError",
    "InvalidArgumentError",
    "NotFoundError",
    "StableNewError",
    "UnauthenticatedError",
    "UnavailableError",
]
