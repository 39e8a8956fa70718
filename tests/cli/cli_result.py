"""What a CLI test checks on every command (exit code, output, one-line errors), and the packs
the CLI tests run."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from tests.bundle_service.harness import preset, write_pack

# A .txt pack of two rows; its sibling .json only lowers the steps, to keep the tests quick (a
# plain .txt pack runs as written: tests/e2e/test_journey.py).
SCENES = "scenes"
SCENES_ROWS = ("a lighthouse on a cliff at dusk", "a fox in fresh snow")
SCENES_DEFAULTS = {"pack_data": {"name": "Scenes"}, "preset_data": preset(steps=4)}
# A .json pack with its own rows and a 2 x 2 matrix: 4 jobs from one row, 1 from the other.
MATRIX = "knights"
MATRIX_PACK = {
    "pack_data": {
        "name": "Knights",
        "slots": [{"text": "a [[who]] at the [[where]]", "negative": "blurry"},
                  {"text": "an empty throne room"}],
        "matrix": {"enabled": True, "mode": "fanout",
                   "slots": [{"name": "who", "values": ["knight", "squire"]},
                             {"name": "where", "values": ["gate", "keep"]}]},
    },
    "preset_data": preset(steps=4),
}
# A .json pack detailing faces, which must be found, then hands, which may be missing.
DETAILED = "detailed"
DETAILED_PACK = {
    "pack_data": {"name": "Detailed", "slots": [{"text": "a knight waving at the gate"}]},
    "preset_data": preset(stages=("txt2img", "adetailer"), steps=4) | {"adetailer": {
        "adetailer_model": "face_yolov8n.pt", "adetailer_no_detection": "error",
        "passes": [{"model": "hand_yolov8n.pt", "no_detection": "allow"}]}},
}
# A pack whose second row uses a token nothing defines: that row makes no job.
BROKEN_ROW = "brokenrow"
BROKEN_ROW_TEXT = "a quiet harbour\n\na [[missing]] harbour\n"
# A pack that cannot be parsed at all.
UNPARSEABLE = "unparseable"


def write_test_packs(packs_dir: Path) -> None:
    """The CLI tests' packs, in the library of the deployment."""
    packs_dir.mkdir(parents=True, exist_ok=True)
    write_pack(packs_dir, f"{SCENES}.txt", "\n\n".join(SCENES_ROWS) + "\n")
    write_pack(packs_dir, f"{SCENES}.json", SCENES_DEFAULTS)
    write_pack(packs_dir, f"{MATRIX}.json", MATRIX_PACK)
    write_pack(packs_dir, f"{DETAILED}.json", DETAILED_PACK)
    write_pack(packs_dir, f"{BROKEN_ROW}.txt", BROKEN_ROW_TEXT)
    write_pack(packs_dir, f"{BROKEN_ROW}.json", SCENES_DEFAULTS)
    write_pack(packs_dir, f"{UNPARSEABLE}.json", "{not json")


@dataclass
class Result:
    """One command's outcome."""

    arguments: list[str]
    code: int
    out: str
    err: str

    def __str__(self) -> str:
        return (f"stablenew {' '.join(self.arguments)} -> exit {self.code}\n"
                f"stdout:\n{self.out}\nstderr:\n{self.err}")

    def ok(self) -> Self:
        """Exit 0, no traceback."""
        assert self.code == 0, self
        assert "Traceback" not in self.out + self.err, self
        return self

    def fails(self, code: int, *words: str) -> str:
        """Exit `code` with exactly one error line on standard error, `stablenew: ...`,
        holding every one of `words`; that line."""
        assert self.code == code, self
        assert "Traceback" not in self.out + self.err, self
        lines = [line for line in self.err.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("stablenew: ")
                  and not line.startswith("stablenew: warning:")]
        assert len(errors) == 1, self
        for word in words:
            assert word in errors[0], f"{word!r} missing\n{self}"
        return errors[0]

    def json(self) -> Any:
        """Standard output as one JSON document."""
        return json.loads(self.out)

    def json_lines(self) -> list[Any]:
        """Standard output as JSON lines."""
        return [json.loads(line) for line in self.out.splitlines() if line.strip()]
