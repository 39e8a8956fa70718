"""Builders shared by the bundle tests: pack files on disk, in-memory packs, valid configs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stablenew.bundle.domain import PackError
from stablenew.bundle.packs.model import MatrixMode, MatrixSlot, Pack, PackMatrix, PackRow
from stablenew.contract.model import (
    AdetailerConfig,
    AdetailerPass,
    PipelineConfig,
    StageFlags,
    Txt2ImgConfig,
)


def write(directory: Path, name: str, content: str | bytes) -> Path:
    path = directory / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def write_json(directory: Path, name: str, data: Any) -> Path:
    return write(directory, name, json.dumps(data, indent=2))


def make_pack(*rows: str | tuple[str, str], slots: dict[str, list[str]] | None = None,
              mode: MatrixMode = MatrixMode.FANOUT, limit: int = 0,
              wildcards: dict[str, list[str]] | None = None,
              wildcard_mode: MatrixMode = MatrixMode.RANDOM, pack_id: str = "pack",
              defaults: PipelineConfig | None = None) -> Pack:
    """An in-memory pack: rows are "positive" or ("positive", "negative")."""
    pack_rows = []
    for index, row in enumerate(rows):
        positive, negative = (row, "") if isinstance(row, str) else row
        pack_rows.append(PackRow(index=index, positive=positive, negative=negative,
                                 line=index + 1))
    matrix = PackMatrix(enabled=bool(slots), mode=mode, limit=limit,
                        slots=[MatrixSlot(name, values) for name, values in (slots or {}).items()])
    return Pack(pack_id=pack_id, name=pack_id.title(), rows=pack_rows, matrix=matrix,
                defaults=defaults or PipelineConfig(),
                wildcards=[MatrixSlot(name, values) for name, values in
                           (wildcards or {}).items()],
                wildcard_mode=wildcard_mode)


class FakePacks:
    """A PackSource over a dict, for normalisation tests that need no files."""

    def __init__(self, *packs: Pack) -> None:
        self.packs = {pack.pack_id: pack for pack in packs}
        self.loads = 0

    def load_pack(self, pack_id: str) -> Pack:
        self.loads += 1
        if pack_id not in self.packs:
            raise PackError(pack_id, "", "no such pack", not_found=True)
        return self.packs[pack_id]


def txt2img_config(**txt2img: Any) -> PipelineConfig:
    """A valid txt2img-only config; keyword arguments set Txt2ImgConfig fields."""
    settings: dict[str, Any] = {"model": "v1-5-pruned-emaonly", "sampler_name": "Euler a",
                                "steps": 20, "cfg_scale": 7.0, "width": 512, "height": 512,
                                "seed": -1}
    settings.update(txt2img)
    return PipelineConfig(stages=StageFlags(txt2img_enabled=True),
                          txt2img=Txt2ImgConfig(**settings), batch_size=1, n_iter=1)


def face_pass(**fields: Any) -> AdetailerPass:
    values: dict[str, Any] = {"model": "face_yolov8n.pt", "confidence": 0.35}
    values.update(fields)
    return AdetailerPass(**values)


def with_adetailer(config: PipelineConfig, *passes: AdetailerPass) -> PipelineConfig:
    config.stages.adetailer_enabled = True
    config.adetailer = AdetailerConfig(list(passes) or [face_pass()])
    return config
