"""Deterministic, cheap images.

Everything is drawn at "latent" resolution (an eighth of the pixel size, as in Stable Diffusion)
and enlarged with nearest-neighbour at the end: a 512x512 image is a 64x64 smooth colour field
seeded from a sha256 of the request, shown as 8x8 pixel blocks. The same inputs give the same
bytes; different seeds or prompts give visibly different colours. A 512x512 PNG renders and
encodes in a few milliseconds, so the emulator's cost stays in the simulated step time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import math
from collections.abc import Mapping, Sequence

from PIL import Image, ImageDraw, ImageFilter, ImageOps, PngImagePlugin, UnidentifiedImageError

from stablenew.emulator.errors import exception, http_exception

LATENT_FACTOR = 8
_GRID = 5
_GRAY = (128, 128, 128)
# Fast zlib level: the blocky images compress well anyway, and encoding time is what a
# benchmark against the emulator would otherwise measure.
_PNG_COMPRESS_LEVEL = 1


def digest_of(*parts: object) -> bytes:
    """A stable sha256 of JSON-able parts (bytes are hashed first)."""
    normal = [hashlib.sha256(p).hexdigest() if isinstance(p, bytes) else p for p in parts]
    return hashlib.sha256(json.dumps(normal, sort_keys=True, default=str).encode()).digest()


def latent_size(width: int, height: int) -> tuple[int, int]:
    return max(1, width // LATENT_FACTOR), max(1, height // LATENT_FACTOR)


def pattern(digest: bytes, size: tuple[int, int]) -> Image.Image:
    """A smooth colour field: a 5x5 grid of colours from the digest, interpolated."""
    colours = hashlib.shake_256(digest).digest(_GRID * _GRID * 3)
    grid = Image.frombytes("RGB", (_GRID, _GRID), colours)
    return grid.resize(size, Image.Resampling.BICUBIC)


def colour_of(digest: bytes) -> tuple[int, int, int]:
    return digest[0], digest[1], digest[2]


def partial(latent: Image.Image, fraction: float) -> Image.Image:
    """A generation stopped early: still partly noise (grey), like an interrupted sampler."""
    if fraction >= 1:
        return latent
    return Image.blend(Image.new("RGB", latent.size, _GRAY), latent, max(0.0, fraction))


def to_pixels(latent: Image.Image) -> Image.Image:
    width, height = latent.size
    return latent.resize((width * LATENT_FACTOR, height * LATENT_FACTOR),
                         Image.Resampling.NEAREST)


def rework(latent: Image.Image, digest: bytes, strength: float) -> Image.Image:
    """A second pass over an image (img2img, hires): a new pattern blended in by strength."""
    return Image.blend(latent, pattern(digest, latent.size), min(max(strength, 0.0), 1.0))


def fingerprint(image: Image.Image) -> bytes:
    """What an input image contributes to a digest: its size and pixels."""
    rgb = image.convert("RGB")
    return hashlib.sha256(f"{rgb.size}".encode() + rgb.tobytes()).digest()


def fit(image: Image.Image, size: tuple[int, int], resize_mode: int) -> Image.Image:
    """img2img's resize modes: 0 just resize (3 latent upscale, the same here), 1 crop and
    resize, 2 resize and fill."""
    rgb = image.convert("RGB")
    if resize_mode == 1:
        return ImageOps.fit(rgb, size, Image.Resampling.BILINEAR)
    if resize_mode == 2:
        return ImageOps.pad(rgb, size, Image.Resampling.BILINEAR, color=_GRAY)
    return rgb.resize(size, Image.Resampling.BILINEAR)


def apply_mask(changed: Image.Image, original: Image.Image, mask: Image.Image, blur: int,
               invert: bool) -> Image.Image:
    """Inpainting: only the white part of the mask changes."""
    weights = mask.convert("L").resize(changed.size, Image.Resampling.BILINEAR)
    if invert:
        weights = ImageOps.invert(weights)
    if blur > 0:
        weights = weights.filter(ImageFilter.GaussianBlur(blur / LATENT_FACTOR))
    return Image.composite(changed, original, weights)


def paint_region(latent: Image.Image, box: tuple[float, float, float, float],
                 colour: tuple[int, int, int], strength: float, blur: int) -> Image.Image:
    """An ADetailer pass: an ellipse (box in 0..1 coordinates) repainted towards a colour."""
    width, height = latent.size
    left, top, right, bottom = box
    weights = Image.new("L", latent.size, 0)
    ImageDraw.Draw(weights).ellipse(
        (left * width, top * height, right * width, bottom * height),
        fill=int(255 * min(max(strength, 0.0), 1.0)))
    if blur > 0:
        weights = weights.filter(ImageFilter.GaussianBlur(blur / LATENT_FACTOR))
    return Image.composite(Image.new("RGB", latent.size, colour), latent, weights)


def grid(images: Sequence[Image.Image]) -> Image.Image:
    """The WebUI's image grid: about square, rows = round(sqrt(n))."""
    rows = max(1, min(len(images), round(math.sqrt(len(images)))))
    cols = math.ceil(len(images) / rows)
    width, height = images[0].size
    sheet = Image.new("RGB", (cols * width, rows * height), _GRAY)
    for index, image in enumerate(images):
        sheet.paste(image, box=(index % cols * width, index // cols * height))
    return sheet


def encode_png(image: Image.Image, text: Mapping[str, str] | None = None) -> str:
    """Base64 PNG without a data: prefix, each text item as a PNG text chunk."""
    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info if text else None,
               compress_level=_PNG_COMPRESS_LEVEL)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def decode_image(encoding: str) -> Image.Image:
    """The WebUI's decode_base64_to_image: raw base64 or a data: URL; anything else that does
    not open as an image is 500 "Invalid encoded image"."""
    if encoding.startswith(("http://", "https://")):
        # The emulator never fetches URLs (it has no network); the WebUI's message when a
        # fetched body is not an image.
        raise http_exception(500, "Invalid image url")
    if encoding.startswith("data:image/"):
        parts = encoding.split(";")
        if len(parts) < 2 or "," not in parts[1]:
            # The WebUI indexes the split parts without checking.
            raise exception("IndexError", "list index out of range")
        encoding = parts[1].split(",")[1]
    try:
        image = Image.open(io.BytesIO(base64.b64decode(encoding)))
        image.load()
    except (binascii.Error, ValueError, OSError, UnidentifiedImageError) as error:
        raise http_exception(500, "Invalid encoded image") from error
    return image


def text_chunks(image: Image.Image) -> dict[str, str]:
    """An input image's text chunks, carried over by the extras (upscale) endpoints."""
    return {k: v for k, v in image.info.items() if isinstance(k, str) and isinstance(v, str)}


def upscale(image: Image.Image, size: tuple[int, int], method: str) -> Image.Image:
    resample = {"Nearest": Image.Resampling.NEAREST,
                "Lanczos": Image.Resampling.LANCZOS}.get(method, Image.Resampling.BICUBIC)
    return image.convert("RGB").resize(size, resample)


def center_crop_onto(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Extras' "crop to fit": paste centred onto a canvas of exactly the wanted size."""
    canvas = Image.new("RGB", size)
    canvas.paste(image, box=(size[0] // 2 - image.width // 2, size[1] // 2 - image.height // 2))
    return canvas

