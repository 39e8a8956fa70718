"""Image files under the output root: `{date}/{job_id}/{entry:03d}_{stage}_{seed}.png`, each
with the WebUI's infotext and a `stablenew` chunk, plus a `manifest.json` per job.

No file or folder name is built from user text: the date is ours, the job id must be the
queue's hex id, and the rest are numbers and stage names.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin

from stablenew.contract.model import ImageRef, StageType

JOB_ID_PATTERN = re.compile(r"^[0-9a-f]{8,64}$")
METADATA_KEY = "stablenew"


class UnsafePathError(ValueError):
    """A path that would leave the output root."""


@dataclass(frozen=True)
class ImageContext:
    job_id: str
    entry_index: int
    stage: StageType
    seed: int
    config_hash: str
    runner_id: str


def job_folder(root: Path, job_id: str, day: datetime | None = None) -> Path:
    if not JOB_ID_PATTERN.match(job_id):
        raise UnsafePathError(f"job id {job_id!r} is not a queue job id")
    day = day or datetime.now(UTC)
    return root / day.strftime("%Y-%m-%d") / job_id


def _png_with_metadata(png: bytes, context: ImageContext,
                       source_text: dict[str, str] | None = None) -> tuple[bytes, int, int]:
    """The image with every text chunk the WebUI wrote (and the source's, see `_kept_text`)
    and ours. Our chunk is inserted as it is: re-encoding a 512x512 image costs some 50 ms
    of CPU that the WebUI shares; only an image that needs its source's text or that already
    has a chunk of ours is re-encoded."""
    ours = json.dumps({"job_id": context.job_id, "entry": context.entry_index,
                       "stage": context.stage.name.lower(), "seed": context.seed,
                       "config_hash": context.config_hash}, sort_keys=True)
    if not source_text:
        inserted = _with_text_chunk(png, METADATA_KEY, ours)
        if inserted is not None:
            return inserted
    with _opened(png) as image:
        text = _kept_text(_text_of(image), source_text)
        text.pop(METADATA_KEY, None)
        text[METADATA_KEY] = ours
        return _encode(image, text), image.width, image.height


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")


def _with_text_chunk(png: bytes, key: str, value: str) -> tuple[bytes, int, int] | None:
    """`png` with a tEXt chunk `key`: `value` (ASCII) before its image data, and its size; None
    when `png` already has a `key` chunk or is not a well-formed PNG (every chunk's CRC
    checked), which the re-encoding path then handles or refuses."""
    chunks = _png_chunks(png)
    if chunks is None or chunks[0][0] != b"IHDR":
        return None
    if any(kind in _TEXT_CHUNKS and data.split(b"\x00", 1)[0] == key.encode()
           for kind, data, _ in chunks):
        return None
    first_data = next((start for kind, _, start in chunks if kind == b"IDAT"), None)
    if first_data is None:
        return None
    body = key.encode("latin-1") + b"\x00" + value.encode("ascii")
    chunk = (len(body).to_bytes(4, "big") + b"tEXt" + body
             + zlib.crc32(b"tEXt" + body).to_bytes(4, "big"))
    header = chunks[0][1]
    width, height = int.from_bytes(header[:4], "big"), int.from_bytes(header[4:8], "big")
    return png[:first_data] + chunk + png[first_data:], width, height


def _png_chunks(png: bytes) -> list[tuple[bytes, bytes, int]] | None:
    """(type, data, offset) of every chunk up to IEND; None if `png` is not well formed."""
    if not png.startswith(PNG_SIGNATURE):
        return None
    chunks = []
    offset = len(PNG_SIGNATURE)
    while offset + 12 <= len(png):
        length = int.from_bytes(png[offset:offset + 4], "big")
        kind = png[offset + 4:offset + 8]
        end = offset + 8 + length
        if end + 4 > len(png):
            return None
        data = png[offset + 8:end]
        if zlib.crc32(kind + data) != int.from_bytes(png[end:end + 4], "big"):
            return None
        chunks.append((kind, data, offset))
        if kind == b"IEND":
            return chunks
        offset = end + 4
    return None


def write_image(root: Path, folder: Path, png: bytes, context: ImageContext,
                source_text: dict[str, str] | None = None) -> ImageRef:
    """Write the image with its metadata; `source_text` is the text of the image it was made
    from, kept when the image has no infotext of its own (extras output)."""
    data, width, height = _png_with_metadata(png, context, source_text)
    name = f"{context.entry_index:03d}_{context.stage.name.lower()}_{context.seed}.png"
    path = folder / name
    folder.mkdir(parents=True, exist_ok=True)
    _write_atomically(path, data)
    return ImageRef(path=path.relative_to(root).as_posix(), sha256=hashlib.sha256(data).hexdigest(),
                    width=width, height=height, seed=context.seed, stage=context.stage,
                    size_bytes=len(data), runner_id=context.runner_id)


def _write_atomically(path: Path, data: bytes) -> None:
    """Write then rename, so a crash never leaves half an image under the final name."""
    temporary = path.with_suffix(".tmp")
    with temporary.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    temporary.replace(path)


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    _write_atomically(folder / "manifest.json",
                      json.dumps(manifest, indent=2, sort_keys=True, default=str).encode())


def image_ref_dict(image: ImageRef) -> dict[str, Any]:
    fields = asdict(image)
    fields["stage"] = image.stage.name.lower()
    return fields


def png_text(png: bytes) -> dict[str, str]:
    with _opened(png) as image:
        return _text_of(image)


def png_size(png: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(png)) as image:
        return image.width, image.height


def same_pixels(first: bytes, second: bytes) -> bool:
    """Whether two encoded images show the same RGB pixels (text chunks and alpha aside): an
    ADetailer pass that detected nothing hands its input back unchanged."""
    with _opened(first) as one, _opened(second) as other:
        if one.size != other.size:
            return False
        return one.convert("RGB").tobytes() == other.convert("RGB").tobytes()


def with_text(png: bytes, text: dict[str, str]) -> bytes:
    """The same image with these text chunks added."""
    with _opened(png) as image:
        return _encode(image, _text_of(image) | text)


def with_source_text(png: bytes, source_text: dict[str, str]) -> bytes:
    """The image as `write_image` would keep its text, without our chunk: only needed when an
    image that still carries its source's text is sent on to another stage."""
    if not source_text:
        return png
    with _opened(png) as image:
        text = _text_of(image)
        return png if "parameters" in text else _encode(image, _kept_text(text, source_text))


@contextmanager
def _opened(png: bytes) -> Iterator[Image.Image]:
    with Image.open(io.BytesIO(png)) as image:
        image.load()
        yield image


def _text_of(image: Image.Image) -> dict[str, str]:
    return dict(getattr(image, "text", {}))


def _kept_text(text: dict[str, str], source_text: dict[str, str] | None) -> dict[str, str]:
    """Extras output carries no generation infotext: add the source image's chunks to an image
    without a `parameters` chunk (the source's value wins where both have a key)."""
    if source_text and "parameters" not in text:
        return text | source_text
    return text


def _encode(image: Image.Image, text: dict[str, str]) -> bytes:
    """The image as PNG with exactly these text chunks, in this order."""
    info = PngImagePlugin.PngInfo()
    for key, value in text.items():
        info.add_text(key, value)
    out = io.BytesIO()
    image.save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def resolve_inside(root: Path, relative: str) -> Path:
    """The file `relative` names under root; UnsafePathError for anything outside it."""
    if not relative or relative.startswith(("/", "\\")) or "\x00" in relative:
        raise UnsafePathError(f"{relative!r} is not a path relative to the output root")
    resolved_root = root.resolve()
    candidate = (resolved_root / relative).resolve()
    if not candidate.is_relative_to(resolved_root):
        raise UnsafePathError(f"{relative!r} is outside the output root")
    return candidate
