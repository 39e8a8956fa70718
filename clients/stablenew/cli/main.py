"""`stablenew`: run the services, and drive them (packs, drafts, queue, watch, history, runner).

Every command but `serve` is a client built on the SDK (stablenew.sdk) and configured like the
services (STABLENEW_* variables). Errors are one line on standard error, never a traceback;
exit codes are listed in stablenew.cli.output and docs/CLI.md.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from stablenew.cli import (
    demo_command,
    draft_command,
    health_command,
    history_command,
    packs_command,
    queue_command,
    runner_command,
    serve_command,
    up_command,
    watch_command,
)
from stablenew.cli.output import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    CliError,
    error_line,
    exit_code_for,
    fail,
)
from stablenew.gui import command as gui_command
from stablenew.sdk import ConfigError, StableNewError

COMMANDS = (serve_command, up_command, health_command, packs_command, draft_command,
            queue_command, watch_command, history_command, runner_command, demo_command,
            gui_command)


class Parser(argparse.ArgumentParser):
    """argparse with a usage error as one line (and exit code 2), not the usage text."""

    def error(self, message: str) -> NoReturn:
        """Raise instead of printing the usage."""
        command = self.prog.removeprefix("stablenew").strip()
        where = f"{command}: " if command else ""
        raise CliError(f"{where}{message} (see: {self.prog} --help)", EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line."""
    parser = Parser(
        prog="stablenew",
        description="Batch image generation with Stable Diffusion WebUI: bundle, queue, runner "
        "and history services over gRPC. Configured by STABLENEW_* variables (docs/API.md).",
        epilog="exit codes: 0 ok, 1 the job failed, 2 usage or validation error, 3 a service "
        "unreachable, 130 interrupted",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; the exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        if arguments[:2] == ["serve", "emulator"]:
            # The WebUI emulator has flags of its own (timings, faults) and its own --help.
            return serve_command.serve_emulator(arguments[2:])
        args = build_parser().parse_args(arguments)
        code: int = args.run(args)
    except CliError as error:
        fail(str(error))
        return error.exit_code
    except ConfigError as error:
        fail(f"configuration error: {error}")
        return EXIT_USAGE
    except StableNewError as error:
        fail(error_line(error))
        return exit_code_for(error)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`stablenew history list | head`): not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as error:
        fail(f"{error.filename or ''}: {error.strerror or error}".lstrip(": "))
        return EXIT_FAILED
    except Exception as error:  # a user sees one line, never a traceback
        fail(f"unexpected error: {type(error).__name__}: {error}")
        return EXIT_FAILED
    return code


if __name__ == "__main__":
    sys.exit(main())
