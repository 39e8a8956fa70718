"""Configuration and startup errors of the `stablenew` command, as a user sees them."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

RunCli = Callable[..., "subprocess.CompletedProcess[str]"]


def assert_clean_failure(done: subprocess.CompletedProcess[str], code: int) -> None:
    """Exit `code`, a `stablenew:` message line on stderr, no traceback anywhere.

    gRPC's C core may log its own line to stderr before ours, so any line may carry it."""
    output = f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert done.returncode == code, output
    assert "Traceback" not in done.stderr, output
    assert "Traceback" not in done.stdout, output
    assert any(line.startswith("stablenew: ") for line in done.stderr.splitlines()), output


def test_bad_address_variable(run_cli: RunCli, tmp_path: Path) -> None:
    done = run_cli("serve", "queue",
                   env={"STABLENEW_QUEUE_ADDR": "nonsense", "STABLENEW_DATA_DIR": str(tmp_path)})
    assert_clean_failure(done, 2)
    assert "configuration error" in done.stderr
    assert "STABLENEW_QUEUE_ADDR" in done.stderr
    assert "'nonsense'" in done.stderr


def test_bad_address_flag(run_cli: RunCli, tmp_path: Path) -> None:
    done = run_cli("serve", "queue", "--address", "127.0.0.1:99999",
                   env={"STABLENEW_DATA_DIR": str(tmp_path)})
    assert_clean_failure(done, 2)
    assert "--address" in done.stderr
    assert "99999" in done.stderr


@pytest.mark.parametrize("broken", ["STABLENEW_TLS_CERT", "STABLENEW_TLS_KEY"])
def test_missing_tls_file(run_cli: RunCli, tmp_path: Path, broken: str,
                          tls_pair: tuple[Path, Path], free_port: Callable[[], int]) -> None:
    cert, key = tls_pair
    env = {
        "STABLENEW_QUEUE_ADDR": f"127.0.0.1:{free_port()}",
        "STABLENEW_DATA_DIR": str(tmp_path),
        "STABLENEW_TLS_CERT": str(cert),
        "STABLENEW_TLS_KEY": str(key),
        broken: str(tmp_path / "does-not-exist.pem"),
    }
    done = run_cli("serve", "queue", env=env)
    assert_clean_failure(done, 2)
    assert broken in done.stderr
    assert "does-not-exist.pem" in done.stderr


def test_unreadable_tls_file(run_cli: RunCli, tmp_path: Path, tls_pair: tuple[Path, Path],
                             free_port: Callable[[], int]) -> None:
    # A directory cannot be read as a file, even by root (chmod 000 would not stop root).
    unreadable = tmp_path / "cert-is-a-directory"
    unreadable.mkdir()
    env = {
        "STABLENEW_QUEUE_ADDR": f"127.0.0.1:{free_port()}",
        "STABLENEW_DATA_DIR": str(tmp_path),
        "STABLENEW_TLS_CERT": str(unreadable),
        "STABLENEW_TLS_KEY": str(tls_pair[1]),
    }
    done = run_cli("serve", "queue", env=env)
    assert_clean_failure(done, 2)
    assert "STABLENEW_TLS_CERT" in done.stderr
    assert "cert-is-a-directory" in done.stderr


def test_only_one_tls_variable(run_cli: RunCli, tmp_path: Path, tls_pair: tuple[Path, Path],
                               free_port: Callable[[], int]) -> None:
    env = {"STABLENEW_QUEUE_ADDR": f"127.0.0.1:{free_port()}",
           "STABLENEW_DATA_DIR": str(tmp_path), "STABLENEW_TLS_CERT": str(tls_pair[0])}
    done = run_cli("serve", "queue", env=env)
    assert_clean_failure(done, 2)
    assert "STABLENEW_TLS_KEY" in done.stderr


