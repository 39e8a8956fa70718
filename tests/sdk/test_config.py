"""The client's configuration: arguments over STABLENEW_* variables over the defaults, and a
clear ConfigError for a setting that cannot work."""

from __future__ import annotations

from pathlib import Path

import pytest

from stablenew.contract.endpoints import DEFAULT_ADDRESSES, DEFAULT_MAX_MESSAGE_BYTES
from stablenew.sdk import Client, ClientConfig, ConfigError
from tests.foundation.conftest import _write_self_signed
from tests.pki import new_authority, write_authority, write_server_files


def test_defaults_without_variables() -> None:
    config = ClientConfig.load(env={})
    assert config.addresses == DEFAULT_ADDRESSES
    assert (config.token, config.tls_root_certificate, config.timeout) == (None, None, 30.0)
    assert config.max_message_bytes == DEFAULT_MAX_MESSAGE_BYTES == 64 * 1024 * 1024
    assert config.call_metadata == ()


def test_variables_then_arguments(tmp_path: Path) -> None:
    certificate, _ = _write_self_signed(tmp_path)
    env = {"STABLENEW_QUEUE_ADDR": "gpu:6000", "STABLENEW_HISTORY_ADDR": " [::1]:7000 ",
           "STABLENEW_TOKEN": "from-env", "STABLENEW_TLS_CERT": str(certificate),
           "STABLENEW_MAX_MESSAGE_BYTES": "1024"}
    config = ClientConfig.load(env=env)
    assert (config.addresses["queue"], config.addresses["history"]) == ("gpu:6000", "[::1]:7000")
    assert config.addresses["bundle"] == DEFAULT_ADDRESSES["bundle"]
    assert config.call_metadata == (("authorization", "Bearer from-env"),)
    assert config.tls_root_certificate == certificate.read_bytes()
    assert ("grpc.max_receive_message_length", 1024) in config.channel_options
    config = ClientConfig.load(env=env, queue_address="other:1", token="from-argument")
    assert config.addresses["queue"] == "other:1"
    assert config.token == "from-argument"
    assert Client(env=env, runner_address="r:2").config.addresses["runner"] == "r:2"


def test_the_ca_bundle_wins_over_the_certificate(tmp_path: Path) -> None:
    authority = new_authority()
    ca = write_authority(tmp_path / "ca", authority)
    certificate, _ = write_server_files(tmp_path / "pod", authority)
    env = {"STABLENEW_TLS_CA": str(ca), "STABLENEW_TLS_CERT": str(certificate)}
    assert ClientConfig.load(env=env).tls_root_certificate == ca.read_bytes()
    # The argument wins over both.
    config = ClientConfig.load(env=env, tls_ca=certificate)
    assert config.tls_root_certificate == certificate.read_bytes()


@pytest.mark.parametrize(("env", "arguments", "named"), [
    ({"STABLENEW_QUEUE_ADDR": "no-port"}, {}, "STABLENEW_QUEUE_ADDR"),
    ({}, {"bundle_address": "host:99999"}, "bundle_address"),
    ({}, {"runner_address": "host:0"}, "runner_address"),
    ({"STABLENEW_TLS_CERT": "/no/such/cert.pem"}, {}, "STABLENEW_TLS_CERT"),
    ({"STABLENEW_TLS_CA": "/no/such/ca.pem", "STABLENEW_TLS_CERT": "/no/such/cert.pem"}, {},
     "STABLENEW_TLS_CA"),
    ({"STABLENEW_MAX_MESSAGE_BYTES": "-5"}, {}, "STABLENEW_MAX_MESSAGE_BYTES"),
    ({}, {"timeout": 0.0}, "timeout"),
])
def test_a_setting_that_cannot_work(env: dict[str, str], arguments: dict[str, object],
                                    named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        ClientConfig.load(env=env, **arguments)  # type: ignore[arg-type]


def test_a_file_without_a_certificate(tmp_path: Path) -> None:
    _, key = _write_self_signed(tmp_path)
    with pytest.raises(ConfigError, match="holds no PEM certificate"):
        Client(env={}, tls_ca=key)


def test_the_runner_tls_name_applies_to_runners_over_tls_only(tmp_path: Path) -> None:
    certificate, _ = _write_self_signed(tmp_path)
    override = ("grpc.ssl_target_name_override", "runner.stablenew.svc")
    env = {"STABLENEW_RUNNER_TLS_NAME": "runner.stablenew.svc"}
    with_tls = ClientConfig.load(env=env | {"STABLENEW_TLS_CA": str(certificate)})
    assert override in with_tls.options_for("runner")
    assert override not in with_tls.options_for("queue")
    assert override not in ClientConfig.load(env=env).options_for("runner")  # plaintext
