"""What the window depends on: the SDK, the contract package and the generated stubs, never a
service, the server runtime or the CLI (only `stablenew gui`'s command module reaches the CLI,
for --local); and the CLI does not load Tk until `stablenew gui` runs."""

from __future__ import annotations

import json
import subprocess
import sys

ALLOWED = ("stablenew.gui", "stablenew.sdk", "stablenew.contract", "stablenew.v1")


def loaded_after(statement: str) -> list[str]:
    """The modules loaded in a fresh interpreter after `statement`."""
    probe = (f"import json, sys; {statement}; "
             "print(json.dumps(sorted(m for m in sys.modules)))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True, timeout=60)
    modules: list[str] = json.loads(done.stdout)
    return modules


def test_the_window_loads_no_service_runtime_or_cli() -> None:
    loaded = loaded_after("import stablenew.gui.app")
    ours = [module for module in loaded if module.startswith("stablenew.")]
    assert "stablenew.gui.window_model" in ours and "tkinter" in loaded
    assert [module for module in ours if not module.startswith(ALLOWED)] == []


def test_the_cli_loads_tk_only_for_the_window() -> None:
    loaded = loaded_after("import stablenew.cli.main")
    assert "stablenew.gui.command" in loaded
    assert "tkinter" not in loaded and "stablenew.gui.app" not in loaded
