"""The pure core imports without the OpenFlow framework: importing ``ryu_app.core`` and every
module under it loads no ``os_ken`` (or classic ``ryu``) module.  Checked in a fresh
interpreter, since this one has os-ken loaded by other tests."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import ryu_app.core

ROOT = Path(__file__).resolve().parents[3]
FRAMEWORKS = ("os_ken", "ryu")

PROGRAM = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
loaded = [m for m in sys.modules if m.split(".")[0] in {frameworks!r}]
print(json.dumps(sorted(loaded)))
"""


def core_modules() -> list[str]:
    return ["ryu_app.core"] + [
        info.name for info in pkgutil.walk_packages(ryu_app.core.__path__, "ryu_app.core.")
    ]


def framework_modules_loaded_by(modules: list[str]) -> list[str]:
    program = PROGRAM.format(frameworks=set(FRAMEWORKS))
    result = subprocess.run(
        [sys.executable, "-c", program, *modules],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(result.stdout)


def test_the_core_loads_no_framework_module():
    modules = core_modules()
    assert "ryu_app.core.gateway" in modules and "ryu_app.core.openflow" in modules
    assert framework_modules_loaded_by(modules) == []


def test_the_check_sees_the_framework_when_it_is_loaded():
    # The shell's compat module loads os-ken (or Ryu): the check above would see it.
    assert framework_modules_loaded_by(["ryu_app.shell.compat"]) != []
