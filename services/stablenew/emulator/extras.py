"""/sdapi/v1/extra-single-image and /sdapi/v1/extra-batch-images: postprocessing upscale.

Like the WebUI: upscaler_1 "None" leaves the image as it is; a real upscaler scales by
upscaling_resize (resize_mode 0) or to cover upscaling_resize_w x h (resize_mode 1, then centre
crop when upscaling_crop), with the result rounded down to a multiple of 8 as the WebUI's
upscalers do. The output keeps the input's text chunks and adds a "postprocessing" one.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

from PIL import Image

from stablenew.emulator import catalog, images
from stablenew.emulator.catalog import Upscaler
from stablenew.emulator.errors import exception
from stablenew.sdwebui.infotext import parameters_line

# Simulated GPU time of a model upscaler, in sampling steps per image.
MODEL_UPSCALE_STEPS = 10


@dataclass(frozen=True)
class UpscaleRequest:
    values: dict[str, Any]
    first: Upscaler | None
    second: Upscaler | None

    @property
    def gpu_steps(self) -> int:
        used = [u for u in (self.first, self.second) if u is not None and u.is_model]
        return MODEL_UPSCALE_STEPS * len(used)


def _upscaler(name: str | None) -> Upscaler | None:
    if name in (None, "None"):
        return None
    found = catalog.find_upscaler(name)
    if found is None:
        # The WebUI asserts this inside the postprocessing script: an AssertionError.
        raise exception("AssertionError", f"could not find upscaler named {name}")
    return found


def plan_upscale(values: dict[str, Any]) -> UpscaleRequest:
    """Like the WebUI: without a first upscaler nothing happens and the second one is not even
    looked up; with one, an unknown second upscaler fails even at visibility 0."""
    first = _upscaler(values["upscaler_1"])
    second = _upscaler(values["upscaler_2"]) if first is not None else None
    if float(values["extras_upscaler_2_visibility"] or 0) <= 0:
        second = None
    return UpscaleRequest(values, first, second)


def _target(request: UpscaleRequest, image: Image.Image) -> tuple[float, tuple[int, int] | None]:
    values = request.values
    if int(values["resize_mode"] or 0) == 1:
        wanted = (int(values["upscaling_resize_w"]), int(values["upscaling_resize_h"]))
        return max(wanted[0] / image.width, wanted[1] / image.height), wanted
    return float(values["upscaling_resize"]), None


def upscale_one(request: UpscaleRequest, image: Image.Image) -> tuple[Image.Image, str]:
    """One image through the pipeline; returns it and the postprocessing infotext."""
    info: dict[str, object] = {}
    result = image.convert("RGB")
    if request.first is not None:
        scale, wanted = _target(request, image)
        size = (int(image.width * scale) // 8 * 8, int(image.height * scale) // 8 * 8)
        upscaled = images.upscale(result, size, request.first.name)
        if request.second is not None:
            blended = images.upscale(result, size, request.second.name)
            upscaled = Image.blend(upscaled, blended,
                                   float(request.values["extras_upscaler_2_visibility"]))
        result = upscaled
        if wanted is None:
            info["Postprocess upscale by"] = scale
        else:
            info["Postprocess upscale to"] = f"{wanted[0]}x{wanted[1]}"
            if request.values["upscaling_crop"]:
                result = images.center_crop_onto(result, wanted)
                info["Postprocess crop to"] = f"{wanted[0]}x{wanted[1]}"
        info["Postprocess upscaler"] = request.first.name
        if request.second is not None:
            info["Postprocess upscaler 2"] = request.second.name
    _face_restoration_info(request.values, info)
    return result, parameters_line(info)


def _face_restoration_info(values: dict[str, Any], info: dict[str, object]) -> None:
    if values["gfpgan_visibility"]:
        info["GFPGAN visibility"] = values["gfpgan_visibility"]
    if values["codeformer_visibility"]:
        info["CodeFormer visibility"] = values["codeformer_visibility"]
        info["CodeFormer weight"] = values["codeformer_weight"]


def encode_result(source: Image.Image, result: Image.Image, infotext: str) -> str:
    chunks = images.text_chunks(source)
    if infotext:
        chunks["postprocessing"] = infotext
    return images.encode_png(result, chunks or None)


def html_info(infotext: str) -> str:
    """The WebUI's plaintext_to_html."""
    return "<p>" + "<br>\n".join(html.escape(line) for line in infotext.split("\n")) + "</p>"
