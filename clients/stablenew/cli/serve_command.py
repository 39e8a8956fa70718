"""`stablenew serve SERVICE`: one service in the foreground until SIGTERM."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from stablenew.bundle import app as bundle_app
from stablenew.emulator import cli as emulator_cli
from stablenew.history import app as history_app
from stablenew.queue import app as queue_app
from stablenew.runner import app as runner_app
from stablenew.runtime import json_logging
from stablenew.runtime.server import Server, ServiceSpec, StartupError, serve_until_signal
from stablenew.runtime.settings import ServerSettings

EXIT_STARTUP_ERROR = 1

BUILDERS: dict[str, Callable[[ServerSettings], ServiceSpec]] = {
    "bundle": bundle_app.build,
    "queue": queue_app.build,
    "runner": runner_app.build,
    "history": history_app.build,
}


def run(args: argparse.Namespace) -> int:
    if args.service == "emulator":
        return emulator_cli.run_from_serve(args)
    settings = ServerSettings.load(args.service, address=args.address, data_dir=args.data_dir)
    json_logging.configure(args.service, args.log_level)
    try:
        server = Server(settings, BUILDERS[args.service](settings))
        serve_until_signal(server)
    except StartupError as error:
        print(f"stablenew: {args.service} could not start: {error}", file=sys.stderr)
        return EXIT_STARTUP_ERROR
    return 0
