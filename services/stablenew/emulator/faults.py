"""Fault injection and the run-time timing knobs (see the package docstring for each fault).

One FaultControl per server, shared by the HTTP handlers (which take faults and block on hangs)
and the admin endpoint (which changes them). All state sits behind one Condition so a hang can
wait for its release without polling.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

FAULT_KINDS = ("hang", "oom", "fail")
UNLIMITED = -1


class FaultUpdateError(ValueError):
    """A bad admin request; the message names the key."""


@dataclass(frozen=True)
class FaultSettings:
    """Faults armed at start (flags / environment); the admin endpoint uses the same names."""

    fail_next: int = 0
    fail_match: str = ""
    oom_next: int = 0
    oom_match: str = ""
    hang_next: int = 0
    hang_match: str = ""
    refuse_seconds: float = 0.0


@dataclass
class _Rule:
    remaining: int = 0
    match: str = ""

    def matches(self, endpoint: str, prompt: str) -> bool:
        if self.remaining == 0:
            return False
        return not self.match or self.match in prompt or self.match == endpoint

    def consume(self) -> None:
        if self.remaining > 0:
            self.remaining -= 1


def _count(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < UNLIMITED:
        raise FaultUpdateError(f"{key}: expected a whole number >= -1, got {value!r}")
    return value


def _seconds(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise FaultUpdateError(f"{key}: expected a number of seconds >= 0, got {value!r}")
    return float(value)


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise FaultUpdateError(f"{key}: expected a string, got {value!r}")
    return value


def _flag(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise FaultUpdateError(f"{key}: expected true or false, got {value!r}")
    return value


_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    **{f"{kind}_next": _count for kind in FAULT_KINDS},
    **{f"{kind}_match": _text for kind in FAULT_KINDS},
    "refuse_seconds": _seconds, "model_load_seconds": _seconds, "step_seconds": _seconds,
    "clear": _flag, "release_hung": _flag, "adetailer_detect_nothing": _text,
}
# adetailer_detect_nothing: this text in a pass's ad_model makes the pass find nothing ("*":
# every pass; "": off), as a real detector does on an image without faces or hands.
DETECT_EVERYTHING = ""
EVERY_MODEL = "*"


class FaultControl:
    def __init__(self, settings: FaultSettings | None = None, step_seconds: float = 0.02,
                 model_load_seconds: float = 0.5) -> None:
        self._condition = threading.Condition()
        self._initial = (settings or FaultSettings(), step_seconds, model_load_seconds)
        self._rules = {kind: _Rule() for kind in FAULT_KINDS}
        self._injected = dict.fromkeys(FAULT_KINDS, 0)
        self._step_seconds = step_seconds
        self._model_load_seconds = model_load_seconds
        self._refuse_until = 0.0
        self._detect_nothing = DETECT_EVERYTHING
        self._release_generation = 0
        self._hanging = 0
        self._shut_down = False
        # Called (outside the lock) with the new refusal length when refuse_seconds is set.
        self.on_refuse: Callable[[float], None] | None = None
        self._reset()

    def _reset(self) -> None:
        settings, self._step_seconds, self._model_load_seconds = self._initial
        self._detect_nothing = DETECT_EVERYTHING
        for kind in FAULT_KINDS:
            self._rules[kind] = _Rule(getattr(settings, f"{kind}_next"),
                                      getattr(settings, f"{kind}_match"))

    @property
    def initial_refuse_seconds(self) -> float:
        return self._initial[0].refuse_seconds

    @property
    def step_seconds(self) -> float:
        with self._condition:
            return self._step_seconds

    @property
    def model_load_seconds(self) -> float:
        with self._condition:
            return self._model_load_seconds

    def detects_nothing(self, ad_model: str) -> bool:
        """Whether an ADetailer pass with this model is to find nothing."""
        with self._condition:
            wanted = self._detect_nothing
        return wanted == EVERY_MODEL or (wanted != DETECT_EVERYTHING and wanted in ad_model)

    def refusing_for(self) -> float:
        """Seconds left in the current refusal window (0 when connections are accepted)."""
        with self._condition:
            return max(0.0, self._refuse_until - time.monotonic())

    def take(self, endpoint: str, prompt: str) -> str | None:
        """The fault this generation request must suffer, if any (consumes one count)."""
        with self._condition:
            for kind in FAULT_KINDS:
                rule = self._rules[kind]
                if rule.matches(endpoint, prompt):
                    rule.consume()
                    self._injected[kind] += 1
                    return kind
        return None

    def hang(self) -> None:
        """Block a hung request until it is released or the server shuts down."""
        with self._condition:
            generation = self._release_generation
            self._hanging += 1
            try:
                self._condition.wait_for(
                    lambda: self._release_generation != generation or self._shut_down)
            finally:
                self._hanging -= 1

    def release_hung(self) -> None:
        with self._condition:
            self._release_generation += 1
            self._condition.notify_all()

    def shutdown(self) -> None:
        with self._condition:
            self._shut_down = True
            self._condition.notify_all()

    def set_refuse(self, seconds: float) -> None:
        with self._condition:
            self._refuse_until = time.monotonic() + seconds if seconds > 0 else 0.0
        if self.on_refuse is not None:
            self.on_refuse(seconds)

    def update(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Apply an admin request (a partial update); returns the new state."""
        checked = self._check(changes)
        if checked.get("clear"):
            with self._condition:
                self._reset()
            self.release_hung()
            self.set_refuse(0.0)
        with self._condition:
            for kind in FAULT_KINDS:
                rule = self._rules[kind]
                rule.remaining = checked.get(f"{kind}_next", rule.remaining)
                rule.match = checked.get(f"{kind}_match", rule.match)
            self._step_seconds = checked.get("step_seconds", self._step_seconds)
            self._model_load_seconds = checked.get("model_load_seconds",
                                                   self._model_load_seconds)
            self._detect_nothing = checked.get("adetailer_detect_nothing", self._detect_nothing)
        if checked.get("release_hung"):
            self.release_hung()
        if "refuse_seconds" in checked:
            self.set_refuse(checked["refuse_seconds"])
        return self.snapshot()

    @staticmethod
    def _check(changes: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(changes) - set(_CHECKS))
        if unknown:
            raise FaultUpdateError(
                f"unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(_CHECKS))}")
        return {key: _CHECKS[key](key, value) for key, value in changes.items()}

    def snapshot(self) -> dict[str, Any]:
        with self._condition:
            state: dict[str, Any] = {}
            for kind in FAULT_KINDS:
                state[f"{kind}_next"] = self._rules[kind].remaining
                state[f"{kind}_match"] = self._rules[kind].match
            state["refuse_seconds"] = round(max(0.0, self._refuse_until - time.monotonic()), 3)
            state["model_load_seconds"] = self._model_load_seconds
            state["step_seconds"] = self._step_seconds
            state["adetailer_detect_nothing"] = self._detect_nothing
            state["hanging"] = self._hanging
            state["injected"] = dict(self._injected)
            return state


def settings_from(values: Mapping[str, Any]) -> FaultSettings:
    """FaultSettings from a mapping of its field names (unknown names ignored)."""
    names = {f.name for f in dataclasses.fields(FaultSettings)}
    return FaultSettings(**{k: v for k, v in values.items() if k in names})
