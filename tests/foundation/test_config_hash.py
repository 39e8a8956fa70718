"""config_hash: what a normalized job makes, and nothing else; bundle_hash: entries in order."""

from __future__ import annotations

import copy
import dataclasses
import json
import typing
from collections.abc import Callable, Iterator
from enum import IntEnum
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stablenew.contract.config_hash import (
    ENCODING_VERSION,
    NOT_HASHED,
    NOT_HASHED_OF,
    bundle_hash,
    canonical_encoding,
    config_hash,
)
from stablenew.contract.model import (
    AdetailerPass,
    EntryOrigin,
    HiresFixConfig,
    Img2ImgConfig,
    NormalizedJob,
    PromptSource,
    PromptTag,
    PromptTagKind,
    RefinerConfig,
    ResizeMode,
    StageType,
    UpscaleConfig,
    UpscaleMode,
)
from stablenew.contract.proto_mapping import from_proto, to_proto


def castle_job() -> NormalizedJob:
    """A concrete job with every output-affecting field away from its default."""
    return NormalizedJob(
        index=3, prompt="a castle on a hill, <lora:detail:0.5>", negative_prompt="blurry",
        stage_plan=[StageType.TXT2IMG, StageType.ADETAILER, StageType.UPSCALE],
        seed=1234567890, subseed=42, subseed_strength=0.25, model="v1-5-pruned-emaonly",
        vae="Automatic", sampler_name="DPM++ 2M", scheduler="Karras", width=512, height=768,
        steps=30, cfg_scale=7.5, batch_size=2, n_iter=3, clip_skip=2,
        hires_fix=HiresFixConfig(
            enabled=True, scale=1.5, upscaler="Latent", second_pass_steps=10, resize_x=0,
            resize_y=0, denoising_strength=0.45, checkpoint="", sampler_name="Euler a",
            scheduler="", prompt="", negative_prompt=""),
        refiner=RefinerConfig(enabled=True, checkpoint="sdxl-refiner", switch_at=0.8),
        img2img=Img2ImgConfig(denoising_strength=0.3, resize_mode=ResizeMode.CROP_AND_RESIZE,
                              steps=20, cfg_scale=6.0, sampler_name="Euler",
                              scheduler="Automatic"),
        adetailer_passes=[AdetailerPass(
            model="face_yolov8n.pt", prompt="detailed face", negative_prompt="",
            confidence=0.3, mask_blur=4, dilate_erode=4, denoising_strength=0.4,
            inpaint_only_masked=True, inpaint_padding=32, steps=0, cfg_scale=0.0,
            sampler_name="")],
        upscale=UpscaleConfig(mode=UpscaleMode.EXTRAS, upscaler="R-ESRGAN 4x+", factor=2.0,
                              denoising_strength=0.0, upscaler_2="", upscaler_2_visibility=0.0),
        input_images=["inputs/ref.png"],
        origin=EntryOrigin(part_id="part-1", prompt_source=PromptSource.PACK,
                           prompt_pack_id="castles", pack_name="Castles", row_index=7,
                           variant_index=1),
        tags=[PromptTag(kind=PromptTagKind.LORA, name="detail", weight=0.5)],
        config_hash="",
    )


# Pinned: any change of the canonical encoding changes these and must bump ENCODING_VERSION.
CASTLE_HASH = "a62cb3343b90aab95812e61fd016366f80cc2710bb5d5b49ad1c255b3cea36bc"


def test_pinned_hash_of_a_concrete_job() -> None:
    assert ENCODING_VERSION == "stablenew.config.v1"
    assert config_hash(castle_job()) == CASTLE_HASH


@pytest.mark.parametrize("mode", list(ResizeMode), ids=[mode.name for mode in ResizeMode])
def test_resize_mode_is_written_as_its_webui_number(mode: ResizeMode) -> None:
    # img2img.resize_mode was an int32 when this encoding was fixed: written as the same number
    # (not by name like other enums), the hashes of jobs queued before stay valid. CASTLE_HASH,
    # pinned before the change, holds mode 1.
    job = castle_job()
    job.img2img.resize_mode = mode
    assert json.loads(canonical_encoding(job))["job"]["img2img"]["resize_mode"] == mode.value
    assert b'"resize_mode":%d' % mode.value in canonical_encoding(job)


def test_hash_is_sha256_hex() -> None:
    digest = config_hash(castle_job())
    assert len(digest) == 64
    assert int(digest, 16) >= 0


def test_hash_is_stable_across_calls_and_copies() -> None:
    job = castle_job()
    assert config_hash(job) == config_hash(job) == config_hash(copy.deepcopy(job))


def test_encoding_is_versioned_canonical_json() -> None:
    document = json.loads(canonical_encoding(castle_job()))
    assert document["encoding"] == ENCODING_VERSION
    assert not NOT_HASHED & document["job"].keys()
    hashed = {f.name for f in dataclasses.fields(NormalizedJob)} - NOT_HASHED
    assert set(document["job"]) == hashed


