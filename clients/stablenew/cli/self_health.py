"""What `stablenew health --self` checks: the service this container serves.

A container's health check (the image's HEALTHCHECK) runs beside the container's command, with
its environment but not its arguments. Those are read from /proc/<pid>/cmdline of the
container's first process (PID 1); under an init (`docker run --init`) PID 1 is the init,
whose own arguments carry the command, so the whole command line is searched for
`serve NAME`. The address is the command's `--address`, else STABLENEW_<NAME>_ADDR, else the
default; a server listening on every interface is dialled at `localhost` (a name a TLS
certificate for probes carries).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from stablenew.cli import local
from stablenew.cli.output import EXIT_FAILED, CliError
from stablenew.contract.endpoints import DEFAULT_ADDRESSES, SERVICE_NAMES, address_variable

EMULATOR = "emulator"
CONTAINER_PID = 1
# Hosts a server listens on to accept connections on every interface: not dialable as such.
_WILDCARD_HOSTS = {"0.0.0.0", "[::]", "::", ""}


@dataclass(frozen=True)
class Served:
    """A service (or the emulator) and the address to check it at."""

    name: str
    address: str


def command_line(pid: int) -> list[str]:
    """The arguments of process `pid`; a CliError when there is no such process to read."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError as error:
        raise CliError(f"health --self: cannot read the command of process {pid}: "
                       f"{error.strerror or error}", EXIT_FAILED) from None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _flag(argv: Sequence[str], flag: str) -> str | None:
    """The value of `--flag VALUE` or `--flag=VALUE`, if given."""
    for index, argument in enumerate(argv):
        if argument == flag and index + 1 < len(argv):
            return argv[index + 1]
        if argument.startswith(f"{flag}="):
            return argument.partition("=")[2]
    return None


def dialable(address: str) -> str:
    """Where a client reaches a server listening at `address`: a wildcard host is localhost."""
    host, _, port = address.strip().rpartition(":")
    return f"localhost:{port}" if host in _WILDCARD_HOSTS else address.strip()


def served(argv: Sequence[str], env: Mapping[str, str]) -> Served:
    """The service `stablenew serve NAME` runs in `argv`, and where to check it."""
    names = (*SERVICE_NAMES, EMULATOR)
    for index, argument in enumerate(argv[:-1]):
        if argument == "serve" and argv[index + 1] in names:
            name = argv[index + 1]
            default = (local.DEFAULT_EMULATOR_ADDRESS if name == EMULATOR
                       else DEFAULT_ADDRESSES[name])
            listen = _flag(argv, "--address") or env.get(address_variable(name)) or default
            return Served(name, dialable(listen))
    raise CliError(f"health --self: the command {' '.join(argv)!r} serves nothing "
                   f"(`stablenew serve {'|'.join(names)}` expected)", EXIT_FAILED)
