"""How the ADetailer extension names its tabs: the first tab's infotext keys have no suffix,
later tabs' keys end in " 2nd", " 3rd", " 4th", ... ("ADetailer model 2nd").

Shared by the runner (which checks the keys a response reports) and the WebUI emulator (which
writes them).
"""

from __future__ import annotations


def ordinal(number: int) -> str:
    """"1st", "2nd", "3rd", "4th", ..., "11th", "12th", "13th", ..., "21st", "111th"."""
    ending = ("th" if 11 <= number % 100 <= 13
              else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th"))
    return f"{number}{ending}"


def ordinal_suffix(position: int) -> str:
    """The key suffix of the tab at 0-based `position`: "" for the first, then " 2nd", ..."""
    return "" if position == 0 else f" {ordinal(position + 1)}"