# --- every output-affecting change changes the hash ---------------------------------------------


def _set(path: str, value: Any) -> Callable[[NormalizedJob], None]:
    def apply(job: NormalizedJob) -> None:
        target: Any = job
        *parents, last = path.split(".")
        for part in parents:
            target = target[int(part)] if part.isdigit() else getattr(target, part)
        if last.isdigit():
            target[int(last)] = value
        else:
            setattr(target, last, value)
    return apply


NAMED_CHANGES: dict[str, Callable[[NormalizedJob], None]] = {
    "prompt": _set("prompt", "a castle on a hill, <lora:detail:0.6>"),
    "prompt-whitespace": _set("prompt", "a castle on a hill,  <lora:detail:0.5>"),
    "negative_prompt": _set("negative_prompt", "blurry, lowres"),
    "seed": _set("seed", 1234567891),
    "subseed_strength": _set("subseed_strength", 0.26),
    "model": _set("model", "sdxl-base"),
    "vae": _set("vae", "vae-ft-mse"),
    "steps": _set("steps", 31),
    "cfg_scale": _set("cfg_scale", 7.0),
    "width": _set("width", 768),
    "batch_size": _set("batch_size", 1),
    "hires_fix.enabled": _set("hires_fix.enabled", False),
    "hires_fix.scale": _set("hires_fix.scale", 2.0),
    "hires_fix.upscaler": _set("hires_fix.upscaler", "4x-UltraSharp"),
    "hires_fix.denoising_strength": _set("hires_fix.denoising_strength", 0.5),
    "refiner.switch_at": _set("refiner.switch_at", 0.7),
    "img2img.resize_mode": _set("img2img.resize_mode", ResizeMode.RESIZE_AND_FILL),
    "adetailer_passes.0.confidence": _set("adetailer_passes.0.confidence", 0.35),
    "adetailer_passes.0.model": _set("adetailer_passes.0.model", "hand_yolov8n.pt"),
    "adetailer_passes.0.prompt": _set("adetailer_passes.0.prompt", "detailed hands"),
    "adetailer_passes.0.inpaint_only_masked": _set("adetailer_passes.0.inpaint_only_masked",
                                                   False),
    "adetailer_passes-added": lambda job: job.adetailer_passes.append(AdetailerPass()),
    "adetailer_passes-removed": lambda job: job.adetailer_passes.clear(),
    "upscale.mode": _set("upscale.mode", UpscaleMode.IMG2IMG),
    "upscale.factor": _set("upscale.factor", 4.0),
    "input_images": _set("input_images.0", "inputs/other.png"),
    "stage_plan-order": _set("stage_plan", [StageType.TXT2IMG, StageType.UPSCALE,
                                            StageType.ADETAILER]),
    "stage_plan-shorter": _set("stage_plan", [StageType.TXT2IMG, StageType.ADETAILER]),
}


@pytest.mark.parametrize("change", NAMED_CHANGES.values(), ids=NAMED_CHANGES.keys())
def test_output_affecting_change_changes_the_hash(change: Callable[[NormalizedJob], None]) -> None:
    job = castle_job()
    change(job)
    assert job != castle_job()
    assert config_hash(job) != CASTLE_HASH


def _changed(value: Any, hint: Any) -> Any:
    """A different value of the same type."""
    if hint is bool:
        return not value
    if hint is int:
        return value + 1
    if hint is float:
        return value + 0.5
    if hint is str:
        return value + "x"
    if isinstance(hint, type) and issubclass(hint, IntEnum):
        members = list(hint)
        return members[(members.index(value) + 1) % len(members)]
    raise AssertionError(hint)


def _leaf_paths(cls: type[Any], prefix: str, sample: Any) -> Iterator[tuple[str, Any]]:
    """(dotted path, type hint) of every scalar leaf reachable in `sample`."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        path, hint, value = f"{prefix}{field.name}", hints[field.name], getattr(sample, field.name)
        if dataclasses.is_dataclass(hint):
            yield from _leaf_paths(typing.cast(type[Any], hint), f"{path}.", value)
        elif typing.get_origin(hint) is list:
            (item,) = typing.get_args(hint)
            for index, element in enumerate(value):
                if dataclasses.is_dataclass(item):
                    yield from _leaf_paths(typing.cast(type[Any], item), f"{path}.{index}.",
                                           element)
                else:
                    yield f"{path}.{index}", item
        else:
            yield path, hint


def _get(job: NormalizedJob, path: str) -> Any:
    target: Any = job
    for part in path.split("."):
        target = target[int(part)] if part.isdigit() else getattr(target, part)
    return target


def _is_hashed(path: str) -> bool:
    """Neither a bookkeeping field of the job nor a pass's outcome rule (NOT_HASHED_OF)."""
    parts = path.split(".")
    if parts[0] in NOT_HASHED:
        return False
    return not (parts[0] == "adetailer_passes"
                and parts[-1] in NOT_HASHED_OF[AdetailerPass])


