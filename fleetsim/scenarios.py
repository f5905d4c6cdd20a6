"""The events a fleet goes through, and their compilation into one timeline of primitive
changes that both engines apply in the same order.

An event is a few actions at given times (seconds from a warm fleet's time 0).  Compiling adds
what follows from them on each gateway: a failed backend is noticed by each running gateway
after its own probe delay (``interval * (fall - 1) + timeout`` plus a uniform phase of up to
one ``interval``: 5-7 s with the defaults), then retired ``serving.retire_grace`` later (7 s);
a gateway that (re)joins starts with every backend healthy (what the real controller does) and
notices the failed ones after its own delay.  What a restarted gateway keeps of its table
history is the event's ``keeps_history`` (``history_variants`` adds the "history kept" copy of
each event with a restart; the engine applies it, see ``Fleet.restart``).  Ticks every ``TICK``
seconds stand for the packets that keep each flow's entry fresh (the exact engine touches every
flow then).
"""

from __future__ import annotations

import heapq
from typing import NamedTuple

import numpy as np

from ryu_app.core.model import HealthCheck
from ryu_app.core.serving import retire_grace

TICK = 5.0
RESTART_DOWNTIME = 10.0
DISAGREEMENT = 4.0  # seconds a gateway wrongly sees a healthy backend down
LONG_DISAGREEMENT = 10.0  # longer than the retire grace (7 s with the defaults)


class Action(NamedTuple):
    time: float
    kind: str  # fail, weight, add, disagree, gw_remove, gw_add, gw_restart
    gateway: int = -1
    backend: int = -1
    value: float = 0.0  # weight, or a duration


class Change(NamedTuple):
    """One primitive change: vm_dead, weight, add, health, retire, ecmp_out, ecmp_in, tick."""

    time: float
    kind: str
    gateway: int = -1
    backend: int = -1
    value: float = 0.0


class Event(NamedTuple):
    name: str
    actions: tuple[Action, ...]
    double: bool = False  # a backend change and an ECMP change together
    keeps_history: bool = False  # a restarted gateway rebuilds its table history (state file)


HISTORY_LOST, HISTORY_KEPT = "lost", "kept"
KEPT_SUFFIX = ", history kept"


def events(gateways: int, backends: int) -> list[Event]:
    """The standard menu: each event alone, then the double changes.  Gateway 0 is the one that
    goes, gateway ``gateways`` (a spare) the one that comes; backend 0 the one that changes,
    backend ``backends`` (a spare) the one added."""
    g, spare, b, new = 0, gateways, 0, backends
    move = Action(1.0, "gw_remove", g)
    restart = Action(1.0, "gw_restart", g, value=RESTART_DOWNTIME)
    return [
        Event("gateway removed", (Action(0.0, "gw_remove", g),)),
        Event("gateway added", (Action(0.0, "gw_add", spare),)),
        Event("gateway restarted (10 s)", (Action(0.0, "gw_restart", g, value=RESTART_DOWNTIME),)),
        Event("backend failure", (Action(0.0, "fail", backend=b),)),
        Event("drain (weight 0)", (Action(0.0, "weight", backend=b, value=0),)),
        Event("backend added", (Action(0.0, "add", backend=new),)),
        Event("weight change (1 -> 2)", (Action(0.0, "weight", backend=b, value=2),)),
        Event("health disagreement 4 s", (Action(0.0, "disagree", 1, b, DISAGREEMENT),)),
        Event("health disagreement 10 s", (Action(0.0, "disagree", 1, b, LONG_DISAGREEMENT),)),
        Event(
            "health disagreement 4 s + move 60 s",
            (Action(0.0, "disagree", 1, b, DISAGREEMENT), Action(60.0, "gw_remove", g)),
            True,
        ),
        Event("drain + move 1 s", (Action(0.0, "weight", backend=b, value=0), move), True),
        Event(
            "drain + move 60 s",
            (Action(0.0, "weight", backend=b, value=0), Action(60.0, "gw_remove", g)),
            True,
        ),
        Event("add + move 1 s", (Action(0.0, "add", backend=new), move), True),
        Event(
            "add + move 60 s",
            (Action(0.0, "add", backend=new), Action(60.0, "gw_remove", g)),
            True,
        ),
        Event("weight change + move 1 s", (Action(0.0, "weight", backend=b, value=2), move), True),
        Event(
            "failure + gateway restart",
            (Action(0.0, "fail", backend=b), Action(1.0, "gw_restart", 1, value=RESTART_DOWNTIME)),
            True,
        ),
        Event(
            "drain + gateway restart", (Action(0.0, "weight", backend=b, value=0), restart), True
        ),
        Event("add + gateway restart", (Action(0.0, "add", backend=new), restart), True),
    ]


