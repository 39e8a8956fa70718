"""docs/DEPLOY.md, followed: the `run` blocks against the emulator overlay's pods as local
processes (a job from draft to history, scaling, backups), the `check` blocks checked for what
they name. Then what the guide promises: a removed runner hands its job back, a backup is a
history that serves."""

from __future__ import annotations

import json
import shlex
import sqlite3
import subprocess
import urllib.request
from collections.abc import Iterator

import pytest
import yaml  # type: ignore[import-untyped, unused-ignore]

from stablenew.cli.main import build_parser
from stablenew.contract.model import JobState
from stablenew.sdk import Client
from tests.deploy.guide import Block, GuideRun, guide_blocks, kubectl_arguments
from tests.deploy.kustomize import pod_containers, render
from tests.deploy.local_cluster import LocalCluster, cli
from tests.deploy.manifests import ROOT, by_kind, named_ports
from tests.queue.processes import free_port, wait_serving
from tests.service_harness import wait_for

COMPOSE_FILE = ROOT / "docker-compose.yml"
KINDS = {"statefulset": "StatefulSet", "deployment": "Deployment", "svc": "Service"}


# --- the blocks that need a cluster: what they name exists --------------------------------------


def test_every_block_says_whether_the_test_runs_it() -> None:
    modes = [block.mode for block in guide_blocks()]
    assert "run" in modes and "check" in modes


def check_stablenew(words: list[str]) -> None:
    try:
        build_parser().parse_args(words[1:])
    except SystemExit:
        pytest.fail(f"`{' '.join(words)}` is refused by the CLI")


def check_kubectl(words: list[str]) -> None:
    args = kubectl_arguments(words)
    if args[:2] == ["apply", "-k"]:
        assert render(ROOT / args[2]), f"{args[2]} renders"
        return
    if args[:2] == ["apply", "-f"]:
        assert (ROOT / args[2]).is_file()
        return
    objects = render(ROOT / "deploy" / "kubernetes" / "overlays" / "gpu")
    for arg in args:
        kind, sep, name = arg.partition("/")
        if sep and kind in KINDS:
            assert name in by_kind(objects, KINDS[kind]), f"no {arg} in the gpu overlay"
            if "-c" in args:
                container = args[args.index("-c") + 1]
                names = [c["name"] for c in pod_containers(by_kind(objects, KINDS[kind])[name])]
                assert container in names


def check_docker(words: list[str]) -> None:
    compose = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    profiles = {profile for service in compose["services"].values()
                for profile in service.get("profiles", [])}
    if "--profile" in words:
        assert words[words.index("--profile") + 1] in profiles
    if words[:2] == ["docker", "build"]:
        assert words[-1] == "." and (ROOT / "Dockerfile").is_file()


@pytest.mark.parametrize("block", [b for b in guide_blocks() if b.mode == "check"],
                         ids=lambda block: block.commands()[0][:40])
def test_what_a_cluster_step_names_exists(block: Block) -> None:
    for command in block.commands():
        words = shlex.split(command.removesuffix("&").strip())
        while "=" in words[0] and not words[0].startswith("-"):
            words = words[1:]  # VAR=value prefixes
        checks = {"stablenew": check_stablenew, "kubectl": check_kubectl,
                  "docker": check_docker}
        assert words[0] in checks, f"a step the test cannot check: {command}"
        checks[words[0]](words)


# --- the blocks the test runs -------------------------------------------------------------------


@pytest.fixture(scope="module")
def guide(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GuideRun]:
    run = GuideRun(tmp_path_factory.mktemp("workstation"), tmp_path_factory.mktemp("cluster"))
    try:
        for block in guide_blocks():
            if block.mode == "run":
                run.run(block)
        yield run
    except BaseException:
        if run.cluster is not None:
            print("\n".join(run.cluster.logs()))
        raise
    finally:
        if run.cluster is not None:
            run.cluster.stop_all()


def guide_job_id(guide: GuideRun) -> str:
    """The job of the guide's first-job step, from what it printed."""
    summaries = [line for out in guide.outputs for line in out.splitlines()
                 if line.startswith("history:")]
    assert len(summaries) == 1, guide.outputs
    return summaries[0].split()[1]


@pytest.mark.e2e
def test_the_guide_takes_a_job_from_draft_to_history(guide: GuideRun) -> None:
    with Client(env=guide.env) as client:
        record = client.history.get(guide_job_id(guide))
    assert record.job.state == JobState.COMPLETED
    assert record.job.results and all(result.images for result in record.job.results)
    assert record.transitions[-1].to_state == JobState.COMPLETED
    health = next(out for out in guide.outputs if "SERVING" in out)
    assert [line.split()[0] for line in health.splitlines()] == ["queue", "bundle", "history"]


@pytest.mark.e2e
def test_the_history_backup_is_a_history_that_serves(guide: GuideRun) -> None:
    restored = guide.workdir / "restored"
    restored.mkdir()
    (restored / "history.sqlite3").write_bytes((guide.workdir / "history.sqlite3").read_bytes())
    port = free_port()
    # The restored file alone, as an archive: no queue to follow.
    env = guide.env | {"STABLENEW_DATA_DIR": str(restored), "STABLENEW_HISTORY_INGEST": "off",
                       "STABLENEW_HISTORY_ADDR": f"127.0.0.1:{port}"}
    archive = subprocess.Popen([*cli(), "serve", "history"], env=env, cwd=restored,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_serving(env["STABLENEW_HISTORY_ADDR"])
        with Client(env=env) as client:
            record = client.history.get(guide_job_id(guide))
    finally:
        archive.terminate()
        archive.wait(timeout=30)
    assert record.job.state == JobState.COMPLETED
    for name in ("queue", "bundle"):
        with sqlite3.connect(guide.workdir / f"{name}.sqlite3") as copy:
            assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def emulator_faults(cluster: LocalCluster, update: dict[str, float]) -> None:
    """POST to the emulator's admin endpoint in the (first) runner pod."""
    pod = cluster.pod("deployment/runner")
    (webui_port,) = named_ports(pod.container("webui").spec).values()
    request = urllib.request.Request(
        f"http://127.0.0.1:{pod.ports[webui_port]}/emulator/v1/faults",
        data=json.dumps(update).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as reply:
        assert reply.status == 200


@pytest.mark.e2e
def test_a_removed_runner_hands_its_job_back_and_another_runs_it(guide: GuideRun) -> None:
    cluster = guide.the_cluster()
    assert len(cluster.pods_of("runner")) == 1
    # Slow generation down, so the job is still running when its runner goes.
    emulator_faults(cluster, {"step_seconds": 0.2})
    with Client(env=guide.env) as client:
        draft = client.drafts.add_pack(client.drafts.create("scale-down").draft_id, "castles")
        job = client.drafts.enqueue(draft.draft_id)
        events = client.watch(job_ids=[job.job_id])
        wait_for(lambda: next(events).progress is not None, "the job's first progress")
        (runner,) = cluster.pods_of("runner")
        codes = cluster.stop_pod(runner)  # kubectl scale deployment/runner --replicas=0
        assert codes == {"runner": 0, "webui": 0}
        handed_back = client.queue.get(job.job_id)
        assert handed_back.state == JobState.QUEUED
        cluster.scale("runner", 1)  # a fresh pod, with the emulator at its usual speed
        finished = client.wait(job.job_id)
    assert finished.state == JobState.COMPLETED
    assert finished.attempt == 2, "the hand-back was the first attempt"
