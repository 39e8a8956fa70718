"""The emulator's settings: a flag, else STABLENEW_EMULATOR_<NAME>, else the default.

Every setting is declared once in SETTINGS; the CLI builds its flags and help from the same
table, so a flag and its variable cannot drift apart. Bad values are a ConfigError naming the
flag or variable (the CLI exits 2).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from stablenew.emulator import catalog
from stablenew.emulator.faults import FaultSettings, settings_from
from stablenew.runtime.settings import ConfigError, parse_address

ENV_PREFIX = "STABLENEW_EMULATOR_"
DEFAULT_ADDRESS = "127.0.0.1:7860"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _address(text: str, source: str) -> str:
    parse_address(text, source)
    return text.strip()


def _seconds(text: str, source: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{source}: {text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{source}: {text!r} must be a number of seconds >= 0")
    return value


def _count(text: str, source: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{source}: {text!r} is not a whole number") from None
    if value < -1:
        raise ConfigError(f"{source}: {text!r} must be -1 (every request), 0 or more")
    return value


def _text(text: str, source: str) -> str:
    return text


def _auth(text: str, source: str) -> tuple[tuple[str, str], ...]:
    """user:pass[,user:pass...] as the WebUI's --api-auth takes it."""
    pairs = []
    for item in text.split(","):
        user, sep, password = item.strip().partition(":")
        if not sep or not user:
            raise ConfigError(f"{source}: {item.strip()!r} is not user:password")
        pairs.append((user, password))
    return tuple(pairs)


def _checkpoint(text: str, source: str) -> str:
    found = catalog.find_checkpoint(text.strip())
    if found is None:
        known = ", ".join(c.title for c in catalog.CHECKPOINTS)
        raise ConfigError(f"{source}: unknown checkpoint {text!r}; one of {known}")
    return found.title


def _log_level(text: str, source: str) -> str:
    if text.upper() not in LOG_LEVELS:
        raise ConfigError(f"{source}: {text!r} is not one of {', '.join(LOG_LEVELS)}")
    return text.upper()


@dataclass(frozen=True)
class Setting:
    name: str
    parse: Callable[[str, str], Any]
    metavar: str
    help: str

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def variable(self) -> str:
        return ENV_PREFIX + ("ADDR" if self.name == "address" else self.name.upper())


_MATCH_HELP = "only requests whose prompt contains TEXT (or whose endpoint is TEXT)"

SETTINGS: tuple[Setting, ...] = (
    Setting("address", _address, "HOST:PORT",
            f"where to listen (default {DEFAULT_ADDRESS}; port 0 picks a free port)"),
    Setting("step_seconds", _seconds, "S", "simulated time per sampling step and image "
            "(default 0.02)"),
    Setting("model_load_seconds", _seconds, "S", "time a checkpoint load holds the generation "
            "lock (default 0.5): start-up, model switches, refiner, reload"),
    Setting("start_delay_seconds", _seconds, "S", "wait this long before opening the port "
            "(default 0): a WebUI that is slow to start"),
    Setting("api_auth", _auth, "USER:PASS", "protect /sdapi/* with HTTP Basic auth "
            "(comma-separate several)"),
    Setting("checkpoint", _checkpoint, "NAME", "checkpoint loaded at start (title or name; "
            f"default {catalog.DEFAULT_CHECKPOINT.model_name})"),
    Setting("fail_next", _count, "N", "fail the next N generation requests with a 500 "
            "(-1: all)"),
    Setting("fail_match", _text, "TEXT", f"with --fail-next: {_MATCH_HELP}"),
    Setting("oom_next", _count, "N", "fail the next N generation requests with CUDA out of "
            "memory (-1: all)"),
    Setting("oom_match", _text, "TEXT", f"with --oom-next: {_MATCH_HELP}"),
    Setting("hang_next", _count, "N", "hang the next N generation requests until released "
            "(-1: all)"),
    Setting("hang_match", _text, "TEXT", f"with --hang-next: {_MATCH_HELP}"),
    Setting("refuse_seconds", _seconds, "S", "refuse connections for S seconds right after "
            "the port opens (close and reopen the listening socket)"),
    Setting("log_level", _log_level, "LEVEL", "DEBUG, INFO, WARNING or ERROR (default INFO)"),
)


@dataclass(frozen=True)
class EmulatorConfig:
    address: str = DEFAULT_ADDRESS
    step_seconds: float = 0.02
    model_load_seconds: float = 0.5
    start_delay_seconds: float = 0.0
    api_auth: tuple[tuple[str, str], ...] = ()
    checkpoint: str = catalog.DEFAULT_CHECKPOINT.title
    faults: FaultSettings = field(default_factory=FaultSettings)
    log_level: str = "INFO"

    @property
    def host(self) -> str:
        return parse_address(self.address, "address")[0].strip("[]")

    @property
    def port(self) -> int:
        return parse_address(self.address, "address")[1]

    @classmethod
    def load(cls, flags: Mapping[str, str | None] | None = None,
             env: Mapping[str, str] | None = None) -> EmulatorConfig:
        """Flags (by setting name, unparsed text) over STABLENEW_EMULATOR_* over defaults."""
        flags = flags or {}
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for setting in SETTINGS:
            flag_value = flags.get(setting.name)
            if flag_value is not None:
                values[setting.name] = setting.parse(flag_value, setting.flag)
            elif env.get(setting.variable):
                values[setting.name] = setting.parse(env[setting.variable], setting.variable)
        faults = settings_from(values)
        plain = {k: v for k, v in values.items() if k in _CONFIG_FIELDS}
        return cls(**plain, faults=faults)


# The settings EmulatorConfig takes as they are; the fault settings go into its `faults`.
_CONFIG_FIELDS = frozenset(item.name for item in fields(EmulatorConfig)) - {"faults"}
