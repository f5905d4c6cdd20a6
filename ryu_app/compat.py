"""The one place that imports the OpenFlow framework: os-ken (``os_ken``), or classic Ryu 4.34
(``ryu``) where a user has it.  Both have the same API under different package names.

Set ``LOCKSTEP_FRAMEWORK=ryu`` to prefer Ryu when both are installed.
"""

from __future__ import annotations

import importlib
import os

_ORDER = ("ryu", "os_ken") if os.environ.get("LOCKSTEP_FRAMEWORK") == "ryu" else ("os_ken", "ryu")


def _framework() -> str:
    for name in _ORDER:
        try:
            importlib.import_module(f"{name}.ofproto.ofproto_v1_3_parser")
        except ImportError:
            continue
        return name
    raise ImportError("neither os-ken (pip install os-ken) nor ryu is installed")


FRAMEWORK = _framework()

ofproto_v1_3 = importlib.import_module(f"{FRAMEWORK}.ofproto.ofproto_v1_3")
ofproto_v1_3_parser = importlib.import_module(f"{FRAMEWORK}.ofproto.ofproto_v1_3_parser")


def app_base_class():
    """The application base class: ``OSKenApp`` in os-ken, ``RyuApp`` in Ryu."""
    app_manager = load("base.app_manager")
    return getattr(app_manager, "OSKenApp", None) or app_manager.RyuApp


def load(module: str):
    """``load('base.app_manager')`` -> ``os_ken.base.app_manager`` (or ``ryu.base...``)."""
    return importlib.import_module(f"{FRAMEWORK}.{module}")
