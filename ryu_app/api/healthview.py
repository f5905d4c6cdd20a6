"""``GET /v1/health``: this gateway's own view of every backend (its last probe, each VIP's
panic) and of its own overload.  A snapshot is copied on the controller's loop, rendered on the
REST thread (as every view: ``views``' docstring says why).  Framework-free.
"""

from __future__ import annotations

from typing import NamedTuple

from ryu_app.api import pacing
from ryu_app.api.views import VipView, vip_views
from ryu_app.core.gateway import GatewayCore
from ryu_app.core.health import HealthView
from ryu_app.core.model import Vip
from ryu_app.core.overload import OverloadView


class HealthSnapshot(NamedTuple):
    vips: tuple[Vip, ...]
    states: dict[str, VipView]
    probes: dict[tuple[str, str], HealthView]  # (VIP, backend) -> its probes' view
    overload: OverloadView


def health_snapshot(core: GatewayCore, vips: tuple[Vip, ...]) -> HealthSnapshot:
    return HealthSnapshot(vips, vip_views(core), core.prober.views.copy(), core.monitor.view())


def render_health(snapshot: HealthSnapshot, gateway: str, now: float, wall: float) -> dict:
    """This gateway's own view of every backend, with its last probe (``now``: the clock the
    core runs on, ``wall``: the same moment in wall-clock time), of each VIP's panic, and of
    its own overload (``overload.LoadMonitor``)."""
    view: dict[str, list] = {}
    for vip in snapshot.vips:
        pacing.checkpoint()
        state = snapshot.states.get(vip.name)
        healthy = state.healthy if state else frozenset()
        view[vip.name] = pacing.PacedRows(
            {
                "backend": backend.name,
                "healthy": backend.name in healthy,
                "weight": backend.weight,
                **_probe_view(snapshot.probes.get((vip.name, backend.name)), now, wall),
            }
            for backend in vip.backends
        )
    states = snapshot.states
    panic = {
        vip.name: bool(states.get(vip.name) and states[vip.name].panic) for vip in snapshot.vips
    }
    overload = _overload_view(snapshot.overload, now, wall)
    return {"gateway": gateway, "vips": view, "panic": panic, "overload": overload}


def _overload_view(load: OverloadView, now: float, wall: float) -> dict:
    rtt = load.probe_rtt_share
    return {
        "overloaded": load.overloaded,
        "since": None if load.since is None else round(wall - (now - load.since), 3),
        "reasons": list(load.reasons),
        "episodes": load.episodes,
        "packet_in_rate": round(load.packet_in_rate, 1),
        "probe_rtt_share_of_timeout": None if rtt is None else round(rtt, 3),
        "loop_lag": round(load.loop_lag, 4),
        "guard_drops": load.guard_drops,
        "switch_syn_rate": round(load.switch_syn_rate, 1),
        "silent_backends": load.silent_backends,
        "answering_backends": load.answering_backends,
        "inconclusive_probes": load.inconclusive,
    }


def _probe_view(health: HealthView | None, now: float, wall: float) -> dict:
    if health is None:  # a static backend (``health: {type: none}``), or a VIP just removed
        return {"probing": False}
    at = health.last_result_at
    if health.last_inconclusive:
        result = "inconclusive"  # no answer while the gateway was overloaded
    else:
        result = None if health.last_result is None else ("ok" if health.last_result else "fail")
    return {
        "probing": True,
        "state": health.state,
        "since": round(wall - (now - health.changed_at), 3),
        "last_result": result,
        "last_probe_at": None if at is None else round(wall - (now - at), 3),
        "last_detail": health.last_detail,
    }