def test_bad_max_workers(run_cli: RunCli, tmp_path: Path, free_port: Callable[[], int]) -> None:
    env = {"STABLENEW_QUEUE_ADDR": f"127.0.0.1:{free_port()}",
           "STABLENEW_DATA_DIR": str(tmp_path), "STABLENEW_MAX_WORKERS": "many"}
    done = run_cli("serve", "queue", env=env)
    assert_clean_failure(done, 2)
    assert "STABLENEW_MAX_WORKERS" in done.stderr


def test_superscript_max_workers_is_a_configuration_error(
    run_cli: RunCli, tmp_path: Path, free_port: Callable[[], int]
) -> None:
    env = {"STABLENEW_QUEUE_ADDR": f"127.0.0.1:{free_port()}",
           "STABLENEW_DATA_DIR": str(tmp_path), "STABLENEW_MAX_WORKERS": "\u00b2"}
    done = run_cli("serve", "queue", env=env)
    assert_clean_failure(done, 2)


def assert_startup_failure(done: subprocess.CompletedProcess[str]) -> str:
    """A start that cannot work: exit 1 or 2, no traceback; returns the stablenew: line(s)."""
    output = f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert done.returncode in (1, 2), output
    assert "Traceback" not in done.stderr + done.stdout, output
    ours = [line for line in done.stderr.splitlines() if line.startswith("stablenew: ")]
    assert ours, output
    return "\n".join(ours)


def test_unusable_data_dir_is_a_clean_startup_error(
    run_cli: RunCli, tmp_path: Path, free_port: Callable[[], int]
) -> None:
    not_a_directory = tmp_path / "a-file"
    not_a_directory.write_text("")
    done = run_cli("serve", "queue",
                   env={"STABLENEW_QUEUE_ADDR": f"127.0.0.1:{free_port()}",
                        "STABLENEW_DATA_DIR": str(not_a_directory / "data")})
    message = assert_startup_failure(done)
    assert "a-file" in message


def test_invalid_certificate_is_named(run_cli: RunCli, tmp_path: Path,
                                      free_port: Callable[[], int]) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("this is not a certificate\n")
    done = run_cli("serve", "bundle",
                   env={"STABLENEW_BUNDLE_ADDR": f"127.0.0.1:{free_port()}",
                        "STABLENEW_DATA_DIR": str(tmp_path / "data"),
                        "STABLENEW_TLS_CERT": str(garbage), "STABLENEW_TLS_KEY": str(garbage)})
    message = assert_startup_failure(done)
    assert "STABLENEW_TLS_CERT" in message or "certificate" in message.lower(), message


def test_health_unknown_service(run_cli: RunCli) -> None:
    done = run_cli("health", "nosuchservice")
    assert_clean_failure(done, 2)
    assert "nosuchservice" in done.stderr
    assert "queue" in done.stderr  # the message lists the services that exist


def test_health_bad_address(run_cli: RunCli) -> None:
    done = run_cli("health", "queue", env={"STABLENEW_QUEUE_ADDR": "127.0.0.1:notaport"})
    assert_clean_failure(done, 2)
    assert "STABLENEW_QUEUE_ADDR" in done.stderr


def test_serve_unknown_service_is_a_usage_error(run_cli: RunCli) -> None:
    done = run_cli("serve", "nosuchservice")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "nosuchservice" in done.stderr


def test_health_of_a_stopped_service_is_unreachable(
    run_cli: RunCli, free_port: Callable[[], int]
) -> None:
    done = run_cli("health", "--timeout", "2", "queue",
                   env={"STABLENEW_QUEUE_ADDR": f"127.0.0.1:{free_port()}"})
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "UNREACHABLE" in done.stdout


def test_taken_port(run_cli: RunCli, tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        done = run_cli("serve", "queue",
                       env={"STABLENEW_QUEUE_ADDR": f"127.0.0.1:{port}",
                            "STABLENEW_DATA_DIR": str(tmp_path)})
    assert_clean_failure(done, 1)
    assert "could not start" in done.stderr
    assert f"127.0.0.1:{port}" in done.stderr
