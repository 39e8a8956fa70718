"""Infotexts: the generation parameters the WebUI writes into every PNG and into info.infotexts.

    {prompt}
    Negative prompt: {negative}      <- only when the negative prompt is not empty
    Steps: 20, Sampler: Euler, Schedule type: Automatic, CFG scale: 7.0, Seed: 1, ...

Parameters whose value is None are left out; values containing ",", ":" or a newline are
JSON-quoted so the text can be parsed back. The emulator writes infotexts with this module and
the runner reads the WebUI's back with it (some facts, such as the schedule type of a sampler
left on "Automatic", are only in the text).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping

# One "Key: value" item of the parameters line: a key starts with a word character, a value is
# a JSON string or runs to the next comma.
_PARAMETER = re.compile(r'\s*(\w[\w \-/+()]*):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')


def quote(value: object) -> str:
    text = str(value)
    if "," not in text and "\n" not in text and ":" not in text:
        return text
    return json.dumps(value, ensure_ascii=False)


def parameters_line(params: Mapping[str, object]) -> str:
    # A parameter whose value equals its name is written bare, as the WebUI does.
    return ", ".join(key if key == value else f"{key}: {quote(value)}"
                     for key, value in params.items() if value is not None)


NEGATIVE_PREFIX = "Negative prompt: "


def create_infotext(prompt: str, negative_prompt: str, params: Mapping[str, object]) -> str:
    negative = f"\n{NEGATIVE_PREFIX}{negative_prompt}" if negative_prompt else ""
    return f"{prompt}{negative}\n{parameters_line(params)}".strip()


def parse_parameters(infotext: str) -> dict[str, str]:
    """The "Key: value" items of an infotext's last line, values as text (quotes removed).

    Only the last line is read: the prompt and negative prompt above it may contain anything.
    A last line without a "Steps:" item is not a parameters line and gives {}.
    """
    last = infotext.strip().rsplit("\n", 1)[-1]
    if "Steps:" not in last:
        return {}
    params: dict[str, str] = {}
    for match in _PARAMETER.finditer(last):
        key, value = match.group(1).strip(), match.group(2).strip()
        if value.startswith('"') and value.endswith('"') and len(value) > 1:
            with contextlib.suppress(ValueError):  # not JSON after all: keep it as written
                value = str(json.loads(value))
        params[key] = value
    return params


def parse_infotext(infotext: str) -> dict[str, str]:
    """The whole infotext: "Prompt" and "Negative prompt" with the parameters of the last line."""
    lines = infotext.strip().split("\n")
    params = parse_parameters(infotext)
    if params:
        lines = lines[:-1]
    prompt: list[str] = []
    negative: list[str] = []
    for line in lines:
        if line.startswith(NEGATIVE_PREFIX) or negative:
            negative.append(line.removeprefix(NEGATIVE_PREFIX))
        else:
            prompt.append(line)
    parsed = {"Prompt": "\n".join(prompt), "Negative prompt": "\n".join(negative)}
    return parsed | params if infotext.strip() else {}
