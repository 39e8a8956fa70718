"""The pipeline panel's view model against the real bundle and runner (and the emulator's
WebUI): packs, rows, capabilities, and the settings it sends or refuses."""

from __future__ import annotations

import pytest

from stablenew.gui.pipeline_model import (
    FIELD_BY_KEY,
    InvalidFormError,
    PipelineModel,
    nested,
)
from tests.gui.harness import ModelHarness
from tests.sdk.harness import PACK_ID, PACK_ROWS

MODEL = "txt2img.model"


@pytest.fixture
def pipeline(models: ModelHarness) -> PipelineModel:
    model = PipelineModel(models.context)
    model.start()
    models.settle(lambda: model.packs and model.capabilities, "packs and capabilities")
    return model


def test_packs_and_the_runners_names_are_offered(pipeline: PipelineModel) -> None:
    assert PACK_ID in [pack.pack_id for pack in pipeline.packs]
    capabilities = pipeline.capabilities
    assert capabilities is not None
    models = pipeline.choices(FIELD_BY_KEY[MODEL])
    assert models == ["", *(model.model_name for model in capabilities.models)]
    assert pipeline.choices(FIELD_BY_KEY["txt2img.sampler_name"])[1:] == capabilities.samplers
    assert (pipeline.choices(FIELD_BY_KEY["adetailer.passes.0.model"])[1:]
            == capabilities.adetailer_models)


def test_a_picked_pack_shows_its_rows_and_lends_its_settings(
        models: ModelHarness, pipeline: PipelineModel) -> None:
    pipeline.select_pack(PACK_ID)
    pack = models.settle(lambda: pipeline.pack, "the pack")
    assert [row.positive for row in pack.rows] == list(PACK_ROWS)
    pipeline.load_pack_settings()
    # The stack's castles.json presets: steps 4, Euler a, and the ADetailer pass.
    assert pipeline.values["txt2img.steps"] == "4"
    assert pipeline.values["txt2img.sampler_name"] == "Euler a"
    assert pipeline.values["adetailer.passes.0.model"] == "face_yolov8n.pt"
    assert pipeline.values["stages.txt2img_enabled"] is True


def test_add_to_job_sends_the_filled_settings_and_a_random_seed(
        pipeline: PipelineModel) -> None:
    pipeline.prompt, pipeline.negative = "a red fox", "blurry"
    pipeline.set_value("txt2img.steps", "12")
    pipeline.set_value("txt2img.cfg_scale", "6.5")
    pipeline.set_value(MODEL, pipeline.choices(FIELD_BY_KEY[MODEL])[1])
    pipeline.set_value("stages.adetailer_enabled", True)
    pipeline.set_value("adetailer.passes.0.confidence", "0.5")
    part = pipeline.manual_part()
    assert part.prompt == "a red fox" and part.negative == "blurry"
    assert part.config["txt2img"]["steps"] == 12
    assert part.config["txt2img"]["cfg_scale"] == 6.5
    assert part.config["txt2img"]["seed"] == -1
    assert part.config["stages"] == {"txt2img_enabled": True, "adetailer_enabled": True}
    assert part.config["adetailer"] == {"passes": [{"confidence": 0.5}]}
    assert "width" not in part.config["txt2img"]  # empty: the service's default


def test_bad_settings_are_refused_by_field_and_kept(pipeline: PipelineModel) -> None:
    pipeline.set_value("txt2img.steps", "many")
    pipeline.set_value("upscale.factor", "2x")
    pipeline.set_value(MODEL, "a model the WebUI does not have")
    with pytest.raises(InvalidFormError) as refused:
        pipeline.manual_part()
    assert set(refused.value.errors) == {"txt2img.steps", "upscale.factor", MODEL, "prompt"}
    assert "'many' is not a whole number" in str(refused.value)
    assert "not offered by the runner's WebUI" in pipeline.errors[MODEL]
    assert pipeline.values["txt2img.steps"] == "many"  # nothing the user typed is lost
    pipeline.set_value("txt2img.steps", "8")
    assert "txt2img.steps" not in pipeline.errors


def test_add_pack_overrides_only_what_is_filled_in(
        models: ModelHarness, pipeline: PipelineModel) -> None:
    with pytest.raises(InvalidFormError, match="pick a pack first"):
        pipeline.pack_parts()
    pipeline.select_pack(PACK_ID)
    models.settle(lambda: pipeline.pack, "the pack")
    pipeline.select_rows([2, 0])
    pipeline.prepend = "oil painting,"
    pipeline.set_value("txt2img.steps", "9")
    parts = pipeline.pack_parts()
    assert (parts.pack_id, parts.rows, parts.prepend) == (PACK_ID, [0, 2], "oil painting,")
    # The pack keeps its own stages and seed unless asked otherwise.
    assert parts.overrides == {"txt2img": {"steps": 9}}
    pipeline.use_pack_stages = False
    assert pipeline.pack_parts().overrides["stages"] == {"txt2img_enabled": True}


def test_nested_settings() -> None:
    assert nested({"a.b": 1, "a.c.0.d": 2, "a.c.1.d": 3, "e": 4}) == {
        "a": {"b": 1, "c": [{"d": 2}, {"d": 3}]}, "e": 4}
