"""`stablenew draft ...`: the current draft, parts, settings, the preview, enqueue and the row
errors, with their output and exit codes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from stablenew.sdk import Client, NameCheck
from tests.bundle_service.harness import BundleHarness
from tests.cli.cli_result import BROKEN_ROW, MATRIX, SCENES, SCENES_ROWS, Result
from tests.queue.harness import QueueHarness
from tests.service_harness import wait_for

RunCli = Callable[..., Result]


def preview(cli: RunCli, *draft: str) -> dict[str, Any]:
    shown: dict[str, Any] = cli("draft", "show", "--json", *draft).ok().json()
    return shown


def test_without_a_current_draft_show_and_enqueue_say_how_to_start(cli: RunCli) -> None:
    for action in ("show", "enqueue", "clear"):
        cli("draft", action).fails(2, "no current draft", "draft add")


def test_the_first_add_creates_the_current_draft(cli: RunCli, cli_env: dict[str, str]) -> None:
    added = cli("draft", "add-pack", SCENES).ok()
    assert "is now the current draft" in added.err
    assert "2 parts, 2 jobs, 2 images" in added.out
    remembered = Path(cli_env["STABLENEW_DATA_DIR"]) / "cli" / "current_draft"
    draft_id = remembered.read_text().strip()
    assert draft_id in added.err
    again = cli("draft", "add-pack", MATRIX).ok()
    assert again.err == ""  # the same draft
    assert f"draft {draft_id}: 4 parts, 7 jobs, 7 images" in again.out


def test_show_prints_every_job_with_prompt_seed_stages_and_hash(cli: RunCli) -> None:
    cli("draft", "add-pack", SCENES).ok()
    shown = cli("draft", "show").ok()
    jobs = preview(cli)["jobs"]
    assert len(jobs) == len(SCENES_ROWS)
    for job in jobs:
        header = (f"#{job.get('index', 0)} seed {job['seed']} txt2img "
                  f"{job['width']}x{job['height']} {job['model']} hash {job['config_hash']}")
        assert header in shown.out
        assert f"    {job['prompt']}" in shown.out
    assert "part " in shown.out and f"pack {SCENES} row 1" in shown.out
    assert "ROW ERRORS" not in shown.out
    assert shown.err == ""


def test_a_typed_prompt_runs_as_txt2img_with_a_random_seed(cli: RunCli) -> None:
    cli("draft", "add", "a red fox", "--negative", "blurry").ok()
    cli("draft", "add", "a red fox").ok()
    jobs = preview(cli)["jobs"]
    assert [job["prompt"] for job in jobs] == ["a red fox", "a red fox"]
    assert jobs[0]["negative_prompt"] == "blurry"
    assert all(job["stage_plan"] == ["STAGE_TYPE_TXT2IMG"] for job in jobs)
    seeds = {int(job["seed"]) for job in jobs}
    assert len(seeds) == 2 and 0 not in seeds  # resolved from -1, a new one per part


def test_settings_rows_and_prepend_reach_the_normalized_jobs(cli: RunCli) -> None:
    cli("draft", "add-pack", SCENES, "--rows", "1", "--prepend", "oil painting,",
        "--set", "txt2img.steps=7", "--set", "txt2img.seed=1234").ok()
    cli("draft", "add", "a castle", "--set", "txt2img.width=640",
        "--set", "stages.txt2img_enabled=yes").ok()
    first, second = preview(cli)["jobs"]
    assert first["prompt"].startswith("oil painting,") and SCENES_ROWS[1] in first["prompt"]
    assert (first["steps"], int(first["seed"])) == (7, 1234)
    assert second["width"] == 640


def test_bad_input_is_a_usage_error_naming_it(cli: RunCli) -> None:
    cli("draft", "add-pack", SCENES, "--set", "txt2img.stepz=3").fails(
        2, "--set txt2img.stepz", "steps")
    cli("draft", "add-pack", SCENES, "--set", "txt2img.steps=many").fails(
        2, "txt2img.steps=many", "whole number")
    cli("draft", "add-pack", SCENES, "--set", "upscale.mode=sideways").fails(
        2, "extras, img2img")
    cli("draft", "add-pack", SCENES, "--rows", "one").fails(2, "--rows", "'one'")
    cli("draft", "add-pack", SCENES, "--rows", "7").fails(2, "INVALID_ARGUMENT", "row_indices")
    cli("draft", "add-pack", "no-such-pack").fails(2, "PACK_NOT_FOUND")
    cli("draft", "add", "x", "--set", "txt2img.width=100").fails(2, "INVALID_ARGUMENT", "width")
    cli("draft", "show", "--draft", "no-such-draft").fails(2, "DRAFT_NOT_FOUND")
    cli("draft", "frobnicate").fails(2, "invalid choice", "frobnicate")


def test_remove_and_clear(cli: RunCli) -> None:
    cli("draft", "add-pack", SCENES).ok()
    parts = preview(cli)["draft"]["parts"]
    removed = cli("draft", "remove", parts[0]["part_id"]).ok()
    assert "1 parts, 1 jobs" in removed.out
    cli("draft", "remove", "no-such-part").fails(2, "PART_NOT_FOUND")
    assert "0 parts, 0 jobs" in cli("draft", "clear").ok().out
    cli("draft", "enqueue").fails(2, "DRAFT_EMPTY")


def test_new_and_list_mark_the_current_draft(cli: RunCli) -> None:
    first = cli("draft", "new", "first").ok().out.strip()
    second = cli("draft", "new", "second").ok().out.strip()
    listing = cli("draft", "list").ok().out.splitlines()
    marked = [line for line in listing if line.startswith("* ")]
    assert len(marked) == 1 and second in marked[0] and "second" in marked[0]
    assert any(first in line and not line.startswith("* ") for line in listing)
    listed = cli("draft", "list", "--json").ok().json()
    assert listed["current_draft_id"] == second
    assert {first, second} <= {draft["draft_id"] for draft in listed["drafts"]}
    # --draft works on another draft without changing the current one.
    cli("draft", "add-pack", SCENES, "--draft", first).ok()
    assert len(preview(cli, "--draft", first)["jobs"]) == 2
    assert preview(cli)["jobs"] == []  # the current (second) draft is still empty


def test_a_remembered_draft_that_is_gone_is_replaced_on_the_next_add(
        cli: RunCli, cli_env: dict[str, str]) -> None:
    remembered = Path(cli_env["STABLENEW_DATA_DIR"]) / "cli" / "current_draft"
    remembered.parent.mkdir(parents=True)
    remembered.write_text("a-draft-the-bundle-never-had\n")
    cli("draft", "show").fails(2, "DRAFT_NOT_FOUND")
    added = cli("draft", "add-pack", SCENES).ok()
    assert "is gone; starting a new one" in added.err
    assert remembered.read_text().strip() != "a-draft-the-bundle-never-had"


def test_row_errors_are_shown_loudly_and_refuse_the_enqueue(cli: RunCli, paused: None) -> None:
    added = cli("draft", "add-pack", BROKEN_ROW).ok()
    assert "1 row(s) make no job" in added.err
    shown = cli("draft", "show").ok()
    assert "ROW ERRORS: 1 row(s) make no job and would be dropped:" in shown.out
    assert f"! {BROKEN_ROW} row 1 (line 3): UNRESOLVED_TOKEN" in shown.out
    assert shown.out.count(f"{BROKEN_ROW} row 1 (line 3)") == 1  # the row named once
    assert shown.err.startswith("stablenew: warning:")
    refused = cli("draft", "enqueue").fails(2, "not queued", f"{BROKEN_ROW} row 1",
                                            "--skip-bad-rows")
    assert "UNRESOLVED_TOKEN" in refused
    assert cli("queue", "list", "--json").ok().json().get("jobs", []) == []
    queued = cli("draft", "enqueue", "--skip-bad-rows", "--json").ok()
    assert f"{BROKEN_ROW} row 1" in queued.err  # says which row is dropped
    assert queued.json()["job"]["entry_count"] == 1


def checked_show(cli: RunCli) -> Result:
    """`draft show` once the names are checked: until the session's runner has announced what it
    offers, and the bundle has asked the queue again (it keeps the answer a few seconds), they
    are not."""
    def checked() -> Result | None:
        shown = cli("draft", "show").ok()
        return shown if "names checked" in shown.out else None

    return wait_for(checked, "the bundle to check the names against the runner's offer")


def test_show_says_the_names_were_checked_and_suggests_the_closest_offered_one(
        cli: RunCli) -> None:
    cli("draft", "add", "a red kite", "--set", "txt2img.sampler_name=Eulr a").ok()

    shown = checked_show(cli)

    assert "names checked against what 1 connected runner(s) offer" in shown.out
    part_id = preview(cli)["draft"]["parts"][0]["part_id"]
    assert (f"  ! part {part_id}: INVALID_FIELD: config.txt2img.sampler_name: sampler 'Eulr a' "
            "is not offered by any connected runner: did you mean 'Euler a'") in shown.out
    with Client() as client:  # the SDK reads the same: the check, the field, the suggestions
        draft_id = preview(cli)["draft"]["draft_id"]
        summary = client.drafts.preview(draft_id).summary
    assert summary.name_check == NameCheck(checked=True, runner_count=1, unchecked_reason="")
    (error,) = summary.errors
    assert (error.config_field, error.suggestions[0]) == ("txt2img.sampler_name", "Euler a")


def test_the_hires_fix_set_key_by_key_has_its_upscaler_checked(cli: RunCli) -> None:
    cli("draft", "add", "a red kite", "--set", "txt2img.hires_fix.enabled=true",
        "--set", "txt2img.hires_fix.upscaler=Latnt").ok()

    shown = checked_show(cli)

    assert ("config.txt2img.hires_fix.upscaler: upscaler 'Latnt' is not offered by any "
            "connected runner: did you mean 'Latent'") in shown.out
    assert "0 jobs" in shown.out


def test_show_says_when_no_runner_could_check_the_names(cli: RunCli, tmp_path: Path) -> None:
    # A queue no runner has joined, and a bundle asking it: the names go unchecked.
    queue = QueueHarness(tmp_path / "queue", {}).start()
    bundle = BundleHarness(tmp_path / "bundle", tmp_path / "packs", queue.address,
                           {"STABLENEW_OFFER_CACHE_SECONDS": "0"}).start()
    try:
        alone = {"STABLENEW_BUNDLE_ADDR": bundle.address}
        cli("draft", "add", "a red kite", "--set", "txt2img.sampler_name=Eulr a", **alone).ok()
        shown = cli("draft", "show", **alone).ok()
        checked = preview(cli)["draft"]["summary"]["name_check"]
    finally:
        bundle.stop()
        queue.stop()
    assert "names NOT checked (no runner is connected): a model, VAE, sampler" in shown.out
    assert "1 jobs" in shown.out and "ROW ERRORS" not in shown.out
    assert checked == {"unchecked_reason": "no runner is connected"}


def test_enqueue_with_run_now_priority_and_label(cli: RunCli, paused: None) -> None:
    cli("draft", "add-pack", SCENES).ok()
    queued = cli("draft", "enqueue", "--priority", "high", "--label", "mine").ok()
    assert queued.out.startswith("queued job ") and "2 entries, 2 images" in queued.out
    job_id = queued.out.split()[2].rstrip(":")
    job = cli("queue", "list", "--json").ok().json()["jobs"][0]
    assert (job["job_id"], job["priority"], job["label"]) == (job_id, "PRIORITY_HIGH", "mine")
    assert job["origin"]["run_mode"] == "RUN_MODE_QUEUE"
    cli("draft", "add", "a quick sketch").ok()
    now = cli("draft", "enqueue", "--run-now", "--json").ok().json()["job"]
    assert now["origin"]["run_mode"] == "RUN_MODE_DIRECT"
    cli("draft", "enqueue", "--priority", "urgent").fails(2, "--priority", "urgent")
