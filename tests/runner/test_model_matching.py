"""Matching a requested checkpoint or VAE name to the WebUI's lists, and switching through
POST /sdapi/v1/options only when the match is not already loaded; through the fake HTTP layer,
then against the emulator over real HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from stablenew.emulator import EmulatorServer
from stablenew.runner.webui_client import WebuiClient
from stablenew.runner.webui_errors import WebuiError, WebuiErrorKind
from stablenew.sdwebui.model_matching import ModelEntry, find_model, match_vae, queue_model_name
from tests.runner.fake_webui import (
    Call,
    FakeWebui,
    Harness,
    Reply,
    fixture,
    json_reply,
)

# Models and VAEs -----------------------------------------------------------------------------


class OptionsState:
    """POST /options changes what GET /options returns, as on the WebUI."""

    def __init__(self, fake: FakeWebui) -> None:
        self.options: dict[str, Any] = fixture("options.json")
        self.posts: list[dict[str, Any]] = []
        fake.on("GET", "/sdapi/v1/options", lambda _c: Reply(200, dict(self.options)))
        fake.on("POST", "/sdapi/v1/options", self._post)

    def _post(self, call: Call) -> Reply:
        self.posts.append(call.body)
        self.options.update(call.body)
        return Reply(200, None)


@pytest.mark.parametrize("name", [
    "v1-5-pruned-emaonly.safetensors [6ce0161689]", "v1-5-pruned-emaonly.safetensors",
    "v1-5-pruned-emaonly", "6ce0161689"])
def test_ensure_model_keeps_the_loaded_model(harness: Harness, name: str) -> None:
    state = OptionsState(harness.fake)
    assert harness.client.ensure_model(name) is False
    assert state.posts == []


@pytest.mark.parametrize(("name", "title"), [
    ("sd_xl_base_1.0", "SDXL/sd_xl_base_1.0.safetensors [31e35c80fc]"),
    ("SDXL/sd_xl_base_1.0.safetensors", "SDXL/sd_xl_base_1.0.safetensors [31e35c80fc]"),
    ("SDXL_sd_xl_base_1.0", "SDXL/sd_xl_base_1.0.safetensors [31e35c80fc]"),
    ("dreamshaper_8", "dreamshaper_8.safetensors"),
    ("sd-v1-5-inpainting.ckpt [c6bbc15e32]", "sd-v1-5-inpainting.ckpt [c6bbc15e32]"),
])
def test_ensure_model_switches_once(harness: Harness, name: str, title: str) -> None:
    state = OptionsState(harness.fake)
    assert harness.client.ensure_model(name) is True
    assert harness.client.ensure_model(name) is False
    assert state.posts == [{"sd_model_checkpoint": title}]
    post = next(c for c in harness.fake.calls if c.method == "POST")
    assert post.timeout == (3.0, 600.0)  # a model load may take a minute


def test_ensure_model_unknown_is_not_found_without_posting(harness: Harness) -> None:
    state = OptionsState(harness.fake)
    with pytest.raises(WebuiError) as caught:
        harness.client.ensure_model("no-such-model")
    assert caught.value.kind is WebuiErrorKind.NOT_FOUND
    assert "no-such-model" in str(caught.value)
    assert state.posts == []
    assert harness.fake.count("POST", "/sdapi/v1/refresh-checkpoints") == 1
    assert harness.fake.count("GET", "/sdapi/v1/sd-models") == 2


def test_ensure_model_finds_a_new_checkpoint_after_a_refresh(harness: Harness) -> None:
    state = OptionsState(harness.fake)
    listed = fixture("sd_models.json")
    added = [*listed, {"title": "new_model.safetensors [0123456789]",
                       "model_name": "new_model", "hash": "0123456789", "sha256": None,
                       "filename": "new_model.safetensors", "config": None}]
    harness.fake.on("GET", "/sdapi/v1/sd-models", Reply(200, listed), Reply(200, added))
    assert harness.client.ensure_model("new_model") is True
    assert state.posts == [{"sd_model_checkpoint": "new_model.safetensors [0123456789]"}]


def test_an_exact_title_wins_over_another_folders_file_name() -> None:
    entries = [ModelEntry("a/x.safetensors [1111111111]", "a_x", "1111111111"),
               ModelEntry("x.safetensors [2222222222]", "x", "2222222222")]
    assert find_model(entries, "x.safetensors [2222222222]") is entries[1]
    assert find_model(entries, "x") is entries[1]  # model_name outranks a file-name stem
    assert find_model(entries, "a/x.safetensors") is entries[0]
    assert find_model(entries, "x.safetensors [9999999999]") is entries[1]  # re-hashed
    assert find_model(entries, "") is None


def test_ensure_vae(harness: Harness) -> None:
    state = OptionsState(harness.fake)
    client = harness.client
    assert client.ensure_vae("") is False and client.ensure_vae("Automatic") is False
    assert client.ensure_vae("vae-ft-mse-840000-ema-pruned") is True
    assert client.ensure_vae("vae-ft-mse-840000-ema-pruned.safetensors") is False
    assert client.ensure_vae("None") is True
    assert client.ensure_vae("") is True
    assert state.posts == [{"sd_vae": "vae-ft-mse-840000-ema-pruned.safetensors"},
                           {"sd_vae": "None"}, {"sd_vae": "Automatic"}]


def test_ensure_vae_lists_the_vaes_once(harness: Harness) -> None:
    OptionsState(harness.fake)
    assert harness.client.ensure_vae("vae-ft-mse-840000-ema-pruned") is True
    assert harness.fake.count("GET", "/sdapi/v1/sd-vae") == 1
    harness.fake.calls.clear()
    harness.fake.on("GET", "/sdapi/v1/sd-vae", Reply(200, []), json_reply("sd_vae.json"))
    assert harness.client.ensure_vae("vae-ft-mse-840000-ema-pruned") is False
    # Not listed at first: once before and once after the refresh, no more.
    assert harness.fake.count("POST", "/sdapi/v1/refresh-vae") == 1
    assert harness.fake.count("GET", "/sdapi/v1/sd-vae") == 2


def test_ensure_vae_unknown_is_not_found_without_posting(harness: Harness) -> None:
    state = OptionsState(harness.fake)
    with pytest.raises(WebuiError) as caught:
        harness.client.ensure_vae("no-such-vae")
    assert caught.value.kind is WebuiErrorKind.NOT_FOUND and state.posts == []
    assert harness.fake.count("POST", "/sdapi/v1/refresh-vae") == 1


VAES = ["vae-ft-mse-840000-ema-pruned.safetensors", "SDXL/sdxl_vae.safetensors"]


@pytest.mark.parametrize(("wanted", "value"), [
    ("", "Automatic"), ("  automatic ", "Automatic"), ("NONE", "None"),
    ("vae-ft-mse-840000-ema-pruned.safetensors", "vae-ft-mse-840000-ema-pruned.safetensors"),
    ("vae-ft-mse-840000-ema-pruned", "vae-ft-mse-840000-ema-pruned.safetensors"),
    ("sdxl_vae.safetensors", "SDXL/sdxl_vae.safetensors"),
    ("sdxl_vae", "SDXL/sdxl_vae.safetensors"),
    ("SDXL/sdxl_vae.safetensors", "SDXL/sdxl_vae.safetensors"),
    ("no-such-vae", None), ("VAE-FT-MSE-840000-EMA-PRUNED", None),
])
def test_match_vae(wanted: str, value: str | None) -> None:
    assert match_vae(VAES, wanted) == value


def test_the_queue_names_the_loaded_model_by_its_model_name() -> None:
    entries = [ModelEntry("SDXL/sd_xl_base_1.0.safetensors [31e35c80fc]", "SDXL_sd_xl_base_1.0",
                          "31e35c80fc")]
    title = "SDXL/sd_xl_base_1.0.safetensors [31e35c80fc]"
    assert queue_model_name(title, entries) == "SDXL_sd_xl_base_1.0"
    assert queue_model_name("SDXL_sd_xl_base_1.0", entries) == "SDXL_sd_xl_base_1.0"
    # Not listed (yet): the title without its hash and extension.
    assert queue_model_name("dreamshaper_8.safetensors [879db523c3]", entries) == "dreamshaper_8"
    assert queue_model_name("", entries) == ""


# Against the emulator over real HTTP ---------------------------------------------------------


def test_emulator_model_and_vae_switching(emulator: EmulatorServer, live: WebuiClient) -> None:
    loaded = live.loaded_model_title()
    assert live.ensure_model(loaded.split(" [")[0]) is False
    assert live.ensure_model("dreamshaper_8") is True
    assert live.loaded_model_title().startswith("dreamshaper_8.safetensors [")
    assert live.ensure_model("dreamshaper_8.safetensors") is False
    with pytest.raises(WebuiError) as caught:
        live.ensure_model("no-such-model")
    assert caught.value.kind is WebuiErrorKind.NOT_FOUND
    vae = live.sd_vaes()[0]
    assert live.ensure_vae(vae) is True and live.ensure_vae(vae) is False
    assert live.options()["sd_vae"] == vae
    assert live.ensure_vae("Automatic") is True
