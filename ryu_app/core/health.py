"""Health state machine, one per (VIP, backend), with HAProxy's meanings:

- ``interval``: seconds between the starts of two probes;
- ``timeout``: seconds a probe may take; no answer by then is a failure;
- ``rise``: consecutive successes that bring a DOWN backend UP;
- ``fall``: consecutive failures that take an UP backend DOWN.

A backend starts UP by default (HAProxy's default too).  That matters here: a controller that
restarts must pick the same backends as its peers at once, and its peers see all healthy
backends as UP; starting DOWN would make the restarted gateway disagree for ``rise * interval``.

Pure: it never probes and never reads a clock.  The prober (``prober.Prober``) schedules the
probes from ``next_probe_at``, marks each one started (``start_probe``, which gives its
deadline) and reports its result (``record(ok, now)``; a probe not answered by its deadline is
a failure, unless the gateway was overloaded: then the prober calls it ``inconclusive``, which
counts neither way, see ``overload``); a transition comes back as a value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

from ryu_app.core.model import HealthCheck, policy_problem

UP = "up"
DOWN = "down"


@dataclass(frozen=True)
class HealthPolicy:
    """The timings of a VIP's ``HealthCheck``, all the state machine needs (a change of the
    check's path or expected status keeps the backends' streaks); the same defaults."""

    interval: float = HealthCheck.interval
    timeout: float = HealthCheck.timeout
    rise: int = HealthCheck.rise
    fall: int = HealthCheck.fall

    def __post_init__(self):
        problem = policy_problem(self.interval, self.timeout, self.rise, self.fall)
        if problem:
            raise ValueError(problem)


class HealthView(NamedTuple):
    """What an operator sees of one backend's health: an immutable copy, so that a view of
    thousands of backends is a copy of references, not of each state's fields."""

    state: str
    changed_at: float
    last_result: bool | None
    last_result_at: float | None
    last_detail: str
    last_inconclusive: bool = False  # the last probe told nothing (``record_inconclusive``)


@dataclass(frozen=True)
class Transition:
    state: str  # UP or DOWN: the new state
    at: float
    reason: str


class HealthState:
    """Consecutive-result counting with hysteresis, fed by probe results."""

    __slots__ = (
        "policy",
        "state",
        "_streak",
        "next_probe_at",
        "probe_started_at",
        "last_result",
        "last_result_at",
        "last_detail",
        "last_inconclusive",
        "changed_at",
    )

    def __init__(self, policy: HealthPolicy, now: float, initial: str = UP, phase: float = 0.0):
        if initial not in (UP, DOWN):
            raise ValueError(f"initial state must be {UP!r} or {DOWN!r}, got {initial!r}")
        self.policy = policy
        self.state = initial
        self._streak = 0  # consecutive results that argue against the current state
        # ``phase`` (0..1, chosen by the caller, e.g. at random) spreads the first probes of
        # many backends over one interval instead of firing them all at once.
        phase = min(max(phase, 0.0), 1.0) if math.isfinite(phase) else 0.0
        self.next_probe_at = now + policy.interval * phase
        self.probe_started_at: float | None = None
        self.last_result: bool | None = None
        self.last_result_at: float | None = None
        self.last_detail = ""
        self.last_inconclusive = False
        self.changed_at = now

    @property
    def is_up(self) -> bool:
        return self.state == UP

    def view(self) -> HealthView:
        return HealthView(
            self.state,
            self.changed_at,
            self.last_result,
            self.last_result_at,
            self.last_detail,
            self.last_inconclusive,
        )

    def start_probe(self, now: float) -> float:
        """Mark a probe as started; returns its deadline (now + timeout)."""
        self.probe_started_at = now
        # Schedule from the planned time, not from ``now``, so a late loop does not drift.
        self.next_probe_at = max(self.next_probe_at + self.policy.interval, now)
        return now + self.policy.timeout

    def abandon_probe(self) -> None:
        """The probe in flight will never be answered and counts for nothing."""
        self.probe_started_at = None

    def record(self, ok: bool, now: float, detail: str = "") -> Transition | None:
        """Feed one probe result; returns the transition it caused, if any."""
        started = self.probe_started_at
        if ok and started is not None and now - started > self.policy.timeout:
            ok, detail = False, f"answered after the {self.policy.timeout}s timeout"
        self.probe_started_at = None
        self.last_result = ok
        self.last_result_at = now
        self.last_detail = detail
        self.last_inconclusive = False
        if ok == self.is_up:
            self._streak = 0
            return None
        self._streak += 1
        needed = self.policy.rise if ok else self.policy.fall
        if self._streak < needed:
            return None
        self._streak = 0
        self.state = UP if ok else DOWN
        self.changed_at = now
        return Transition(self.state, now, detail or ("probe succeeded" if ok else "probe failed"))

    def record_inconclusive(self, now: float, detail: str) -> None:
        """A probe that told nothing about the backend (no answer in time while the gateway
        was overloaded): it ends, and neither streak moves (a failure streak is not reset,
        so a VM that really died still goes down once probes count again)."""
        self.probe_started_at = None
        self.last_result = None
        self.last_result_at = now
        self.last_detail = detail
        self.last_inconclusive = True
