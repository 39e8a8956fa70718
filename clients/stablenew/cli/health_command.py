"""`stablenew health [SERVICE...]`: ask each service's standard health service.

Exit 0 when every service asked is SERVING, 1 otherwise (an unreachable one is reported as
UNREACHABLE, not an error of the command); used by the container health checks. `--self` asks
the service the container's own command serves (self_health.py), the emulator included: the
image's HEALTHCHECK.
"""

from __future__ import annotations

import argparse
import os

from stablenew.cli import health, self_health
from stablenew.cli.output import CliError, print_json
from stablenew.contract.endpoints import SERVICE_NAMES, address_variable
from stablenew.sdk import ClientConfig


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `health` to the command parser."""
    health = commands.add_parser("health", help="report each service's health")
    health.add_argument("--json", action="store_true", help="one JSON object on stdout")
    health.add_argument("--timeout", type=float, default=2.0, help="seconds per service")
    health.add_argument("services", nargs="*", metavar="SERVICE",
                        help=f"any of {', '.join(SERVICE_NAMES)} (default: all)")
    health.add_argument("--self", action="store_true", dest="own",
                        help="the service (or emulator) that `stablenew serve` runs as this "
                        "container's command, at its address: the image's health check")
    health.add_argument("--pid", type=int, default=self_health.CONTAINER_PID,
                        help="with --self: the process whose command to read (default: 1)")
    health.set_defaults(run=run)


def check(config: ClientConfig, service: str, timeout: float) -> dict[str, str]:
    """{"service", "address", "status"[, "error"]}: SERVING, NOT_SERVING or UNREACHABLE."""
    answer = health.check(config, service, timeout)
    result = {"service": service, "address": config.addresses[service],
              "status": answer.status}
    return result | ({"error": answer.error} if answer.error else {})


def check_own(pid: int, timeout: float) -> dict[str, str]:
    """The check of what process `pid` serves, in the shape of `check`'s answer."""
    own = self_health.served(self_health.command_line(pid), os.environ)
    if own.name != self_health.EMULATOR:
        env = dict(os.environ) | {address_variable(own.name): own.address}
        return check(ClientConfig.load(env=env), own.name, timeout)
    answers = health.webui_answers(f"http://{own.address}", timeout)
    return {"service": own.name, "address": own.address,
            "status": "SERVING" if answers else health.UNREACHABLE}


def run(args: argparse.Namespace) -> int:
    """Check the services named (default: all four), or this container's own."""
    unknown = sorted(set(args.services) - set(SERVICE_NAMES))
    if unknown:
        raise CliError(f"unknown service {', '.join(unknown)}; one of {', '.join(SERVICE_NAMES)}")
    if args.own and args.services:
        raise CliError("health: --self checks this container's own service; name none")
    if args.own:
        results = [check_own(args.pid, args.timeout)]
    else:
        config = ClientConfig.load()
        results = [check(config, service, args.timeout)
                   for service in (args.services or SERVICE_NAMES)]
    if args.json:
        print_json({"services": results})
    else:
        for result in results:
            error = f"  ({result['error']})" if "error" in result else ""
            print(f"{result['service']:<8} {result['address']:<22} {result['status']}{error}")
    return 0 if all(result["status"] == "SERVING" for result in results) else 1
