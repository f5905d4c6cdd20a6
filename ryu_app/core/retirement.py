"""Backends that left service, kept until their grace ends (``serving.retire_grace``).

A backend marked DOWN (and not served in panic) takes no new flow at once, but its established
flows keep their rules and flow-table entries for its grace: if it comes back within it (a
flap), nothing moved.  If it is still out of service when the grace ends, the gateway retires
it (``Balancer.retire``: the entries swept, its rules deleted by cookie).  Pure: every call
takes ``now``.
"""

from __future__ import annotations

import heapq
import itertools
from typing import TYPE_CHECKING

from ryu_app.core.effects import Effects
from ryu_app.core.serving import retire_grace

if TYPE_CHECKING:
    from ryu_app.core.balancer import Balancer, VipState


class Retirements:
    """One entry per (VIP, backend) out of service: when its grace ends and the backend id it
    had then (a later change of the backend gives it another id, which is not retired).
    Leaving service again restarts the grace.  A heap of due times (entries replaced or
    cancelled are skipped when they surface), so a tick looks only at the ones due."""

    def __init__(self):
        self._due: dict[tuple[str, str], tuple[float, int]] = {}
        self._heap: list[tuple[float, int, tuple[str, str]]] = []
        self._tie = itertools.count()

    def follow(self, state: VipState, out_before: set[str], now: float) -> Effects:
        """After a change of ``state``'s VIP (``out_before``: its ``out_of_service()`` until
        then): plan the grace of the backends that left service, cancel that of those back in
        it.  (A change of panic is the gateway's to tell, where the serving set changes.)"""
        effects = Effects()
        out_now = state.out_of_service()
        name, grace = state.vip.name, retire_grace(state.vip.health)
        for backend in out_now - out_before:
            self._plan(name, backend, now + grace, state.backend_ids[backend])
        for backend in out_before - out_now:
            planned = self._due.pop((name, backend), None)
            # (Not for a backend removed or changed: its old rules went with the change; nor
            # for one that panic serves again: it is still DOWN.)
            if (
                planned is not None
                and state.backend_ids.get(backend) == planned[1]
                and backend in state.healthy
            ):
                effects.notices.append(
                    f"backend {backend} of VIP {name} is back within its {grace:g} s grace: "
                    "its flows kept their rules"
                )
        return effects

    def _plan(self, vip: str, backend: str, at: float, backend_id: int) -> None:
        self._due[(vip, backend)] = (at, backend_id)
        heapq.heappush(self._heap, (at, next(self._tie), (vip, backend)))

    def forget_vip(self, vip: str) -> None:
        for key in [key for key in self._due if key[0] == vip]:
            del self._due[key]

    def retire_due(self, balancer: Balancer, now: float) -> list[tuple[str, str, int]]:
        """Retire the backends whose grace ended by ``now`` and that are still out of service
        with the same id: (VIP, backend, the id retired), whose rules are to be deleted."""
        retired = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            at, _, key = heapq.heappop(heap)
            planned = self._due.get(key)
            if planned is None or planned[0] != at:
                continue  # cancelled, or planned again since
            del self._due[key]
            if balancer.retire(key[0], key[1], planned[1]):
                retired.append((key[0], key[1], planned[1]))
        return retired

    def __len__(self) -> int:
        return len(self._due)
