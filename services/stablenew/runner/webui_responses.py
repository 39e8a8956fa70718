"""The WebUI's answers, checked and parsed into typed results.

A body that does not have the shape the API promises is a BAD_RESPONSE WebuiError naming the
endpoint and what is missing, never a KeyError deep inside the runner.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stablenew.runner.webui_errors import bad_response
from stablenew.sdwebui.model_matching import ModelEntry
from stablenew.sdwebui.names import SchedulerEntry


@dataclass(frozen=True)
class GenerationResult:
    """A txt2img/img2img answer: the PNGs, the parsed `info` JSON and the echoed parameters."""

    images: list[bytes]
    info: dict[str, Any]
    parameters: dict[str, Any]


@dataclass(frozen=True)
class Progress:
    """One GET /sdapi/v1/progress snapshot."""

    progress: float
    eta_relative: float
    job_count: int
    job_no: int
    sampling_step: int
    sampling_steps: int
    interrupted: bool
    skipped: bool
    textinfo: str

    @property
    def idle(self) -> bool:
        return self.job_count == 0


def decode_image(encoded: Any, endpoint: str) -> bytes:
    """Base64 image text as the WebUI sends it; a data: URL prefix is accepted too."""
    if not isinstance(encoded, str) or not encoded:
        raise bad_response(endpoint, "an image is not a base64 string")
    text = encoded.split(",", 1)[1] if encoded.startswith("data:") else encoded
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise bad_response(endpoint, "an image is not valid base64") from None
    if not data:
        raise bad_response(endpoint, "an image is empty")
    return data


def parse_generation(body: Any, endpoint: str) -> GenerationResult:
    """A txt2img/img2img body: {"images": [base64...], "parameters": {...}, "info": "<JSON>"}."""
    if not isinstance(body, dict) or not isinstance(body.get("images"), list):
        raise bad_response(endpoint, 'the response has no "images" list')
    images = [decode_image(item, endpoint) for item in body["images"]]
    info_text = body.get("info")
    if not isinstance(info_text, str):
        raise bad_response(endpoint, '"info" is not a JSON string')
    try:
        info = json.loads(info_text)
    except ValueError:
        raise bad_response(endpoint, '"info" is not valid JSON') from None
    if not isinstance(info, dict):
        raise bad_response(endpoint, '"info" is not a JSON object')
    parameters = body.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise bad_response(endpoint, '"parameters" is not an object')
    return GenerationResult(images=images, info=info, parameters=parameters)


def parse_extras_image(body: Any, endpoint: str) -> bytes:
    """An extra-single-image body: {"image": base64, "html_info": ...}."""
    if not isinstance(body, dict) or "image" not in body:
        raise bad_response(endpoint, 'the response has no "image"')
    return decode_image(body["image"], endpoint)


def parse_progress(body: Any, endpoint: str) -> Progress:
    """A /sdapi/v1/progress body; state fields a fork leaves out count as 0/false."""
    if not isinstance(body, dict) or not isinstance(body.get("state"), dict):
        raise bad_response(endpoint, 'the response has no "state" object')
    state = body["state"]
    try:
        return Progress(
            progress=float(body.get("progress") or 0.0),
            eta_relative=float(body.get("eta_relative") or 0.0),
            job_count=int(state.get("job_count") or 0),
            job_no=int(state.get("job_no") or 0),
            sampling_step=int(state.get("sampling_step") or 0),
            sampling_steps=int(state.get("sampling_steps") or 0),
            interrupted=bool(state.get("interrupted")),
            skipped=bool(state.get("skipped")),
            textinfo=str(body.get("textinfo") or ""))
    except (TypeError, ValueError):
        raise bad_response(endpoint, "a progress field is not a number") from None


def parse_options(body: Any, endpoint: str) -> dict[str, Any]:
    """GET /sdapi/v1/options: one JSON object of every setting."""
    if not isinstance(body, dict):
        raise bad_response(endpoint, "the options are not a JSON object")
    return body


def parse_loaded_model_title(options: Mapping[str, Any], endpoint: str) -> str:
    """The loaded checkpoint's title from the options."""
    title = options.get("sd_model_checkpoint")
    if not isinstance(title, str):
        raise bad_response(endpoint, "sd_model_checkpoint is not a string")
    return title


def parse_object_list(body: Any, endpoint: str) -> list[dict[str, Any]]:
    """A list route's body (sd-models, samplers, ...): a JSON list of objects."""
    if not isinstance(body, list) or not all(isinstance(item, dict) for item in body):
        raise bad_response(endpoint, "the response is not a list of objects")
    return body


def parse_names(body: Any, key: str, endpoint: str) -> list[str]:
    """The `key` string of every object of a list route's body."""
    items = parse_object_list(body, endpoint)
    if not all(isinstance(item.get(key), str) for item in items):
        raise bad_response(endpoint, f'an item has no "{key}"')
    return [str(item[key]) for item in items]


def parse_scheduler_entries(body: Any, endpoint: str) -> list[SchedulerEntry]:
    """GET /sdapi/v1/schedulers; aliases are null when a scheduler has none."""
    entries = []
    for item in parse_object_list(body, endpoint):
        name, label, aliases = item.get("name"), item.get("label"), item.get("aliases") or []
        if not isinstance(name, str) or not isinstance(label, str):
            raise bad_response(endpoint, 'a scheduler has no "name" or "label"')
        if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
            raise bad_response(endpoint, '"aliases" is not a list of names')
        entries.append(SchedulerEntry(name, label, tuple(aliases)))
    return entries


def parse_model_entries(body: Any, endpoint: str) -> list[ModelEntry]:
    """GET /sdapi/v1/sd-models; hash and sha256 are null until the WebUI has hashed a file."""
    entries = []
    for item in parse_object_list(body, endpoint):
        title = item.get("title")
        if not isinstance(title, str) or not title:
            raise bad_response(endpoint, 'a model has no "title"')
        entries.append(ModelEntry(
            title=title, model_name=str(item.get("model_name") or ""),
            hash=str(item.get("hash") or ""), filename=str(item.get("filename") or ""),
            sha256=str(item.get("sha256") or "")))
    return entries


def parse_adetailer_models(body: Any, endpoint: str) -> list[str]:
    """GET /adetailer/v1/ad_model: {"ad_model": [names...]}."""
    models = body.get("ad_model") if isinstance(body, dict) else None
    if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
        raise bad_response(endpoint, 'the response has no "ad_model" list of names')
    return list(models)
