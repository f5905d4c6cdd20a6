"""The one place that imports the OpenFlow framework: os-ken (``os_ken``), or classic Ryu 4.34
(``ryu``) where a user has it.  Both have the same API under different package names.

Set ``LOCKSTEP_FRAMEWORK=ryu`` to prefer Ryu when both are installed.
"""

from __future__ import annotations

import importlib
import os

_ORDER = ("ryu", "os_ken") if os.environ.get("LOCKSTEP_FRAMEWORK") == "ryu" else ("os_ken", "ryu")


def _ryu_on_python311() -> None:
    """Let classic Ryu 4.34 import on Python 3.11.

    The eventlet of Ryu's time (0.30.x) crashes on 3.11; the newer eventlet a Ryu install needs
    there (0.33.x, see README) dropped ``eventlet.wsgi.ALREADY_HANDLED``, which ``ryu.app.wsgi``
    (imported by ``app_manager``) reads at import time and only ever returns from a WebSocket
    response, which Lockstep does not use. Any sentinel object will do; it must exist before
    ``ryu`` is imported.
    """
    try:
        import eventlet.wsgi  # noqa: PLC0415 - only when Ryu is wanted
    except ImportError:
        return  # no eventlet: importing ryu will fail and say why
    if not hasattr(eventlet.wsgi, "ALREADY_HANDLED"):
        eventlet.wsgi.ALREADY_HANDLED = object()


def _framework() -> str:
    for name in _ORDER:
        if name == "ryu":
            _ryu_on_python311()
        try:
            importlib.import_module(f"{name}.ofproto.ofproto_v1_3_parser")
        except ImportError:
            continue
        return name
    raise ImportError("neither os-ken (pip install os-ken) nor ryu is installed")


FRAMEWORK = _framework()

if FRAMEWORK == "ryu":
    # What ryu-manager does first, and our launcher replaces it: Ryu's hub is eventlet, so
    # blocking socket/select/time calls in greenthreads (a server's serve_forever spawned with
    # hub.spawn) must be green or they stall the OpenFlow loop. Native threads stay native.
    importlib.import_module("ryu.lib.hub").patch(thread=False)

ofproto_v1_3 = importlib.import_module(f"{FRAMEWORK}.ofproto.ofproto_v1_3")
# Green threads (classic Ryu, or os-ken with OSKEN_HUB_TYPE=eventlet) or native OS threads.
GREEN_HUB = importlib.import_module(f"{FRAMEWORK}.lib.hub").HUB_TYPE == "eventlet"
ofproto_v1_3_parser = importlib.import_module(f"{FRAMEWORK}.ofproto.ofproto_v1_3_parser")


def app_base_class():
    """The application base class: ``OSKenApp`` in os-ken, ``RyuApp`` in Ryu."""
    app_manager = load("base.app_manager")
    return getattr(app_manager, "OSKenApp", None) or app_manager.RyuApp


def load(module: str):
    """``load('base.app_manager')`` -> ``os_ken.base.app_manager`` (or ``ryu.base...``)."""
    return importlib.import_module(f"{FRAMEWORK}.{module}")


def guard_openflow_listener() -> None:
    """Give the framework's OpenFlow listener an accept loop that outlives a shortage.

    Its ``StreamServer.serve_forever`` is ``while True: accept(); spawn()`` with no guard: one
    ``EMFILE`` ended it, and with os-ken's native hub nobody noticed (the thread's exception is
    swallowed), so the controller never saw a switch again.  ``controller.controller`` imports
    the class by name (``from ...lib.hub import StreamServer``) when its server loop starts: the
    module attribute is what to replace, before the apps start.
    """
    from ryu_app.shell import supervision  # noqa: PLC0415 - compat itself imports nothing of ours

    load("base.app_manager")  # controller.controller cannot be imported before it
    controller = load("controller.controller")
    if not getattr(controller.StreamServer, "guarded", False):
        controller.StreamServer = supervision.guarded_stream_server(load("lib.hub"))
