"""`stablenew gui`: the desktop window, against running services or, with `--local`, over the
services it starts on this machine as `stablenew up` does (and stops when the window closes).

Tk is imported only when the command runs, so the rest of the CLI works without it.
"""

from __future__ import annotations

import argparse
import os
from functools import partial

from stablenew.cli import local, up_command
from stablenew.cli.output import EXIT_FAILED, EXIT_OK, CliError
from stablenew.cli.supervisor import ChildFailedError, Supervisor
from stablenew.sdk import AsyncClient


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `gui` to the command parser."""
    gui = commands.add_parser(
        "gui", help="the desktop window: pipeline, preview, queue and history",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    gui.add_argument("--local", action="store_true",
                     help="start the services (and the WebUI emulator when no WebUI answers) "
                     "on this machine first, and stop them when the window closes")
    gui.add_argument("--data-dir", help="the window's own state (its draft, downloaded "
                     "images) and, with --local, the services' data (default: "
                     "STABLENEW_DATA_DIR, else .stablenew)")
    gui.add_argument("--timeout", type=float, default=up_command.READY_SECONDS,
                     help="with --local: seconds to wait for the services (default: "
                     "%(default)s)")
    gui.set_defaults(run=run)


def _child_stopped(supervisor: Supervisor) -> str | None:
    """A local service that exited, in words (None while all run)."""
    try:
        supervisor.check()
    except ChildFailedError as failure:
        return f"A local service stopped: {failure}"
    return None


def run(args: argparse.Namespace) -> int:
    """Open the window (after starting the services with --local); 0 once it is closed."""
    try:
        import tkinter  # noqa: PLC0415 (only this command needs Tk)
    except ImportError as error:
        raise CliError(f"the window needs Python's Tk (tkinter): {error}; install it "
                       "(Debian: apt-get install python3-tk)", EXIT_FAILED) from None
    from stablenew.gui import app  # noqa: PLC0415 (it imports tkinter)

    env = dict(os.environ)
    data_dir = local.data_dir(env, args.data_dir)

    def open_window(watchdog: app.Watchdog | None) -> None:
        try:
            app.run(AsyncClient(env=env), data_dir / "gui", watchdog)
        except tkinter.TclError as error:
            raise CliError(f"cannot open the window: {error}", EXIT_FAILED) from None

    if not args.local:
        open_window(None)
        return EXIT_OK
    deployment = up_command.plan(env, data_dir)
    print("Starting the services on this machine (they stop when the window closes):",
          flush=True)
    up_command.print_deployment(deployment)
    try:
        with up_command.services_running(deployment, env, args.timeout) as supervisor:
            open_window(partial(_child_stopped, supervisor))
    except ChildFailedError as failure:
        raise CliError(f"{failure}; stopped everything", EXIT_FAILED) from None
    return EXIT_OK