def restarts(event: Event) -> bool:
    return any(action.kind == "gw_restart" for action in event.actions)


def history_variants(menu: list[Event], kinds: tuple[str, ...]) -> list[Event]:
    """Each event with a gateway restart as a restart was before issue 16's state-file history
    (``lost``: kept in memory only) and/or as the state file makes it now (``kept``: the
    restarted gateway rebuilds the tables it replaced within the window and the one it stopped
    with), the kept copy right after the lost one; other events once, as they are."""
    chosen: list[Event] = []
    for event in menu:
        if not restarts(event):
            chosen.append(event)
            continue
        if HISTORY_LOST in kinds:
            chosen.append(event)
        if HISTORY_KEPT in kinds:
            chosen.append(event._replace(name=event.name + KEPT_SUFFIX, keeps_history=True))
    return chosen


def probe_delay(rng: np.random.Generator, check: HealthCheck) -> float:
    """From a backend's death to one gateway marking it down: the next probe's phase, then
    ``fall`` failed probes an ``interval`` apart, the last one timing out."""
    return (
        float(rng.uniform(0.0, check.interval)) + (check.fall - 1) * check.interval + check.timeout
    )


def compile_event(
    event: Event,
    live: list[int],
    horizon: float,
    seed: int,
    check: HealthCheck = HealthCheck(),  # noqa: B008
) -> list[Change]:
    """The event's timeline of primitive changes, sorted by time (ties in the order made)."""
    rng = np.random.default_rng(seed)
    grace = retire_grace(check)
    running = set(live)
    epoch: dict[int, int] = {}
    dead: set[int] = set()
    queue: list[tuple[float, int, tuple]] = []
    order = [0]

    def push(time: float, item: tuple) -> None:
        order[0] += 1
        heapq.heappush(queue, (time, order[0], item))

    for action in event.actions:
        push(action.time, ("action", action))
    tick = TICK
    while tick < horizon:
        push(tick, ("tick",))
        tick += TICK
    changes: list[Change] = []
    while queue:
        time, _, item = heapq.heappop(queue)
        if item[0] == "tick":
            changes.append(Change(time, "tick"))
            continue
        if item[0] in ("detect", "retire", "recover"):
            _, gateway, backend, at_epoch = item
            if epoch.get(gateway, 0) != at_epoch or gateway not in running:
                continue
            if item[0] == "detect":
                changes.append(Change(time, "health", gateway, backend, 0.0))
                push(time + grace, ("retire", gateway, backend, at_epoch))
            elif item[0] == "retire":
                changes.append(Change(time, "retire", gateway, backend))
            else:
                changes.append(Change(time, "health", gateway, backend, 1.0))
            continue
        action: Action = item[1]
        kind, gateway, backend = action.kind, action.gateway, action.backend
        if kind == "fail":
            dead.add(backend)
            changes.append(Change(time, "vm_dead", backend=backend))
            for running_gateway in sorted(running):
                at = epoch.get(running_gateway, 0)
                push(time + probe_delay(rng, check), ("detect", running_gateway, backend, at))
        elif kind in ("weight", "add"):
            changes.append(Change(time, kind, backend=backend, value=action.value))
        elif kind == "disagree":
            at = epoch.get(gateway, 0)
            changes.append(Change(time, "health", gateway, backend, 0.0))
            push(time + grace, ("retire", gateway, backend, at))
            push(time + action.value, ("recover", gateway, backend, at))
        elif kind in ("gw_remove", "gw_restart"):
            running.discard(gateway)
            epoch[gateway] = epoch.get(gateway, 0) + 1
            changes.append(Change(time, "ecmp_out", gateway))
            if kind == "gw_restart":
                push(
                    time + action.value, ("action", Action(time + action.value, "gw_add", gateway))
                )
        elif kind == "gw_add":
            running.add(gateway)
            epoch[gateway] = epoch.get(gateway, 0) + 1
            changes.append(Change(time, "ecmp_in", gateway))
            for backend in sorted(dead):
                push(time + probe_delay(rng, check), ("detect", gateway, backend, epoch[gateway]))
        else:
            raise ValueError(f"unknown action {kind!r}")
    return changes


def horizon_of(event: Event, tail: float = 30.0) -> float:
    """Long enough for everything that follows the event's last action (a rejoined gateway's
    probe delay and retire grace) to have happened."""
    last = max(a.time + (a.value if a.kind == "gw_restart" else 0.0) for a in event.actions)
    return last + tail
