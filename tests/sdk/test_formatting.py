"""The duration format the CLI and the window share: compact for plain text, spaced for table
cells, each with its own word for an unknown duration."""

from __future__ import annotations

from datetime import timedelta

import pytest

from stablenew.cli import text
from stablenew.gui import formatting
from stablenew.sdk.formatting import format_duration


@pytest.mark.parametrize(("seconds", "compact", "spaced"), [
    (4.25, "4.2s", "4.2s"),
    (59.94, "59.9s", "59.9s"),
    (185, "3m05s", "3m 05s"),
    (3600 + 2 * 60 + 29, "1h02m", "1h 02m"),
    (26 * 3600, "26h00m", "26h 00m"),
])
def test_the_two_styles(seconds: float, compact: str, spaced: str) -> None:
    span = timedelta(seconds=seconds)
    assert (format_duration(span), format_duration(span, spaced=True)) == (compact, spaced)
    assert (text.duration(span), formatting.duration(span)) == (compact, spaced)


def test_an_unknown_duration() -> None:
    assert (format_duration(None), format_duration(None, unknown="")) == ("-", "")
    assert (text.duration(None), formatting.duration(None)) == ("-", "")
