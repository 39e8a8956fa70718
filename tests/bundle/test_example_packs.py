"""The packs shipped in examples/packs (and shown in docs/PROMPT_PACKS.md) load without a problem
and make the jobs their comments promise, with no config overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from stablenew.bundle.domain import PackRowPart
from stablenew.bundle.normalize import normalize_draft
from stablenew.bundle.packs import PackLibrary
from stablenew.bundle.seeds import DerivedSeedSource
from stablenew.contract.model import StageType
from stablenew.runner.payloads import adetailer_request

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "packs"
T2I, ADETAILER, UPSCALE = StageType.TXT2IMG, StageType.ADETAILER, StageType.UPSCALE


@pytest.mark.parametrize(("pack_id", "jobs", "images", "plan"), [
    ("castles", 5, 5, [T2I, ADETAILER, UPSCALE]),
    ("lighthouses", 2, 2, [T2I]),
    ("portraits", 4, 4, [T2I]),
    ("knights", 5, 10, [T2I, ADETAILER]),
])
def test_an_example_pack_runs_as_written(pack_id: str, jobs: int, images: int,
                                         plan: list[StageType]) -> None:
    library = PackLibrary(EXAMPLES)
    pack = library.load_pack(pack_id)
    parts = [PackRowPart(f"part-{row.index}", pack_id, row.index) for row in pack.rows]

    bundle = normalize_draft(parts, DerivedSeedSource("example"), library)

    assert (pack.errors, bundle.errors) == ([], [])
    assert (bundle.summary.job_count, bundle.summary.estimated_images) == (jobs, images)
    assert {tuple(job.stage_plan) for job in bundle.jobs} == {tuple(plan)}


@pytest.mark.parametrize("pack_id", ["castles", "knights"])
def test_the_example_packs_adetailer_tab_has_the_extensions_defaults(pack_id: str) -> None:
    # The packs leave mask blur, dilate/erode and the inpainting area unset: the WebUI must get
    # the extension's own defaults, not zeros (whole-image inpainting with no blur).
    library = PackLibrary(EXAMPLES)
    parts = [PackRowPart("p", pack_id, 0)]

    job = normalize_draft(parts, DerivedSeedSource("example"), library).jobs[0]
    (tab,) = adetailer_request(job).adetailer_tabs

    assert {key: tab[key] for key in ("ad_mask_blur", "ad_dilate_erode", "ad_inpaint_only_masked",
                                      "ad_inpaint_only_masked_padding")} == {
        "ad_mask_blur": 4, "ad_dilate_erode": 4, "ad_inpaint_only_masked": True,
        "ad_inpaint_only_masked_padding": 32}


def test_every_example_pack_is_listed_without_an_error() -> None:
    summaries = PackLibrary(EXAMPLES).list_packs()

    assert [(s.pack_id, s.error_message) for s in summaries] == [
        ("castles", ""), ("knights", ""), ("lighthouses", ""), ("portraits", "")]


def test_the_plain_examples_expand_their_definitions() -> None:
    library = PackLibrary(EXAMPLES)
    parts = [PackRowPart("l", "lighthouses", 1), PackRowPart("p", "portraits", 1)]

    bundle = normalize_draft(parts, DerivedSeedSource("example"), library)

    season, *lights = [job.prompt for job in bundle.jobs]
    assert season in {f"watercolor lighthouse on a {value} morning"
                      for value in ("spring", "autumn", "winter")}
    assert lights == ["portrait of a young baker, soft window light",
                      "portrait of a young baker, candle light"]
