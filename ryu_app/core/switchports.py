"""The gateway switch's ports as the controller knows them: the port map (names -> numbers,
from the port description and port-status messages), the two ports of the pipeline resolved
from it, and what a change of them is called in the log.  Pure.
"""

from __future__ import annotations

from ryu_app.core import openflow as of
from ryu_app.core.pipeline import Ports

PORT_EVENTS = {of.OFPPR_ADD: "added", of.OFPPR_DELETE: "deleted"}  # else: "changed"


def resolve(numbers: dict[str, int], uplink: str, tunnel: str) -> tuple[Ports | None, list[str]]:
    """The pipeline's ports (None while one is missing) and the names of those missing."""
    missing = [name for name in (uplink, tunnel) if name not in numbers]
    return (None if missing else Ports(numbers[uplink], numbers[tunnel])), missing


def after_status(numbers: dict[str, int], reason: int, name: str, number: int) -> dict[str, int]:
    """The port map after a port-status message (``reason``: ``openflow.OFPPR_*``): a port
    renamed or renumbered loses its old entry; a deleted one is gone."""
    after = {n: p for n, p in numbers.items() if p != number and n != name}
    if reason != of.OFPPR_DELETE:
        after[name] = number
    return after


def change_notice(
    reason: int, name: str, number: int, before: Ports | None, after: Ports | None, missing
) -> str:
    """What a port-status message that changed the pipeline's ports did, in words."""
    event = f"port {name} ({number}) {PORT_EVENTS.get(reason, 'changed')}"
    if after is None:
        return f"{event}: the switch lacks {', '.join(missing)}: pipeline removed, probing paused"
    again = "re" if before else ""
    return f"{event}: pipeline {again}installed (uplink {after.uplink}, tunnel {after.tunnel})"
