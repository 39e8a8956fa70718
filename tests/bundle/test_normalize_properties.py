"""Properties of normalisation over generated packs and configs: it is deterministic, no job
holds an unresolved token, and every job carries its correct config_hash."""

from __future__ import annotations

from typing import TypeVar

from hypothesis import given, settings
from hypothesis import strategies as st

from stablenew.bundle.domain import ManualPart, NormalizedBundle, PackRowPart
from stablenew.bundle.normalize import normalize_draft
from stablenew.bundle.packs.model import MatrixMode, Pack
from stablenew.bundle.prompt_text import has_token, scan_tags
from stablenew.bundle.seeds import SEED_RANGE, DerivedSeedSource
from stablenew.contract.config_hash import config_hash
from stablenew.contract.model import (
    AdetailerConfig,
    AdetailerPass,
    PipelineConfig,
    StageFlags,
    Txt2ImgConfig,
)
from tests.bundle.helpers import FakePacks, make_pack

T = TypeVar("T")

WORDS = ["knight", "castle", "at dawn", "(red:1.2)", "<lora:detail:0.6>", "snake__case__",
         "<embedding:good>", "100%", 'a "quote"', "naïve"]
SLOT_NAMES = ["job", "place", "mood"]
WILDCARD_NAMES = ["color", "hair"]
# Tokens a row may use; `[[ghost]]`/`__ghost__` are never defined.
TOKENS = ([f"[[{name}]]" for name in [*SLOT_NAMES, "ghost"]]
          + [f"__{name}__" for name in [*WILDCARD_NAMES, "ghost"]])

words = st.sampled_from(WORDS)
values = st.lists(st.one_of(words, st.sampled_from(["[[job]]", "__color__"])).filter(bool),
                  min_size=1, max_size=3)
texts = st.lists(st.one_of(words, st.sampled_from(TOKENS)), max_size=5).map(" ".join)


@st.composite
def packs(draw: st.DrawFn) -> Pack:
    rows = draw(st.lists(st.tuples(texts, texts), min_size=1, max_size=5))
    slots = draw(st.dictionaries(st.sampled_from(SLOT_NAMES), values, max_size=3))
    wildcards = draw(st.dictionaries(st.sampled_from(WILDCARD_NAMES), values, max_size=2))
    pack = make_pack(*rows, slots=slots, wildcards=wildcards, pack_id="gen",
                     mode=draw(st.sampled_from(list(MatrixMode)[1:])),
                     limit=draw(st.integers(0, 6)),
                     wildcard_mode=draw(st.sampled_from([MatrixMode.RANDOM,
                                                         MatrixMode.SEQUENTIAL])))
    pack.matrix.enabled = draw(st.booleans()) or bool(slots)
    return pack


def mostly(good: list[T], bad: list[T]) -> st.SearchStrategy[T]:
    """Usually a good value, sometimes a bad one, so most examples do make jobs."""
    return st.sampled_from(good * 4 + bad)


@st.composite
def configs(draw: st.DrawFn) -> PipelineConfig:
    stages = StageFlags(txt2img_enabled=draw(mostly([True], [False])),
                        adetailer_enabled=draw(st.booleans()),
                        upscale_enabled=draw(st.booleans()))
    passes = [AdetailerPass(model="face_yolov8n.pt")] if draw(mostly([True], [False])) else []
    config = PipelineConfig(
        stages=stages,
        txt2img=Txt2ImgConfig(seed=draw(st.sampled_from([-1, 0, 42])),
                              width=draw(mostly([0, 512, 768], [513])),
                              steps=draw(mostly([0, 20], [200])),
                              subseed=draw(st.sampled_from([-1, 5])),
                              subseed_strength=draw(st.sampled_from([0.0, 0.5]))),
        adetailer=AdetailerConfig(passes),
        batch_size=draw(st.integers(0, 3)),
        n_iter=draw(st.integers(0, 2)),
        global_positive=draw(st.sampled_from(["", "best quality", "<lora:glob:0.3>"])),
        global_negative=draw(st.sampled_from(["", "lowres"])),
    )
    config.upscale.upscaler = draw(mostly(["Lanczos"], [""]))
    return config


def normalize(pack: Pack, config: PipelineConfig, manual: str) -> NormalizedBundle:
    parts: list[ManualPart | PackRowPart] = [
        PackRowPart(f"row-{row.index}", pack.pack_id, row.index, config_overrides=config)
        for row in pack.rows]
    parts.append(ManualPart("manual", manual, "", config))
    return normalize_draft(parts, DerivedSeedSource("draft-x"), FakePacks(pack))


@settings(max_examples=150, deadline=None)
@given(pack=packs(), config=configs(), manual=texts)
def test_normalisation_is_deterministic_resolved_and_hashed(pack: Pack, config: PipelineConfig,
                                                           manual: str) -> None:
    first = normalize(pack, config, manual)
    again = normalize(pack, config, manual)

    assert first.jobs == again.jobs
    assert first.summary == again.summary
    assert [job.index for job in first.jobs] == list(range(len(first.jobs)))
    for job in first.jobs:
        assert not has_token(job.prompt) and not has_token(job.negative_prompt)
        assert job.config_hash == config_hash(job)
        assert job.tags == scan_tags(job.prompt, job.negative_prompt).tags
        assert 0 <= job.seed < SEED_RANGE and job.subseed >= 0
        assert job.stage_plan
    for outcome in first.parts:
        assert (outcome.job_count == 0) == bool(outcome.errors)
    assert first.summary.job_count == len(first.jobs) == sum(p.job_count for p in first.parts)
    assert first.summary.estimated_images == sum(p.estimated_images for p in first.parts)
