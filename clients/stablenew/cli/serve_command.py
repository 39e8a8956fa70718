"""`stablenew serve SERVICE`: one service (or the WebUI emulator) in the foreground until SIGTERM.

The one command of the CLI that runs a service in-process, so the one module that imports the
services' apps and the server runtime.

`--stop-with-fd FD` ties the process to its parent: FD is the read end of a pipe whose write end
only the parent holds. When the parent ends, however it ends (SIGKILL included), the kernel
closes the write end, the read sees end of file and the service stops as on SIGTERM. This is how
`stablenew up` leaves no orphans.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence

from stablenew.contract.endpoints import SERVICE_NAMES
from stablenew.runtime import json_logging
from stablenew.runtime.server import Server, ServiceSpec, StartupError, serve_until_signal
from stablenew.runtime.settings import ConfigError, ServerSettings

EXIT_STARTUP_ERROR = 1
EXIT_CONFIG_ERROR = 2
STOP_FLAG = "--stop-with-fd"
STOP_HELP = ("stop (as on SIGTERM) once this file descriptor reaches end of file: the read end "
             "of a pipe the parent holds open (how `stablenew up` makes sure no service "
             "outlives it)")



def _builder(service: str) -> Callable[[ServerSettings], ServiceSpec]:
    """The service's `app.build`, imported only when that service is served: the client
    commands, which share this parser, do not pay for importing four services."""
    build: Callable[[ServerSettings], ServiceSpec] = importlib.import_module(
        f"stablenew.{service}.app").build
    return build


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `serve` to the command parser."""
    serve = commands.add_parser("serve", help="run one service in the foreground")
    serve.add_argument("service", choices=(*SERVICE_NAMES, "emulator"),
                       help="a service, or the SD WebUI emulator (see: serve emulator --help)")
    serve.add_argument("--address",
                       help="host:port to listen on (default: STABLENEW_<SERVICE>_ADDR)")
    serve.add_argument("--data-dir", help="databases and images (default: STABLENEW_DATA_DIR)")
    serve.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    serve.add_argument(STOP_FLAG, type=int, metavar="FD", help=STOP_HELP)
    serve.set_defaults(run=run)


def stop_when_closed(fd: int) -> None:
    """Send this process SIGTERM once `fd` reads end of file (see the module docstring)."""
    try:
        os.fstat(fd)
    except OSError:
        raise ConfigError(f"{STOP_FLAG}: {fd} is not an open file descriptor") from None

    def watch() -> None:
        try:
            while os.read(fd, 4096):
                pass
        except OSError:
            pass  # a broken pipe ends the same way: the parent is gone
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="stop-with-parent", daemon=True).start()


def run(args: argparse.Namespace) -> int:
    """Serve one service until SIGTERM/SIGINT; exit 1 when it cannot start, 2 on bad settings."""
    try:
        if args.stop_with_fd is not None:
            stop_when_closed(args.stop_with_fd)
        if args.service == "emulator":
            from stablenew.emulator import cli as emulator_cli  # noqa: PLC0415 - see _builder
            return emulator_cli.run_from_serve(args)
        settings = ServerSettings.load(args.service, address=args.address,
                                       data_dir=args.data_dir)
    except ConfigError as error:
        return _config_error(error)
    json_logging.configure(args.service, args.log_level)
    try:
        server = Server(settings, _builder(args.service)(settings))
        serve_until_signal(server)
    except ConfigError as error:
        return _config_error(error)
    except StartupError as error:
        print(f"stablenew: {args.service} could not start: {error}", file=sys.stderr)
        return EXIT_STARTUP_ERROR
    return 0


def serve_emulator(argv: Sequence[str]) -> int:
    """`stablenew serve emulator [its own flags] [--stop-with-fd FD]`."""
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument(STOP_FLAG, type=int, dest="stop_with_fd")
    known, rest = own.parse_known_args(argv)
    try:
        if known.stop_with_fd is not None:
            stop_when_closed(known.stop_with_fd)
        from stablenew.emulator import cli as emulator_cli  # noqa: PLC0415 - see _builder
        return emulator_cli.main(rest)
    except ConfigError as error:
        return _config_error(error)


def _config_error(error: ConfigError) -> int:
    print(f"stablenew: configuration error: {error}", file=sys.stderr)
    return EXIT_CONFIG_ERROR
