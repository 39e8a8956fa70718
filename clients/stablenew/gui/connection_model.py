"""Which services the window cannot reach right now, as the banner says it."""

from __future__ import annotations

from collections.abc import Mapping

from stablenew.gui.signals import Signal

SERVICE_ORDER = ("bundle", "queue", "runner", "history")


class ConnectionModel:
    """Lost and restored services (set by the backend, on the UI thread), and a start-up note
    while `--local` starts the services.

    Attributes:
        changed: Emitted whenever the banner changes.
        restored: Emitted with a service's name when it answers again: its panels catch up.
    """

    def __init__(self, addresses: Mapping[str, str]) -> None:
        self.addresses = dict(addresses)
        self.changed: Signal[None] = Signal()
        self.restored_signal: Signal[str] = Signal()
        self._lost: dict[str, str] = {}
        self._note = ""

    def lost(self, service: str, detail: str) -> None:
        """`service` cannot be reached (`detail`: why, as gRPC said it)."""
        self._lost[service] = detail
        self.changed.emit(None)

    def restored(self, service: str) -> None:
        """`service` answers again."""
        if self._lost.pop(service, None) is not None:
            self.changed.emit(None)
            self.restored_signal.emit(service)

    def is_lost(self, service: str) -> bool:
        """Whether `service` is unreachable right now."""
        return service in self._lost

    def any_lost(self) -> bool:
        """Whether some service is unreachable."""
        return bool(self._lost)

    def set_note(self, note: str) -> None:
        """A start-up note for the banner ("" removes it)."""
        self._note = note
        self.changed.emit(None)

    def banner(self) -> str:
        """What the banner says; empty when all is well."""
        lost = [service for service in SERVICE_ORDER if service in self._lost]
        if lost:
            names = ", ".join(f"{service} ({self.addresses.get(service, '?')})"
                              for service in lost)
            return (f"Lost connection to {names}. Reconnecting by itself; the window catches "
                    "up when it is back.")
        return self._note
