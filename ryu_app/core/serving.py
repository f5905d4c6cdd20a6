"""Which backends a VIP's new flows are hashed over, and how long a backend that left that set
keeps its established flows' rules.

The serving set (``serving``) is the one rule for it, used by the balancer (the table it asks
for), ``GET /v1/lookup`` (which reads that table) and ``lockstep lookup`` (which builds it):

- normally: the healthy backends of weight > 0;
- in **panic** (Envoy's ``healthy_panic_threshold``, AWS NLB's fail-open): when fewer than
  ``health.panic_threshold`` percent of the VIP's backends of weight > 0 are healthy, the health
  checks are no longer trusted to tell which ones are alive (more likely the checks, or what
  they travel through, are failing than most VMs at once), and new flows are hashed over *all*
  backends of weight > 0.  That set depends on the configuration alone, not on any gateway's
  view, so every gateway in panic builds the same table without talking to the others.

A backend that leaves service (marked DOWN and not served in panic) takes no new flow at once,
but its per-flow rules and flow-table entries stay for ``retire_grace``: a backend that comes
back within it (a flap: a lost probe or two under load) moved nothing.  After it, the
gateway retires the backend (``retirement.Retirements``, ``Balancer.retire``: its rules
deleted, its entries swept).  Pure.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import NamedTuple

from ryu_app.core.model import HealthCheck, Vip

# The longest a DOWN backend's rules and entries are kept.  A dead VM's connections are broken
# wherever their packets go, so keeping their rules costs only switch rules and memory; this
# caps that for slow checks (an interval of minutes).
RETIRE_GRACE_MAX = 30.0


class Serving(NamedTuple):
    backends: tuple[tuple[str, int], ...]  # (name, weight) new flows are hashed over
    panic: bool


def in_panic(healthy: int, configured: int, threshold: int) -> bool:
    """Fewer than ``threshold`` percent of ``configured`` backends are healthy (0: never)."""
    return threshold > 0 and configured > 0 and healthy * 100 < threshold * configured


def serving(vip: Vip, healthy: Collection[str]) -> Serving:
    """The backends ``vip``'s new flows go to when ``healthy`` is this gateway's healthy set
    (see the module's docstring)."""
    backends = ((b.name, b.weight) for b in vip.backends)
    return serving_backends(backends, healthy, vip.health.panic_threshold)


def serving_backends(
    backends: Iterable[tuple[str, int]], healthy: Collection[str], panic_threshold: int
) -> Serving:
    """``serving`` from (name, weight) pairs (``lockstep lookup`` has no ``Vip``).  Weight-0
    backends never take new flows."""
    weighted = [(name, weight) for name, weight in backends if weight > 0]
    up = [(name, weight) for name, weight in weighted if name in healthy]
    if in_panic(len(up), len(weighted), panic_threshold):
        return Serving(tuple(weighted), True)
    return Serving(tuple(up), False)


def retire_grace(health: HealthCheck) -> float:
    """Seconds a backend that left service keeps its flows' rules and entries.

    ``rise x interval + timeout`` is the soonest a backend marked DOWN can be UP again (``rise``
    successes, probes ``interval`` apart, the last answered within ``timeout``): a shorter grace
    could never spare a flap, a longer one only keeps a dead VM's (already broken) flows'
    rules longer.  At most ``RETIRE_GRACE_MAX``."""
    return min(health.rise * health.interval + health.timeout, RETIRE_GRACE_MAX)


def panic_line(vip: Vip, healthy: Collection[str], panic: bool) -> str:
    """The warning logged when ``vip`` enters (``panic``) or leaves panic."""
    names = [b.name for b in vip.backends if b.weight > 0]
    up, threshold = sum(name in healthy for name in names), vip.health.panic_threshold
    if panic:
        return (
            f"VIP {vip.name} in panic: {up} of {len(names)} serving backends healthy, under "
            f"its panic_threshold of {threshold}%: new flows are hashed over all {len(names)}"
        )
    return (
        f"VIP {vip.name} out of panic: {up} of {len(names)} serving backends healthy "
        f"(panic_threshold {threshold}%): new flows go to the healthy ones again"
    )
