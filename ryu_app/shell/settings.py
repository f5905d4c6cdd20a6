"""What the launcher hands to the app: the deployment and which gateway this process is.

The framework instantiates apps itself, with no arguments of ours, so the launcher stores the
validated settings here before it loads the app, and the app reads them once in ``__init__``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ryu_app.core.balancer import SavedIds
from ryu_app.core.model import Gateway
from topology.network import Deployment


@dataclass(frozen=True)
class Settings:
    deployment: Deployment  # VIPs already taken from the state file when there is one
    gateway: Gateway
    state_file: Path
    token: str | None = None  # bearer token REST writes must carry (None: writes are open)
    saved_ids: SavedIds | None = None  # the state file's backend ids (None: none saved)
    vips_saved: bool = False  # the VIPs came from the state file (REST changes were saved)


_current: Settings | None = None


def configure(settings: Settings) -> None:
    global _current
    _current = settings


def current() -> Settings:
    if _current is None:
        raise RuntimeError(
            "ryu_app.shell.settings.configure() was not called (use lockstep-gateway)"
        )
    return _current
