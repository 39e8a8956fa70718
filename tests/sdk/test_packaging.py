"""What the SDK depends on and ships: only the generated stubs, the contract package and
grpcio (never a service package or the server runtime), and a py.typed marker."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import resources

import stablenew.sdk

ALLOWED = ("stablenew.sdk", "stablenew.contract", "stablenew.v1")


def test_importing_the_sdk_loads_no_service_and_no_runtime() -> None:
    probe = ("import json, sys, stablenew.sdk; "
             "print(json.dumps(sorted(m for m in sys.modules if m.startswith('stablenew.'))))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True, timeout=60)
    loaded = json.loads(done.stdout)
    assert "stablenew.sdk.aio" in loaded
    assert [m for m in loaded if not m.startswith(ALLOWED)] == []


def test_the_package_is_marked_typed() -> None:
    assert (resources.files(stablenew.sdk) / "py.typed").is_file()


def test_every_exported_name_exists_and_is_documented() -> None:
    for name in stablenew.sdk.__all__:
        value = getattr(stablenew.sdk, name)
        if callable(value) and getattr(value, "__module__", "").startswith("stablenew.sdk"):
            assert value.__doc__, name
