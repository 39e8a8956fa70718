"""Infotexts: the generation parameters the WebUI writes into every PNG and into info.infotexts.

    {prompt}
    Negative prompt: {negative}      <- only when the negative prompt is not empty
    Steps: 20, Sampler: Euler, Schedule type: Automatic, CFG scale: 7.0, Seed: 1, ...

Parameters whose value is None are left out; values containing ",", ":" or a newline are
JSON-quoted so the text can be parsed back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping


def quote(value: object) -> str:
    text = str(value)
    if "," not in text and "\n" not in text and ":" not in text:
        return text
    return json.dumps(value, ensure_ascii=False)


def parameters_line(params: Mapping[str, object]) -> str:
    # A parameter whose value equals its name is written bare, as the WebUI does.
    return ", ".join(key if key == value else f"{key}: {quote(value)}"
                     for key, value in params.items() if value is not None)


def create_infotext(prompt: str, negative_prompt: str, params: Mapping[str, object]) -> str:
    negative = f"\nNegative prompt: {negative_prompt}" if negative_prompt else ""
    return f"{prompt}{negative}\n{parameters_line(params)}".strip()
