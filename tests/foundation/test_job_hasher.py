"""The fast per-part hasher gives exactly the official config_hash."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stablenew.contract import job_hasher
from stablenew.contract.config_hash import config_hash
from stablenew.contract.job_hasher import JobHasher
from stablenew.contract.model import (
    AdetailerPass,
    HiresFixConfig,
    NormalizedJob,
    StageType,
    UpscaleConfig,
    UpscaleMode,
)

# Any text a prompt can hold: quotes, backslashes, %, braces, non-ASCII (no lone surrogates,
# which UTF-8 and therefore protobuf cannot carry).
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
SEED = st.integers(min_value=0, max_value=2**63 - 1)

PROTOTYPE = NormalizedJob(
    stage_plan=[StageType.TXT2IMG, StageType.ADETAILER, StageType.UPSCALE],
    model="v1-5 \"quoted\" % {braces}", sampler_name="Euler a", width=512, height=768,
    steps=25, cfg_scale=7.5, batch_size=2, n_iter=3, subseed_strength=0.25,
    hires_fix=HiresFixConfig(enabled=True, scale=1.5, prompt="hires ünïcode"),
    adetailer_passes=[AdetailerPass(model="face_yolov8n.pt", confidence=0.35)],
    upscale=UpscaleConfig(mode=UpscaleMode.EXTRAS, upscaler="R-ESRGAN 4x+", factor=2.0),
)


@settings(max_examples=200, deadline=None)
@given(prompt=TEXT, negative=TEXT, seed=SEED, subseed=SEED, images=st.lists(TEXT, max_size=3))
def test_spliced_hash_equals_config_hash(prompt: str, negative: str, seed: int, subseed: int,
                                         images: list[str]) -> None:
    job = dataclasses.replace(PROTOTYPE, prompt=prompt, negative_prompt=negative, seed=seed,
                              subseed=subseed, input_images=images)

    assert JobHasher(PROTOTYPE).hash(prompt, negative, seed, subseed, images) == config_hash(job)


def test_index_origin_and_tags_do_not_change_the_hash() -> None:
    hasher = JobHasher(dataclasses.replace(PROTOTYPE, index=9, tags=[], config_hash="stale"))

    assert hasher.hash("a", "b", 1, 2, []) == config_hash(dataclasses.replace(
        PROTOTYPE, prompt="a", negative_prompt="b", seed=1, subseed=2))


def test_a_prototype_that_defeats_the_markers_falls_back_to_config_hash() -> None:
    odd = dataclasses.replace(PROTOTYPE, model="\x00stablenew-hash-marker:prompt\x00")

    result = JobHasher(odd).hash("x", "y", 1, 2, ["i.png"])

    assert result == config_hash(dataclasses.replace(odd, prompt="x", negative_prompt="y",
                                                     seed=1, subseed=2, input_images=["i.png"]))


def test_a_splice_that_disagrees_with_the_official_hash_is_not_used(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Simulate a change of the official encoding that the splicing would not follow.
    monkeypatch.setattr(job_hasher, "_encode_list", lambda values: "[ ]")
    hasher = JobHasher(PROTOTYPE)

    assert hasher.hash("x", "y", 1, 2, []) == config_hash(dataclasses.replace(
        PROTOTYPE, prompt="x", negative_prompt="y", seed=1, subseed=2))
