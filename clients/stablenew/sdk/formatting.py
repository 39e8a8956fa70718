"""Values written for people, shared by the clients built on the SDK (the CLI's plain text and
the window's cells), so both say the same thing the same way."""

from __future__ import annotations

from datetime import timedelta

SECONDS_PER_MINUTE = 60
MINUTES_PER_HOUR = 60


def format_duration(value: timedelta | None, spaced: bool = False, unknown: str = "-") -> str:
    """A duration to the tenth of a second under a minute ("12.3s"), then to the second
    ("3m05s") and to the minute ("1h02m"); `spaced` puts a space between the units ("3m 05s",
    as table cells read best); `unknown` stands for None."""
    if value is None:
        return unknown
    seconds = value.total_seconds()
    if seconds < SECONDS_PER_MINUTE:
        return f"{seconds:.1f}s"
    gap = " " if spaced else ""
    minutes, seconds = divmod(round(seconds), SECONDS_PER_MINUTE)
    if minutes < MINUTES_PER_HOUR:
        return f"{minutes}m{gap}{seconds:02d}s"
    hours, minutes = divmod(minutes, MINUTES_PER_HOUR)
    return f"{hours}h{gap}{minutes:02d}m"
