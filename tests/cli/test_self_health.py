"""`stablenew health --self`: what a container's command serves and where it is dialled (the
runs against real processes are in tests/deploy/test_compose.py, with the image's HEALTHCHECK)."""

from __future__ import annotations

import pytest

from stablenew.cli.output import EXIT_FAILED, CliError
from stablenew.cli.self_health import Served, command_line, served

PYTHON = "/usr/local/bin/python3.11"
SCRIPT = "/usr/local/bin/stablenew"


@pytest.mark.parametrize(("argv", "env", "expected"), [
    # The image's entrypoint as PID 1, the address from the environment (compose).
    ([PYTHON, SCRIPT, "serve", "queue"], {"STABLENEW_QUEUE_ADDR": "0.0.0.0:50052"},
     Served("queue", "localhost:50052")),
    # The address from the command (Kubernetes' args), which wins over the environment.
    ([PYTHON, SCRIPT, "serve", "history", "--address", "0.0.0.0:6000"],
     {"STABLENEW_HISTORY_ADDR": "history:50054"}, Served("history", "localhost:6000")),
    ([PYTHON, SCRIPT, "serve", "runner", "--address=[::]:50053"], {},
     Served("runner", "localhost:50053")),
    # Under `docker run --init` PID 1 is the init, with the command in its arguments.
    (["/sbin/docker-init", "--", SCRIPT, "serve", "bundle"], {},
     Served("bundle", "127.0.0.1:50051")),
    ([PYTHON, SCRIPT, "serve", "emulator", "--address", "0.0.0.0:7860", "--step-seconds", "1"],
     {}, Served("emulator", "localhost:7860")),
    ([PYTHON, SCRIPT, "serve", "emulator"], {"STABLENEW_EMULATOR_ADDR": "127.0.0.1:7861"},
     Served("emulator", "127.0.0.1:7861")),
])
def test_what_a_command_serves_and_where(argv: list[str], env: dict[str, str],
                                         expected: Served) -> None:
    assert served(argv, env) == expected


@pytest.mark.parametrize("argv", [[PYTHON, SCRIPT, "--help"], [PYTHON, SCRIPT, "serve"],
                                  [PYTHON, SCRIPT, "serve", "nonsense"], ["sleep", "60"]])
def test_a_command_that_serves_nothing_is_unhealthy(argv: list[str]) -> None:
    with pytest.raises(CliError, match="serves nothing") as caught:
        served(argv, {})
    assert caught.value.exit_code == EXIT_FAILED


def test_a_process_that_is_gone_is_unhealthy() -> None:
    with pytest.raises(CliError, match="cannot read the command of process") as caught:
        command_line(2**22 + 1)  # above Linux's largest pid
    assert caught.value.exit_code == EXIT_FAILED
