"""What the launcher hands to the app: the deployment and which gateway this process is.

The framework instantiates apps itself, with no arguments of ours, so the launcher stores the
validated settings here before it loads the app, and the app reads them once in ``__init__``.
"""

from __future__ import annotations

from topology.deployment import Deployment, Gateway

_current: tuple[Deployment, Gateway] | None = None


def configure(deployment: Deployment, gateway: Gateway) -> None:
    global _current
    _current = (deployment, gateway)


def current() -> tuple[Deployment, Gateway]:
    if _current is None:
        raise RuntimeError("ryu_app.settings.configure() was not called (use lockstep-gateway)")
    return _current
