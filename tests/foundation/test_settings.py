"""stablenew.runtime.settings: addresses, TLS files and server settings, from explicit env dicts."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from stablenew.contract.endpoints import DEFAULT_ADDRESSES, SERVICE_NAMES, address_variable
from stablenew.runtime.settings import (
    ConfigError,
    ServerSettings,
    TlsFiles,
    parse_address,
    service_address,
    tls_files,
)

# --- parse_address ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:50052", ("127.0.0.1", 50052)),
        ("0.0.0.0:1", ("0.0.0.0", 1)),
        ("[::1]:50052", ("[::1]", 50052)),
        ("[::]:8080", ("[::]", 8080)),
        ("[fe80::1%eth0]:443", ("[fe80::1%eth0]", 443)),
        ("localhost:50051", ("localhost", 50051)),
        ("queue.stablenew.svc.cluster.local:50052", ("queue.stablenew.svc.cluster.local", 50052)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("127.0.0.1:65535", ("127.0.0.1", 65535)),
        ("  localhost:50051  ", ("localhost", 50051)),
    ],
)
def test_parse_address_accepts(value: str, expected: tuple[str, int]) -> None:
    assert parse_address(value, "STABLENEW_QUEUE_ADDR") == expected


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("", "is not host:port"),
        ("   ", "is not host:port"),
        ("nonsense", "is not host:port"),
        ("127.0.0.1", "is not host:port"),
        (":50052", "is not host:port"),
        ("localhost:", "is not a number"),
        ("localhost:http", "is not a number"),
        ("localhost:-1", "is not a number"),
        ("localhost:50_052", "is not a number"),
        ("localhost:5.5", "is not a number"),
        ("localhost:65536", "is not a number"),
        ("localhost:99999999999999999999", "is not a number"),
        ("[::1]", "is not a number"),
        ("[::1:50052", "unbalanced brackets"),
        ("::1]:50052", "unbalanced brackets"),
    ],
)
def test_parse_address_refuses(value: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_address(value, "STABLENEW_QUEUE_ADDR")
    message = str(caught.value)
    assert message.startswith("STABLENEW_QUEUE_ADDR: "), message
    assert fragment in message
    assert repr(value) in message


@pytest.mark.parametrize("value", ["::1", "fe80::1"])
def test_parse_address_unbracketed_ipv6_without_port_is_refused(value: str) -> None:
    with pytest.raises(ConfigError):
        parse_address(value, "STABLENEW_QUEUE_ADDR")


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


@pytest.mark.parametrize("port_text", ["\u00b2", "5\u00b9"])
def test_parse_address_non_ascii_digit_port_is_a_config_error(port_text: str) -> None:
    with pytest.raises(ConfigError):
        parse_address(f"localhost:{port_text}", "STABLENEW_QUEUE_ADDR")


# --- service_address ----------------------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_service_address_default(service: str) -> None:
    assert service_address(service, {}) == DEFAULT_ADDRESSES[service]
    assert DEFAULT_ADDRESSES[service].startswith("127.0.0.1:")


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_service_address_variable_beats_default(service: str) -> None:
    env = {address_variable(service): "127.0.0.1:6000"}
    assert address_variable(service) == f"STABLENEW_{service.upper()}_ADDR"
    assert service_address(service, env) == "127.0.0.1:6000"


def test_service_address_flag_beats_variable() -> None:
    env = {"STABLENEW_QUEUE_ADDR": "127.0.0.1:6000"}
    assert service_address("queue", env, "127.0.0.1:7000") == "127.0.0.1:7000"


def test_service_address_flag_wins_over_a_bad_variable() -> None:
    env = {"STABLENEW_QUEUE_ADDR": "nonsense"}
    assert service_address("queue", env, "127.0.0.1:7000") == "127.0.0.1:7000"


def test_service_address_other_services_variable_is_ignored() -> None:
    env = {"STABLENEW_BUNDLE_ADDR": "127.0.0.1:6000"}
    assert service_address("queue", env) == DEFAULT_ADDRESSES["queue"]


def test_service_address_empty_variable_means_default() -> None:
    assert service_address("queue", {"STABLENEW_QUEUE_ADDR": ""}) == DEFAULT_ADDRESSES["queue"]


@pytest.mark.parametrize("value", [" 127.0.0.1:6000", "127.0.0.1:6000\n"])
def test_service_address_surrounding_whitespace(value: str) -> None:
    try:
        address = service_address("queue", {"STABLENEW_QUEUE_ADDR": value})
    except ConfigError:
        return  # refusing it is fine too
    assert address == "127.0.0.1:6000"


def test_service_address_bad_variable_names_it() -> None:
    with pytest.raises(ConfigError, match=r"^STABLENEW_QUEUE_ADDR: .*'nonsense'"):
        service_address("queue", {"STABLENEW_QUEUE_ADDR": "nonsense"})


def test_service_address_bad_flag_names_it() -> None:
    with pytest.raises(ConfigError, match=r"^--address: .*70000"):
        service_address("queue", {}, "127.0.0.1:70000")


# --- tls_files ----------------------------------------------------------------------------------


@pytest.fixture
def pem_files(tmp_path: Path) -> tuple[Path, Path]:
    cert = tmp_path / "cert.pem"
    key = tmp_path / "key.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\n")
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    return cert, key


def test_tls_files_neither_means_no_tls() -> None:
    assert tls_files({}) is None
    assert tls_files({"STABLENEW_TLS_CERT": "", "STABLENEW_TLS_KEY": ""}) is None


def test_tls_files_both(pem_files: tuple[Path, Path]) -> None:
    cert, key = pem_files
    found = tls_files({"STABLENEW_TLS_CERT": str(cert), "STABLENEW_TLS_KEY": str(key)})
    assert found == TlsFiles(cert=cert, key=key)
    assert found.read() == (key.read_bytes(), cert.read_bytes())


def test_tls_files_flags_beat_variables(pem_files: tuple[Path, Path], tmp_path: Path) -> None:
    cert, key = pem_files
    env = {"STABLENEW_TLS_CERT": str(tmp_path / "missing.crt"),
           "STABLENEW_TLS_KEY": str(tmp_path / "missing.key")}
    assert tls_files(env, str(cert), str(key)) == TlsFiles(cert=cert, key=key)


@pytest.mark.parametrize("present", ["STABLENEW_TLS_CERT", "STABLENEW_TLS_KEY"])
def test_tls_files_only_one_is_an_error(present: str, pem_files: tuple[Path, Path]) -> None:
    with pytest.raises(ConfigError, match="both STABLENEW_TLS_CERT and STABLENEW_TLS_KEY"):
        tls_files({present: str(pem_files[0])})


@pytest.mark.parametrize("broken", ["STABLENEW_TLS_CERT", "STABLENEW_TLS_KEY"])
@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_tls_files_unreadable_file_names_the_variable(
    broken: str, kind: str, pem_files: tuple[Path, Path], tmp_path: Path
) -> None:
    cert, key = pem_files
    env = {"STABLENEW_TLS_CERT": str(cert), "STABLENEW_TLS_KEY": str(key)}
    bad = tmp_path / "nowhere.pem"
    if kind == "directory":
        bad = tmp_path / "a-directory"
        bad.mkdir()
    env[broken] = str(bad)
    with pytest.raises(ConfigError) as caught:
        tls_files(env)
    message = str(caught.value)
    assert message.startswith(f"{broken}: cannot read {bad}"), message


# --- ServerSettings.load ------------------------------------------------------------------------


def test_load_defaults(tmp_path: Path) -> None:
    settings = ServerSettings.load("queue", env={})
    assert settings.service == "queue"
    assert settings.address == DEFAULT_ADDRESSES["queue"]
    assert settings.token is None
    assert settings.tls is None
    assert settings.max_workers > 0
    assert settings.max_concurrent_rpcs == settings.max_workers
    assert settings.grace_seconds > 0
    assert settings.max_message_bytes > 4 * 1024 * 1024
    assert settings.webui_url.startswith("http://127.0.0.1:")


def test_load_reads_variables(tmp_path: Path) -> None:
    env = {
        "STABLENEW_RUNNER_ADDR": "127.0.0.1:6001",
        "STABLENEW_DATA_DIR": str(tmp_path),
        "STABLENEW_TOKEN": "s3cret",
        "STABLENEW_MAX_WORKERS": "8",
        "STABLENEW_MAX_CONCURRENT_RPCS": "5",
        "STABLENEW_GRACE_SECONDS": "0.5",
        "STABLENEW_MAX_MESSAGE_BYTES": "1000000",
        "STABLENEW_WEBUI_URL": "http://127.0.0.1:7861",
    }
    settings = ServerSettings.load("runner", env=env)
    assert settings.address == "127.0.0.1:6001"
    assert settings.data_dir == tmp_path
    assert settings.token == "s3cret"
    assert settings.max_workers == 8
    assert settings.max_concurrent_rpcs == 5
    assert settings.grace_seconds == 0.5
    assert settings.max_message_bytes == 1_000_000
    assert settings.webui_url == "http://127.0.0.1:7861"


def test_load_flags_beat_variables(tmp_path: Path) -> None:
    env = {"STABLENEW_QUEUE_ADDR": "127.0.0.1:6001", "STABLENEW_DATA_DIR": "/elsewhere"}
    settings = ServerSettings.load("queue", env=env, address="127.0.0.1:0",
                                   data_dir=str(tmp_path))
    assert settings.address == "127.0.0.1:0"
    assert settings.data_dir == tmp_path


def test_load_max_concurrent_rpcs_follows_workers() -> None:
    settings = ServerSettings.load("queue", env={"STABLENEW_MAX_WORKERS": "12"})
    assert settings.max_concurrent_rpcs == 12


def test_load_empty_token_means_no_auth() -> None:
    assert ServerSettings.load("queue", env={"STABLENEW_TOKEN": ""}).token is None


@pytest.mark.parametrize("text", ["abc", "0", "-1", "1.5", " 4", "4x", "1e3"])
@pytest.mark.parametrize(
    "variable",
    ["STABLENEW_MAX_WORKERS", "STABLENEW_MAX_CONCURRENT_RPCS", "STABLENEW_MAX_MESSAGE_BYTES"],
)
def test_load_bad_positive_int(variable: str, text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        ServerSettings.load("queue", env={variable: text})
    assert str(caught.value).startswith(f"{variable}: {text!r}")


def test_load_superscript_workers_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        ServerSettings.load("queue", env={"STABLENEW_MAX_WORKERS": "\u00b2"})


@pytest.mark.parametrize("text", ["abc", "0", "-1", "-0.5", "", "1s"])
def test_load_bad_grace_seconds(text: str) -> None:
    if text == "":
        # Empty means the default, not an error.
        assert ServerSettings.load("queue", env={"STABLENEW_GRACE_SECONDS": ""}).grace_seconds > 0
        return
    with pytest.raises(ConfigError) as caught:
        ServerSettings.load("queue", env={"STABLENEW_GRACE_SECONDS": text})
    assert str(caught.value).startswith(f"STABLENEW_GRACE_SECONDS: {text!r}")


@pytest.mark.parametrize("text", ["2", "0.25", "1e1"])
def test_load_good_grace_seconds(text: str) -> None:
    settings = ServerSettings.load("queue", env={"STABLENEW_GRACE_SECONDS": text})
    assert settings.grace_seconds == float(text)


@pytest.mark.parametrize("text", ["nan", "inf"])
def test_load_non_finite_grace_seconds_is_refused(text: str) -> None:
    try:
        settings = ServerSettings.load("queue", env={"STABLENEW_GRACE_SECONDS": text})
    except ConfigError:
        return
    assert math.isfinite(settings.grace_seconds), settings.grace_seconds


@pytest.mark.parametrize("service", ["", "nosuchservice", "Queue", "common"])
def test_load_unknown_service(service: str) -> None:
    with pytest.raises(ConfigError, match="unknown service"):
        ServerSettings.load(service, env={})


def test_load_bad_address_variable() -> None:
    with pytest.raises(ConfigError, match=r"^STABLENEW_QUEUE_ADDR: "):
        ServerSettings.load("queue", env={"STABLENEW_QUEUE_ADDR": "nonsense"})


def test_load_tls_needs_both(tmp_path: Path) -> None:
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    with pytest.raises(ConfigError, match="TLS needs both"):
        ServerSettings.load("queue", env={"STABLENEW_TLS_CERT": str(cert)})


def test_load_never_reads_the_real_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STABLENEW_QUEUE_ADDR", "nonsense")
    monkeypatch.setenv("STABLENEW_MAX_WORKERS", "abc")
    settings = ServerSettings.load("queue", env={})
    assert settings.address == DEFAULT_ADDRESSES["queue"]


@pytest.mark.parametrize(("text", "level"), [("FULL", "FULL"), ("NORMAL", "NORMAL"),
                                             ("", "NORMAL")])
def test_load_sqlite_synchronous(text: str, level: str) -> None:
    env = {"STABLENEW_SQLITE_SYNCHRONOUS": text}
    assert ServerSettings.load("queue", env=env).sqlite_synchronous == level


@pytest.mark.parametrize("text", ["FAST", "full", "OFF"])
def test_load_bad_sqlite_synchronous_names_the_variable(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        ServerSettings.load("history", env={"STABLENEW_SQLITE_SYNCHRONOUS": text})
    assert str(caught.value) == (f"STABLENEW_SQLITE_SYNCHRONOUS: {text!r} is not one of "
                                 "NORMAL, FULL")
