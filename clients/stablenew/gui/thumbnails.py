"""Small pictures of generated images: read through the runner that wrote them, scaled with
Pillow on the backend's loop, and handed to Tk as PNG bytes (which `tk.PhotoImage` reads
directly)."""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass

from PIL import Image

from stablenew.sdk import AsyncClient, EntryResult, ImageRef


@dataclass(frozen=True)
class Thumbnail:
    """A scaled image: its PNG bytes and size, and the image it shows (`ImageRef.path`)."""

    png: bytes
    width: int
    height: int
    path: str


def make_thumbnail(data: bytes, size: int, path: str) -> Thumbnail:
    """The image in `data` scaled to fit `size` by `size`, keeping its proportions."""
    with Image.open(io.BytesIO(data)) as image:
        picture = image.convert("RGB")
    picture.thumbnail((size, size))
    out = io.BytesIO()
    picture.save(out, format="PNG")
    return Thumbnail(out.getvalue(), picture.width, picture.height, path)


async def read_thumbnail(client: AsyncClient, image: ImageRef, size: int) -> Thumbnail:
    """An image read through the runner that wrote it, as a thumbnail."""
    data = await client.runner.read_image(image.path, runner_id=image.runner_id)
    return make_thumbnail(data, size, image.path)


def newest_image(results: Iterable[EntryResult]) -> ImageRef | None:
    """The last image of the last entry that made one (what a job produced last)."""
    newest: ImageRef | None = None
    for result in sorted(results, key=lambda result: result.entry_index):
        if result.images:
            newest = result.images[-1]
    return newest
