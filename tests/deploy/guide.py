"""docs/DEPLOY.md as steps a test can take: its fenced blocks, and an interpreter for the
commands of the blocks marked `run`, against a LocalCluster in place of a Kubernetes cluster.

The interpreter knows the few command forms the guide uses and fails on anything else, so a
new step in the guide is either made runnable here or marked `check` (needs a cluster)."""

from __future__ import annotations

import os
import re
import secrets
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests.deploy.kustomize import render
from tests.deploy.local_cluster import LocalCluster, cli
from tests.deploy.manifests import ROOT, TOKEN_SECRET

GUIDE = ROOT / "docs" / "DEPLOY.md"
BLOCK = re.compile(r"<!-- deploy-test: (?P<mode>run|check) -->\n```(?P<lang>\w+)\n(?P<body>.*?)```",
                   re.DOTALL)
FENCE = re.compile(r"^```\w", re.MULTILINE)
NAMESPACE = "stablenew"
RANDOM_TOKEN = "$(openssl rand -hex 32)"
SECRET_FROM_CLUSTER = re.compile(
    r"\$\(kubectl -n (?P<ns>\S+) get secret (?P<name>\S+) -o "
    r"jsonpath='\{\.data\.(?P<key>\w+)\}' \| base64 -d\)")
RUN_TIMEOUT_SECONDS = 120.0  # only catches a hang


@dataclass(frozen=True)
class Block:
    mode: str
    lang: str
    body: str

    def commands(self) -> list[str]:
        """Shell lines, continuation lines joined, comments and blank lines dropped."""
        joined = self.body.replace("\\\n", " ")
        lines = [line.split(" #")[0].strip() for line in joined.splitlines()]
        return [line for line in lines if line and not line.startswith("#")]


def guide_blocks() -> list[Block]:
    text = GUIDE.read_text(encoding="utf-8")
    blocks = [Block(m["mode"], m["lang"], m["body"]) for m in BLOCK.finditer(text)]
    assert len(blocks) == len(FENCE.findall(text)), (
        "every fenced block of DEPLOY.md says whether the test runs it: <!-- deploy-test: run -->"
        " or <!-- deploy-test: check --> right before it")
    return blocks


def kubectl_arguments(words: list[str]) -> list[str]:
    """`kubectl -n stablenew VERB ...` -> [VERB, ...], checking the namespace."""
    assert words[0] == "kubectl"
    if words[1] == "-n":
        assert words[2] == NAMESPACE, f"the manifests' namespace is {NAMESPACE}"
        return words[3:]
    return words[1:]


@dataclass
class GuideRun:
    """The state the guide's commands build up, as a workstation would hold it."""

    workdir: Path
    scratch: Path
    cluster: LocalCluster | None = None
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)
    forwards: dict[int, int] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=lambda: {
        key: value for key, value in os.environ.items() if not key.startswith("STABLENEW_")})
    outputs: list[str] = field(default_factory=list)

    def run(self, block: Block) -> None:
        if block.lang == "python":
            self._python(block.body)
            return
        assert block.lang == "sh"
        for command in block.commands():
            self._shell(command)

    def the_cluster(self) -> LocalCluster:
        assert self.cluster is not None, "`kubectl apply -k` comes first"
        return self.cluster

    def _python(self, code: str) -> None:
        done = subprocess.run([sys.executable, "-c", code], env=self.env, cwd=self.workdir,
                              capture_output=True, text=True, timeout=RUN_TIMEOUT_SECONDS,
                              check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        self.outputs.append(done.stdout)

    def _shell(self, command: str) -> None:
        if command.startswith("export "):
            self._export(command.removeprefix("export "))
            return
        words = shlex.split(command.removesuffix("&").strip())
        if words[0] == "stablenew":
            done = subprocess.run([*cli(), *words[1:]], env=self.env, cwd=self.workdir,
                                  capture_output=True, text=True,
                                  timeout=RUN_TIMEOUT_SECONDS, check=False)
            assert done.returncode == 0, f"{command}: {done.stdout}{done.stderr}"
            self.outputs.append(done.stdout)
            return
        self._kubectl(kubectl_arguments(words))

    def _export(self, assignments: str) -> None:
        secret = SECRET_FROM_CLUSTER.search(assignments)
        if secret:
            name = assignments.split("=", 1)[0]
            assert secret["ns"] == NAMESPACE
            self.env[name] = self.secrets[secret["name"]][secret["key"]]
            return
        for pair in shlex.split(assignments):
            name, _, value = pair.partition("=")
            host, _, port = value.rpartition(":")
            if host == "localhost" and int(port) in self.forwards:
                value = f"localhost:{self.forwards[int(port)]}"
            self.env[name] = value

    def _kubectl(self, args: list[str]) -> None:
        verb = args[0]
        if args[:2] == ["create", "namespace"]:
            assert args[2] == NAMESPACE
        elif args[:3] == ["create", "secret", "generic"]:
            self._create_secret(args[3], args[4:])
        elif args[:2] == ["apply", "-k"]:
            objects = render(ROOT / args[2])
            self.cluster = LocalCluster(objects, self.scratch, self.secrets)
            self.cluster.apply()
        elif args[:2] == ["rollout", "status"]:
            self.the_cluster().rollout_status(args[2].split("/", 1)[1])
        elif verb == "cp":
            pod, _, path = args[2].partition(":")
            self.the_cluster().copy_in(ROOT / args[1], pod, path)
        elif verb == "port-forward":
            service = args[1].removeprefix("svc/")
            local, _, remote = args[2].partition(":")
            self.forwards[int(local)] = self.the_cluster().service_port(service, int(remote))
        elif verb == "scale":
            replicas = int(args[2].removeprefix("--replicas="))
            self.the_cluster().scale(args[1].split("/", 1)[1], replicas)
        elif verb == "exec":
            self._exec(args[1:])
        else:
            raise AssertionError(f"the test cannot follow `kubectl {' '.join(args)}`: make it "
                                 "runnable in tests/deploy/guide.py or mark its block `check`")

    def _create_secret(self, name: str, literals: list[str]) -> None:
        assert name == TOKEN_SECRET
        values = {}
        for literal in literals:
            key, _, value = literal.removeprefix("--from-literal=").partition("=")
            values[key] = secrets.token_hex(32) if value == RANDOM_TOKEN else value
        self.secrets[name] = values

    def _exec(self, args: list[str]) -> None:
        """`exec -i POD -- ARGS < INPUT > OUTPUT`."""
        assert args[0] == "-i"
        pod = args[1]
        separator = args.index("--")
        rest = args[separator + 1:]
        stdin_path = rest[rest.index("<") + 1]
        stdout_path = rest[rest.index(">") + 1]
        argv = rest[:min(rest.index("<"), rest.index(">"))]
        output = self.the_cluster().exec(pod, argv, (ROOT / stdin_path).read_bytes())
        (self.workdir / stdout_path).write_bytes(output)
