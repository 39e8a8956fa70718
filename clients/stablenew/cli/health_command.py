"""`stablenew health [SERVICE...]`: ask each service's standard health service.

Exit 0 when every service asked is SERVING, 1 otherwise (an unreachable one is reported as
UNREACHABLE, not an error of the command); used by the container health checks.
"""

from __future__ import annotations

import argparse

from stablenew.cli import health
from stablenew.cli.output import CliError, print_json
from stablenew.contract.endpoints import SERVICE_NAMES
from stablenew.sdk import ClientConfig


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `health` to the command parser."""
    health = commands.add_parser("health", help="report each service's health")
    health.add_argument("--json", action="store_true", help="one JSON object on stdout")
    health.add_argument("--timeout", type=float, default=2.0, help="seconds per service")
    health.add_argument("services", nargs="*", metavar="SERVICE",
                        help=f"any of {', '.join(SERVICE_NAMES)} (default: all)")
    health.set_defaults(run=run)


def check(config: ClientConfig, service: str, timeout: float) -> dict[str, str]:
    """{"service", "address", "status"[, "error"]}: SERVING, NOT_SERVING or UNREACHABLE."""
    answer = health.check(config, service, timeout)
    result = {"service": service, "address": config.addresses[service],
              "status": answer.status}
    return result | ({"error": answer.error} if answer.error else {})


def run(args: argparse.Namespace) -> int:
    """Check the services named (default: all four)."""
    unknown = sorted(set(args.services) - set(SERVICE_NAMES))
    if unknown:
        raise CliError(f"unknown service {', '.join(unknown)}; one of {', '.join(SERVICE_NAMES)}")
    config = ClientConfig.load()
    results = [check(config, service, args.timeout) for service in (args.services or SERVICE_NAMES)]
    if args.json:
        print_json({"services": results})
    else:
        for result in results:
            error = f"  ({result['error']})" if "error" in result else ""
            print(f"{result['service']:<8} {result['address']:<22} {result['status']}{error}")
    return 0 if all(result["status"] == "SERVING" for result in results) else 1
