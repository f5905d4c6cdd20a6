"""What an operator sees of the flood guard and of the switch's errors: in ``/v1/status``
(``flood_guard``, ``switch_errors``) and in ``/metrics``.  A snapshot is copied on the
controller's loop; rendering happens on the REST thread (as every view, ``views``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ryu_app.core.floodguard import MODES, PROBE_METER
from ryu_app.core.gateway import GatewayCore


class GuardSnapshot(NamedTuple):
    mode: str  # floodguard.SWITCH, CONTROLLER or OFF
    rate: int
    burst: int
    dropped: dict[int, int]  # meter id -> packets the switch dropped
    vip_meters: dict[str, int]  # VIP -> its own meter
    clients_dropped_in_switch: int  # by every meter but the probes', deleted ones included
    controller_dropped: int
    switch_errors: dict[tuple[int, int], int]  # (type, code) -> count


def guard_snapshot(core: GatewayCore) -> GuardSnapshot:
    guard = core.guard
    return GuardSnapshot(
        guard.mode,
        guard.config.rate,
        guard.config.burst,
        dict(guard.counters.switch_dropped),
        dict(guard.vip_meters),
        guard.counters.clients_dropped_in_switch,
        guard.counters.controller_dropped,
        dict(core.counters.switch_errors),
    )


def render_guard(snapshot: GuardSnapshot) -> dict:
    """``/v1/status``'s ``flood_guard``: where it runs, its budget, what it dropped."""
    return {
        "mode": snapshot.mode,
        "rate": snapshot.rate,
        "burst": snapshot.burst,
        "dropped_in_switch": snapshot.clients_dropped_in_switch,
        "dropped_in_controller": snapshot.controller_dropped,
        "probe_answers_dropped": snapshot.dropped.get(PROBE_METER, 0),
        "vip_budgets": {
            name: snapshot.dropped.get(meter, 0)
            for name, meter in sorted(snapshot.vip_meters.items())
        },
    }


class GuardCollector:
    """The flood guard's and the switch's error counters for ``/metrics``; the series are
    bounded: one per mode, per place of drop, per (type, code) the core counts (at most 65)."""

    def __init__(self, snapshot: GuardSnapshot):
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snapshot = self.snapshot
        mode = GaugeMetricFamily(
            "lockstep_flood_guard_mode",
            "1 for where the flood guard runs: switch (meters), controller (no meters), off.",
            labels=("mode",),
        )
        for name in MODES:
            mode.add_metric((name,), int(snapshot.mode == name))
        yield mode
        yield GaugeMetricFamily(
            "lockstep_flood_guard_rate",
            "New connections per second the gateway lets through to its controller.",
            value=snapshot.rate,
        )
        dropped = CounterMetricFamily(
            "lockstep_flood_guard_dropped",
            "Packets of new connections the flood guard dropped, by where it dropped them.",
            labels=("where",),
        )
        dropped.add_metric(("switch",), snapshot.clients_dropped_in_switch)
        dropped.add_metric(("controller",), snapshot.controller_dropped)
        yield dropped
        yield CounterMetricFamily(
            "lockstep_probe_answers_dropped",
            "Answers to health probes the switch's probe meter dropped (should stay 0).",
            value=snapshot.dropped.get(PROBE_METER, 0),
        )
        errors = CounterMetricFamily(
            "lockstep_switch_errors",
            "Messages the switch refused, by OpenFlow error type and code (-1: other kinds).",
            labels=("type", "code"),
        )
        for (kind, code), count in sorted(snapshot.switch_errors.items()):
            errors.add_metric((str(kind), str(code)), count)
        yield errors
