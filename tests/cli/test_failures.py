"""Every way a command fails that is not the job's fault: a dead service (exit 3), a wrong or
missing token and bad configuration (exit 2), Ctrl-C (exit 130); always one line, never a
traceback."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.cli.cli_result import SCENES, Result
from tests.cli.up_process import UpProcess, clean_environment, run_cli, stablenew_command
from tests.pki import ca_signed_queue, new_authority, write_authority
from tests.queue.harness import QueueHarness
from tests.queue.processes import free_port
from tests.service_harness import wait_for

RunCli = Callable[..., Result]

# One command per service it needs; each must say UNAVAILABLE and exit 3 when it is down, in
# one line naming the service, its address and what to do.
NEEDS: dict[str, list[tuple[str, ...]]] = {
    "bundle": [("packs", "list"), ("draft", "add-pack", SCENES), ("draft", "new")],
    "queue": [("queue", "list"), ("queue", "pause"), ("queue", "cancel", "j"),
              ("queue", "retry", "j"), ("queue", "runners"), ("watch", "j"), ("watch",)],
    "history": [("history", "list"), ("history", "show", "j"), ("history", "events", "j"),
                ("history", "bookmark", "j"), ("history", "prune", "--dry-run")],
    "runner": [("runner", "status"), ("runner", "capabilities")],
}
CASES = [(service, command) for service, commands in NEEDS.items() for command in commands]


@pytest.mark.parametrize(("service", "command"), CASES,
                         ids=[f"{service}-{'-'.join(command)}" for service, command in CASES])
def test_a_dead_service_is_exit_3(cli: RunCli, service: str, command: tuple[str, ...]) -> None:
    variable, address = f"STABLENEW_{service.upper()}_ADDR", f"127.0.0.1:{free_port()}"
    line = cli(*command, **{variable: address}).fails(
        3, "UNAVAILABLE", f"cannot reach the {service} service at {address}",
        "(Connection refused)", "`stablenew up`", variable)
    assert "failed to connect to all addresses" not in line  # gRPC's own text, replaced


def test_an_unknown_host_is_named_with_its_cause(cli: RunCli) -> None:
    cli("history", "list", STABLENEW_HISTORY_ADDR="no-such-host.invalid:50054").fails(
        3, "cannot reach the history service at no-such-host.invalid:50054", "not found",
        "STABLENEW_HISTORY_ADDR")


@pytest.fixture(scope="module")
def guarded_queue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QueueHarness]:
    """A queue that wants the bearer token "right-token"."""
    queue = QueueHarness(tmp_path_factory.mktemp("token-queue"),
                         {"STABLENEW_TOKEN": "right-token"})
    with queue.running():
        yield queue


@pytest.mark.parametrize("token", ["wrong-token", ""])
def test_a_wrong_or_missing_token_is_exit_2(cli: RunCli, guarded_queue: QueueHarness,
                                            token: str) -> None:
    line = cli("queue", "list", STABLENEW_QUEUE_ADDR=guarded_queue.address,
               STABLENEW_TOKEN=token).fails(2, "UNAUTHENTICATED: ", "set STABLENEW_TOKEN")
    assert "UNAUTHENTICATED UNAUTHENTICATED" not in line  # a reason that repeats the code
    assert "right-token" not in line and (not token or token not in line)


def test_the_right_token_passes(cli: RunCli, guarded_queue: QueueHarness) -> None:
    listed = cli("queue", "list", STABLENEW_QUEUE_ADDR=guarded_queue.address,
                 STABLENEW_TOKEN="right-token").ok()
    assert listed.out.startswith("queue running: no jobs")
    # Health needs no token, so probes work without credentials.
    cli("health", "queue", STABLENEW_QUEUE_ADDR=guarded_queue.address).ok()


@pytest.fixture(scope="module")
def ca_queue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A queue serving a certificate a CA signed: its address (by name) and the CA's file."""
    with ca_signed_queue(tmp_path_factory.mktemp("ca")) as (queue, ca):
        yield queue.address.replace("127.0.0.1", "localhost"), ca


def test_the_ca_in_stablenew_tls_ca_is_trusted(cli: RunCli,
                                               ca_queue: tuple[str, Path]) -> None:
    address, ca = ca_queue
    trusted = {"STABLENEW_QUEUE_ADDR": address, "STABLENEW_TLS_CA": str(ca)}
    assert cli("queue", "list", **trusted).ok().out.startswith("queue running")
    assert "SERVING" in cli("health", "queue", **trusted).ok().out


def test_a_server_from_another_ca_is_a_failed_handshake(
        cli: RunCli, ca_queue: tuple[str, Path], tmp_path: Path) -> None:
    address, _ca = ca_queue
    other = write_authority(tmp_path, new_authority("another-ca"))
    line = cli("queue", "list", STABLENEW_QUEUE_ADDR=address,
               STABLENEW_TLS_CA=str(other)).fails(
        3, f"the TLS handshake with the queue service at {address} failed", "STABLENEW_TLS_CA")
    assert "stablenew up" not in line  # the service is up: starting it is not the fix


