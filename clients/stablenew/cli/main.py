"""`stablenew`: start services, check their health (and, as the services grow, drive them)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from stablenew.cli import demo_command, health_command, history_command, serve_command
from stablenew.emulator import cli as emulator_cli
from stablenew.runtime.settings import SERVICE_NAMES, ConfigError

EXIT_CONFIG_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stablenew",
        description="Batch image generation with Stable Diffusion WebUI: bundle, queue, runner "
        "and history services over gRPC.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run one service in the foreground")
    serve.add_argument("service", choices=(*SERVICE_NAMES, "emulator"),
                       help="a service, or the SD WebUI emulator (see: serve emulator --help)")
    serve.add_argument("--address",
                       help="host:port to listen on (default: STABLENEW_<SERVICE>_ADDR)")
    serve.add_argument("--data-dir", help="databases and images (default: STABLENEW_DATA_DIR)")
    serve.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    serve.set_defaults(run=serve_command.run)

    health = commands.add_parser("health", help="report each service's health")
    health.add_argument("--json", action="store_true", help="one JSON object on stdout")
    health.add_argument("--timeout", type=float, default=2.0, help="seconds per service")
    health.add_argument("services", nargs="*", metavar="SERVICE",
                        help=f"any of {', '.join(SERVICE_NAMES)} (default: all)")
    health.set_defaults(run=health_command.run)

    history_command.register(commands)
    demo_command.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        if arguments[:2] == ["serve", "emulator"]:
            # The WebUI emulator has flags of its own (timings, faults) and its own --help.
            return emulator_cli.main(arguments[2:])
        args = build_parser().parse_args(arguments)
        code: int = args.run(args)
    except ConfigError as error:
        print(f"stablenew: configuration error: {error}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    return code


if __name__ == "__main__":
    sys.exit(main())
