"""Facts about the ADetailer extension (v25.3): its tab arguments and their infotext labels,
its defaults, and how it names its tabs: the first tab's infotext keys have no suffix, later
tabs' keys end in " 2nd", " 3rd", " 4th", ... ("ADetailer model 2nd").

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


# Every argument of an ADetailer tab with the label its infotext entry has, in the extension's
# order (v25.3). The infotext leaves some out when they are off (see the emulator).
ARG_LABELS: dict[str, str] = {
    "ad_model": "ADetailer model",
    "ad_model_classes": "ADetailer model classes",
    "ad_tab_enable": "ADetailer tab enable",
    "ad_prompt": "ADetailer prompt",
    "ad_negative_prompt": "ADetailer negative prompt",
    "ad_confidence": "ADetailer confidence",
    "ad_mask_filter_method": "ADetailer method to decide top k masks",
    "ad_mask_k": "ADetailer mask only top k",
    "ad_mask_min_ratio": "ADetailer mask min ratio",
    "ad_mask_max_ratio": "ADetailer mask max ratio",
    "ad_x_offset": "ADetailer x offset",
    "ad_y_offset": "ADetailer y offset",
    "ad_dilate_erode": "ADetailer dilate erode",
    "ad_mask_merge_invert": "ADetailer mask merge invert",
    "ad_mask_blur": "ADetailer mask blur",
    "ad_denoising_strength": "ADetailer denoising strength",
    "ad_inpaint_only_masked": "ADetailer inpaint only masked",
    "ad_inpaint_only_masked_padding": "ADetailer inpaint padding",
    "ad_use_inpaint_width_height": "ADetailer use inpaint width height",
    "ad_inpaint_width": "ADetailer inpaint width",
    "ad_inpaint_height": "ADetailer inpaint height",
    "ad_use_steps": "ADetailer use separate steps",
    "ad_steps": "ADetailer steps",
    "ad_use_cfg_scale": "ADetailer use separate CFG scale",
    "ad_cfg_scale": "ADetailer CFG scale",
    "ad_use_checkpoint": "ADetailer use separate checkpoint",
    "ad_checkpoint": "ADetailer checkpoint",
    "ad_use_vae": "ADetailer use separate VAE",
    "ad_vae": "ADetailer VAE",
    "ad_use_sampler": "ADetailer use separate sampler",
    "ad_sampler": "ADetailer sampler",
    "ad_scheduler": "ADetailer scheduler",
    "ad_use_noise_multiplier": "ADetailer use separate noise multiplier",
    "ad_noise_multiplier": "ADetailer noise multiplier",
    "ad_use_clip_skip": "ADetailer use separate CLIP skip",
    "ad_clip_skip": "ADetailer CLIP skip",
    "ad_restore_face": "ADetailer restore face",
    "ad_controlnet_model": "ADetailer ControlNet model",
    "ad_controlnet_module": "ADetailer ControlNet module",
    "ad_controlnet_weight": "ADetailer ControlNet weight",
    "ad_controlnet_guidance_start": "ADetailer ControlNet guidance start",
    "ad_controlnet_guidance_end": "ADetailer ControlNet guidance end",
}

# With skip_img2img the extension runs the img2img it skips as 1 step of Euler at 128x128, and
# those values stay in the reply's info and infotext.
SKIPPED_IMG2IMG_STEPS = 1
SKIPPED_IMG2IMG_SAMPLER = "Euler"
SKIPPED_IMG2IMG_SIZE = 128