def test_a_plaintext_client_of_a_tls_server_is_told_about_tls(
        cli: RunCli, ca_queue: tuple[str, Path]) -> None:
    address, _ca = ca_queue
    line = cli("queue", "list", STABLENEW_QUEUE_ADDR=address).fails(
        3, f"the queue service at {address} closed the connection", "serves TLS",
        "set STABLENEW_TLS_CA")
    assert "stablenew up" not in line
    health = cli("health", "queue", STABLENEW_QUEUE_ADDR=address)
    assert health.code == 1
    assert "UNREACHABLE" in health.out and "set STABLENEW_TLS_CA" in health.out


def test_a_tls_client_of_a_plaintext_server_is_told_it_does_not_serve_tls(
        cli: RunCli, ca_queue: tuple[str, Path], guarded_queue: QueueHarness) -> None:
    _address, ca = ca_queue
    plaintext = {"STABLENEW_QUEUE_ADDR": guarded_queue.address, "STABLENEW_TLS_CA": str(ca)}
    line = cli("queue", "list", **plaintext).fails(
        3, f"the queue service at {guarded_queue.address} does not serve TLS",
        "unset STABLENEW_TLS_CA")
    assert "stablenew up" not in line
    health = cli("health", "queue", **plaintext)
    assert health.code == 1 and "does not serve TLS" in health.out


def test_a_failed_handshake_in_a_real_process_is_our_line_alone(
        ca_queue: tuple[str, Path], tmp_path: Path) -> None:
    """gRPC's core logs the failed handshake itself unless told not to; the CLI tells it."""
    address, _ca = ca_queue
    other = write_authority(tmp_path, new_authority("another-ca"))
    # Not inherited from this process, where importing the CLI set it.
    env = {key: value for key, value in clean_environment().items() if key != "GRPC_VERBOSITY"}
    done = subprocess.run([*stablenew_command(), "queue", "list"], capture_output=True,
                          text=True, timeout=60, check=False, cwd=tmp_path,
                          env=env | {"STABLENEW_QUEUE_ADDR": address,
                                     "STABLENEW_TLS_CA": str(other)})
    assert done.returncode == 3, done
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("stablenew: UNAVAILABLE: the TLS handshake"), done.stderr


@pytest.mark.parametrize(("variable", "value", "words"), [
    ("STABLENEW_QUEUE_ADDR", "nonsense", ("STABLENEW_QUEUE_ADDR", "'nonsense'")),
    ("STABLENEW_BUNDLE_ADDR", "127.0.0.1:notaport", ("STABLENEW_BUNDLE_ADDR",)),
    ("STABLENEW_TLS_CERT", "/no/such/cert.pem", ("STABLENEW_TLS_CERT", "cert.pem")),
    ("STABLENEW_TLS_CA", "/no/such/ca.pem", ("STABLENEW_TLS_CA", "ca.pem")),
    ("STABLENEW_MAX_MESSAGE_BYTES", "lots", ("STABLENEW_MAX_MESSAGE_BYTES",)),
])
def test_bad_configuration_is_exit_2(cli: RunCli, variable: str, value: str,
                                     words: tuple[str, ...]) -> None:
    for command in (("queue", "list"), ("packs", "list"), ("history", "list"), ("health",)):
        cli(*command, **{variable: value}).fails(2, "configuration error", *words)


def test_a_failure_in_a_real_process_is_one_line(tmp_path: Path) -> None:
    done = run_cli("queue", "list", env={"STABLENEW_QUEUE_ADDR": f"127.0.0.1:{free_port()}"},
                   cwd=tmp_path)
    assert done.returncode == 3, done
    assert "Traceback" not in done.stderr + done.stdout
    ours = [line for line in done.stderr.splitlines() if line.startswith("stablenew: ")]
    assert len(ours) == 1 and "UNAVAILABLE" in ours[0], done.stderr


def test_ctrl_c_is_exit_130(system: UpProcess, tmp_path: Path) -> None:
    """`watch --json` as a separate process: it prints the events it sees; Ctrl-C ends it."""
    out = tmp_path / "watch.out"
    with out.open("wb") as sink:
        watch = subprocess.Popen([*stablenew_command(), "watch", "--json"], stdout=sink,
                                 stderr=subprocess.PIPE, cwd=tmp_path,
                                 env=clean_environment() | system.client_env())
    try:
        # Pause and resume until the watch shows it is following (an event printed).
        def watching() -> bool:
            run_cli("queue", "pause", env=system.client_env(), cwd=tmp_path)
            run_cli("queue", "resume", env=system.client_env(), cwd=tmp_path)
            return "queue_resumed" in out.read_text()

        wait_for(watching, "the watch to print an event", interval=0.2)
        watch.send_signal(signal.SIGINT)
        _, err = watch.communicate(timeout=30)
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait()
    assert watch.returncode == 130, err
    assert b"Traceback" not in err
