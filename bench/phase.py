"""What a phase of load yields and how one ends early: ``PhaseResult`` (the figures of one run of
the fake switch, ``FakeSwitch.run``), ``percentile`` (the nearest rank every report uses), and
``ControllerError`` (the controller closed the connection, stopped answering, or never got
ready).  The fake switch produces these; the phases (``bench_newflow``, ``rebuild``,
``restload``) and the reports read them.  Standard library only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


class ControllerError(RuntimeError):
    """The controller closed the connection, stopped answering, or never got ready."""


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest rank of sorted ``values``; None if there are none."""
    if not values:
        return None
    return values[max(0, math.ceil(fraction * len(values)) - 1)]


@dataclass
class PhaseResult:
    flows_per_s: float
    offered_per_s: float  # open loop: the rate asked for; closed loop: 0
    latencies_ms: list[float]  # sorted; flows sent in the measured interval
    incomplete: int  # flows sent in the measured interval that never completed
    no_flow_mod: int  # ... of which the packet-out came but no flow-mod
    # open loop: sends skipped because the switch had its most outstanding
    # (``fakeswitch.MAX_OUTSTANDING``)
    not_offered: int
    switch_cpu: float  # cores busy in the measured interval: this process
    controller_cpu: float  # ... the controller
    other_cpu: float  # ... everything else on the machine (another load skews the figures)
    # (send time, latency in ms) of each flow in ``latencies_ms``, in completion order; only
    # when asked for (``run(timeline=True)``): to pick the flows sent in some window.
    timeline: list[tuple[float, float]] = field(default_factory=list)

    def percentile_ms(self, fraction: float) -> float | None:
        return percentile(self.latencies_ms, fraction)
