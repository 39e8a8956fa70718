"""What every view model gets: the backend, the UI queue, the connection and the status line."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from stablenew.gui.backend import Backend
from stablenew.gui.connection_model import ConnectionModel
from stablenew.gui.dispatch import UiQueue
from stablenew.gui.signals import Signal
from stablenew.sdk import StableNewError


class Level(Enum):
    """How the status line shows a message."""

    INFO = "info"
    ERROR = "error"


@dataclass(frozen=True)
class StatusMessage:
    """One line for the status bar."""

    text: str
    level: Level


def describe(error: BaseException) -> str:
    """One line: what the service said (code, reason, message and the fields at fault), or the
    kind of an unexpected error."""
    if isinstance(error, StableNewError):
        return " ".join(str(error).split())
    return f"unexpected error: {type(error).__name__}: {error}"


class StatusModel:
    """The status line: the latest message, and whether it is an error."""

    def __init__(self) -> None:
        self.message = StatusMessage("", Level.INFO)
        self.changed: Signal[StatusMessage] = Signal()

    def info(self, text: str) -> None:
        """Say what happened."""
        self.message = StatusMessage(text, Level.INFO)
        self.changed.emit(self.message)

    def error(self, action: str, error: BaseException | str) -> None:
        """Say that `action` failed, and why."""
        why = error if isinstance(error, str) else describe(error)
        self.message = StatusMessage(f"{action} failed: {why}", Level.ERROR)
        self.changed.emit(self.message)


@dataclass
class Context:
    """The shared services of the view models."""

    ui: UiQueue
    backend: Backend
    connection: ConnectionModel
    status: StatusModel
