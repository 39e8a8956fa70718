"""A prompt file with no settings runs as written, end to end: bundle -> queue -> a real runner
-> the WebUI emulator over HTTP. It runs txt2img with the built-in defaults on whatever
checkpoint the WebUI has loaded (no model named: no model switch, any runner may take it), and
what ran is what was previewed (the runner's executed hash equals the queued one)."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from stablenew.emulator.testing import fast_config, running
from stablenew.runner.outputs import png_text
from stablenew.v1 import job_pb2
from tests.bundle_service.conftest import Stack
from tests.bundle_service.harness import unique, write_pack
from tests.runner.harness import EmulatorAdmin, RunnerHarness, wait_state
from tests.service_harness import wait_for


def _after_startup_load(admin: EmulatorAdmin) -> dict[str, Any] | None:
    """The emulator's stats once it loaded its start-up checkpoint (in the background, as the
    WebUI does)."""
    stats = admin.stats()
    return stats if stats["model_loads"] else None


def test_a_plain_text_pack_runs_txt2img_on_the_loaded_checkpoint(stack: Stack,
                                                                 tmp_path: Path) -> None:
    pack_id = unique("runs_")
    write_pack(stack.packs_dir, f"{pack_id}.txt",
               "a lighthouse on a cliff\nneg: blurry\n\na harbor at night\n")
    draft = stack.bundle.new_draft()
    stack.bundle.add_pack(draft.draft_id, pack_id)
    previewed, pages = stack.bundle.preview_all(draft.draft_id, 50)

    with running(fast_config()) as emulator:
        admin = EmulatorAdmin(emulator.url)
        before = wait_for(partial(_after_startup_load, admin),
                          "the emulator's start-up checkpoint")
        loaded = before["loaded_checkpoint"]
        runner = RunnerHarness(tmp_path / "runner", stack.queue.address, emulator.url)
        with runner.running():
            queued = stack.bundle.enqueue(draft.draft_id,
                                          expected_revision=pages[-1].draft_revision)
            done = wait_state(stack.queue.stub, queued.job_id)
        stats = admin.stats()
        admin.close()

    assert done.state == job_pb2.JOB_STATE_COMPLETED, done.error_message
    assert [r.executed_config_hash for r in done.results] == [j.config_hash for j in previewed]
    assert (stats["loaded_checkpoint"], stats["model_loads"]) == (loaded, before["model_loads"])
    for result in done.results:
        (image,) = result.images
        infotext = png_text((runner.output_root / image.path).read_bytes())["parameters"]
        assert "Steps: 20, Sampler: Euler, " in infotext
        assert "CFG scale: 7.0, " in infotext and "Size: 512x512, " in infotext
        assert f"Model: {loaded.split('.')[0]}" in infotext
