"""Helpers for tests that talk to the emulator (its own and other services' tests)."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from PIL import Image

from stablenew.emulator.config import EmulatorConfig
from stablenew.emulator.server import EmulatorServer

# Tiny timings so a test suite runs in seconds; the loopback address and port 0 are safe in
# parallel runs.
FAST = EmulatorConfig(address="127.0.0.1:0", step_seconds=0.002, model_load_seconds=0.0)

# Every key sdwebui-api.md documents for a generation's `info`.
INFO_KEYS = {
    "prompt", "all_prompts", "negative_prompt", "all_negative_prompts", "seed", "all_seeds",
    "subseed", "all_subseeds", "subseed_strength", "width", "height", "sampler_name",
    "cfg_scale", "steps", "batch_size", "restore_faces", "face_restoration_model",
    "sd_model_name", "sd_model_hash", "sd_vae_name", "sd_vae_hash", "seed_resize_from_w",
    "seed_resize_from_h", "denoising_strength", "extra_generation_params",
    "index_of_first_image", "infotexts", "styles", "job_timestamp", "clip_skip",
    "is_using_inpainting_conditioning", "version",
}


def fast_config(**changes: Any) -> EmulatorConfig:
    return replace(FAST, **changes)


@contextmanager
def running(config: EmulatorConfig | None = None) -> Iterator[EmulatorServer]:
    server = EmulatorServer(config or FAST)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def decode_png(encoded: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(encoded)))
    image.load()
    return image


def encode_png(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def info_of(body: dict[str, Any]) -> dict[str, Any]:
    """A generation response's info, which the WebUI sends as a JSON string."""
    info: dict[str, Any] = json.loads(body["info"])
    return info


def png_parameters(encoded: str) -> str:
    """The `parameters` text chunk of a base64 PNG."""
    return str(decode_png(encoded).info["parameters"])