HASHED_LEAVES = [(path, hint) for path, hint in _leaf_paths(NormalizedJob, "", castle_job())
                 if _is_hashed(path)]
BOOKKEEPING_LEAVES = [(path, hint) for path, hint in _leaf_paths(NormalizedJob, "", castle_job())
                      if not _is_hashed(path)]


@pytest.mark.parametrize(("path", "hint"), HASHED_LEAVES, ids=[p for p, _ in HASHED_LEAVES])
def test_every_hashed_leaf_changes_the_hash(path: str, hint: Any) -> None:
    job = castle_job()
    _set(path, _changed(_get(job, path), hint))(job)
    assert config_hash(job) != CASTLE_HASH


@pytest.mark.parametrize(("path", "hint"), BOOKKEEPING_LEAVES,
                         ids=[p for p, _ in BOOKKEEPING_LEAVES])
def test_bookkeeping_leaf_leaves_the_hash(path: str, hint: Any) -> None:
    job = castle_job()
    _set(path, _changed(_get(job, path), hint))(job)
    assert config_hash(job) == CASTLE_HASH


def test_bookkeeping_fields_leave_the_hash() -> None:
    assert {"index", "origin", "tags", "config_hash"} == NOT_HASHED
    job = castle_job()
    job.index = 9999
    job.origin = EntryOrigin(part_id="other", prompt_source=PromptSource.MANUAL)
    job.tags = []
    job.config_hash = CASTLE_HASH
    assert config_hash(job) == CASTLE_HASH
    job.tags = [PromptTag(kind=PromptTagKind.EMBEDDING, name="x", weight=1.0)] * 3
    assert config_hash(job) == CASTLE_HASH


def test_a_whole_number_float_hashes_like_the_float() -> None:
    # Python accepts an int where a float is declared; the proto turns it into a float.
    job = castle_job()
    job.cfg_scale = 7
    job.hires_fix.scale = 2
    job.adetailer_passes[0].confidence = 1
    as_float = castle_job()
    as_float.cfg_scale = 7.0
    as_float.hires_fix.scale = 2.0
    as_float.adetailer_passes[0].confidence = 1.0
    assert config_hash(job) == config_hash(as_float)
    assert config_hash(from_proto(NormalizedJob, to_proto(job))) == config_hash(job)


def test_hash_survives_the_proto_round_trip() -> None:
    job = castle_job()
    wire = type(to_proto(job)).FromString(to_proto(job).SerializeToString())
    assert config_hash(from_proto(NormalizedJob, wire)) == CASTLE_HASH


INT32 = st.integers(-(2**31), 2**31 - 1)
INT64 = st.integers(-(2**63), 2**63 - 1)
FLOATS = st.floats(allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None, database=None)
@given(st.builds(
    NormalizedJob,
    index=INT32, prompt=st.text(max_size=30), negative_prompt=st.text(max_size=10),
    stage_plan=st.lists(st.sampled_from(list(StageType)), max_size=4),
    seed=INT64, subseed=INT64, subseed_strength=FLOATS, steps=INT32, cfg_scale=FLOATS,
    hires_fix=st.builds(HiresFixConfig, scale=FLOATS, second_pass_steps=INT32),
    adetailer_passes=st.lists(st.builds(AdetailerPass, model=st.text(max_size=8),
                                        confidence=FLOATS, steps=INT32), max_size=2),
    input_images=st.lists(st.text(max_size=8), max_size=2),
))
def test_hash_is_the_same_after_the_proto_round_trip(job: NormalizedJob) -> None:
    assert config_hash(from_proto(NormalizedJob, to_proto(job))) == config_hash(job)


# --- bundle_hash --------------------------------------------------------------------------------


def test_bundle_hash_depends_on_order() -> None:
    first, second = "a" * 64, "b" * 64
    assert bundle_hash([first, second]) != bundle_hash([second, first])
    assert bundle_hash([first, second]) == bundle_hash([first, second])
    assert bundle_hash([first, second]) == \
        "5e9ae866add9a85d69c3481d059bb9f158a39e5670ba11f95112fc409630894e"


def test_bundle_hash_depends_on_every_entry() -> None:
    hashes = [config_hash(castle_job())]
    other = castle_job()
    other.seed += 1
    hashes.append(config_hash(other))
    assert bundle_hash(hashes) != bundle_hash(hashes[:1])
    assert bundle_hash(hashes) != bundle_hash([hashes[0], hashes[0]])
    assert bundle_hash(hashes[:1]) != hashes[0]


def test_bundle_hash_separates_entries() -> None:
    assert bundle_hash(["ab", "c"]) != bundle_hash(["a", "bc"])
