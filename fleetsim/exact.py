"""The exact engine: the same event on the same population, with one real
``ryu_app.core.balancer.Balancer`` per gateway (``set_vip``, ``set_health``, ``rebuild_now``,
``retire``, and ``pick`` with real ``Flow`` s: a SYN when a flow starts, non-SYN segments
after).  Slow (a Python call per packet), so for small fleets; a unit test holds the vectorized
engine's broken counts, reason by reason, equal to this one's.

Packets: a flow's SYN at its start; at each ECMP change every open flow sends a segment at its
old gateway (its last packet there: the entry's idle timer starts then) and one at its new
gateway; at a retirement, every open flow sends one; and every ``FRESH`` seconds every open
flow sends one (the packets that keep its entry fresh, as the vectorized engine assumes).
"""

from __future__ import annotations

import numpy as np

from fleetsim import outcome
from fleetsim.ecmp import Ecmp
from fleetsim.engine import Settings
from fleetsim.fleet import backend_name
from fleetsim.outcome import ALIVE, BROKEN, Outcome, classify, count_reasons
from fleetsim.population import VIP_PORT, Population
from fleetsim.rule import CORE_MODE, DUPLICATE_NO_VM_RULE, NONE
from fleetsim.scenarios import Change, Event, compile_event, horizon_of
from ryu_app.core.balancer import Balancer
from ryu_app.core.flowkey import flow_hash, flow_key
from ryu_app.core.model import HASH_5TUPLE, Backend, Vip

FRESH = 30.0
WARM = 0.001  # a flow open at time 0 sent a packet just before it
VIP_NAME = "web"


class ExactEngine:
    def __init__(self, population: Population, settings: Settings, mechanism: str, event: Event):
        if event.keeps_history:
            raise NotImplementedError(
                "a real Balancer loses its table history when its controller restarts: "
                "a restart that keeps it is modelled by the vectorized engine only"
            )
        self.pop, self.settings, self.mechanism, self.event = population, settings, mechanism, event
        total = settings.backends + 1
        self.weights = {backend_name(i): 1 for i in range(total)}
        self.present = {backend_name(i) for i in range(settings.backends)}
        self.dead: set[int] = set()
        live = list(range(settings.gateways))
        self.ecmp = Ecmp(live, settings.ecmp)
        self.balancers: dict[int, Balancer] = {g: self.fresh_balancer(-1e6) for g in live}
        count = len(population)
        self.status = np.zeros(count, np.int8)
        self.reason = np.zeros(count, np.int8)
        self.conn = np.full(count, NONE, np.int32)
        self.gw = np.full(count, NONE, np.int32)
        self.moved_misses = 0

    def vip(self) -> Vip:
        backends = tuple(
            Backend(
                name,
                f"10.9.{i // 250}.{i % 250 + 1}",
                f"02:00:00:00:{i // 256:02x}:{i % 256:02x}",
                self.weights[name],
            )
            for i, name in enumerate(sorted(self.present))
        )
        return Vip(
            VIP_NAME,
            "203.0.113.10",
            VIP_PORT,
            backends=backends,
            table_size=self.settings.table_size,
            second_chance=CORE_MODE.get(self.mechanism, "off"),
            second_chance_window=int(self.settings.window),
        )

    def fresh_balancer(self, now: float) -> Balancer:
        balancer = Balancer()
        balancer.rebuild_now(balancer.set_vip(self.vip(), now), now)
        return balancer

    def run(self) -> Outcome:
        horizon = horizon_of(self.event)
        changes = compile_event(self.event, self.ecmp.live, horizon, self.settings.seed)
        times = sorted({change.time for change in changes})
        first = int(np.searchsorted(self.pop.start, 0.0))
        self.place(0, first)
        fresh_at = 0.0
        for position, now in enumerate(times):
            here = [change for change in changes if change.time == now]
            moves = any(change.kind in ("ecmp_out", "ecmp_in") for change in here)
            if moves or now - fresh_at >= FRESH:
                self.touch(now, moved=False)
                fresh_at = now
            for change in here:
                self.apply(change, now)
            if moves or any(change.kind == "retire" for change in here):
                self.touch(now, moved=True)
            upto = times[position + 1] if position + 1 < len(times) else horizon
            self.place(
                int(np.searchsorted(self.pop.start, now)),
                int(np.searchsorted(self.pop.start, upto)),
            )
        return Outcome(
            self.event.name,
            self.mechanism,
            first,
            int(np.sum(self.pop.start < horizon)),
            self.moved_misses,
            count_reasons(self.reason),
        )

    def apply(self, change: Change, now: float) -> None:
        kind, name = change.kind, backend_name(change.backend) if change.backend >= 0 else ""
        if kind == "vm_dead":
            self.dead.add(change.backend)
            victims = self.alive(now)
            victims = victims[self.conn[victims] == change.backend]
            self.status[victims], self.reason[victims] = BROKEN, outcome.LOST_WITH_VM
        elif kind in ("weight", "add"):
            self.weights[name] = 1 if kind == "add" else int(change.value)
            self.present.add(name)
            vip = self.vip()
            for balancer in self.balancers.values():
                balancer.rebuild_now(balancer.set_vip(vip, now), now)
        elif kind == "health":
            balancer = self.balancers[change.gateway]
            requests = balancer.set_health(VIP_NAME, name, bool(change.value), now)
            balancer.rebuild_now(requests, now)
        elif kind == "retire":
            balancer = self.balancers[change.gateway]
            balancer.retire(VIP_NAME, name, balancer.vips[VIP_NAME].backend_ids[name])
        elif kind == "ecmp_out":
            self.ecmp.remove(change.gateway)
            del self.balancers[change.gateway]
        elif kind == "ecmp_in":
            self.balancers[change.gateway] = self.fresh_balancer(now)
            self.ecmp.add(change.gateway)

    def alive(self, now: float) -> np.ndarray:
        return np.nonzero((self.status == ALIVE) & (self.pop.end > now))[0]

    def place(self, low: int, high: int) -> None:
        if high <= low:
            return
        gateways = self.ecmp.gateways(self.pop.router_hash[low:high])
        for index, gateway in zip(range(low, high), gateways.tolist(), strict=True):
            # A warm flow's SYN is long gone: its entry is as fresh as its packets keep it.
            when = max(float(self.pop.start[index]), -WARM)
            decision = self.balancers[gateway].pick(self.pop.flow(index, syn=True), when)
            self.gw[index], self.status[index] = gateway, ALIVE
            if decision is None:
                self.status[index], self.reason[index] = BROKEN, outcome.NO_BACKEND
                continue
            self.conn[index] = int(decision.backend.name[2:])
            if self.conn[index] in self.dead:
                self.status[index], self.reason[index] = BROKEN, outcome.NEW_TO_DEAD_VM

    def touch(self, now: float, moved: bool) -> None:
        """A segment of every open flow at its gateway (``moved``: where the router sends it
        now; else where it went so far)."""
        indices = self.alive(now)
        if moved:
            gateways = self.ecmp.gateways(self.pop.router_hash[indices]).astype(np.int32)
        else:
            gateways = self.gw[indices]
        for index, gateway in zip(indices.tolist(), gateways.tolist(), strict=True):
            balancer = self.balancers[gateway]
            decision = balancer.pick(self.pop.flow(index, syn=False), now)
            was_moved = gateway != self.gw[index]
            self.gw[index] = gateway
            if decision is not None and decision.from_table:
                continue
            self.moved_misses += 1
            self.judge(index, balancer, decision, retired=not was_moved)

    def judge(self, index: int, balancer: Balancer, decision, retired: bool) -> None:
        """Break the flow if the segment's destinations do not hold it (``classify``)."""
        names = (
            []
            if decision is None
            else [decision.backend.name] + [b.name for b, _ in decision.extra]
        )
        dests = np.full((1, 3), NONE, np.int32)
        dests[0, : len(names)] = [int(name[2:]) for name in names]
        conn = self.conn[index]
        if conn in dests[0] and (self.mechanism != DUPLICATE_NO_VM_RULE or len(names) == 1):
            return
        state = balancer.vips[VIP_NAME]
        key = flow_key(self.pop.flow(index, syn=False), HASH_5TUPLE)
        owner = state.table.lookup(flow_hash(key))
        current = np.array([NONE if owner is None else int(owner[2:])], np.int32)
        serving = np.array([backend_name(conn) in state.serving])
        to_dead = np.array([bool(names) and int(names[0][2:]) in self.dead])
        _, reason = classify(
            self.mechanism, np.array([conn]), dests, current, serving, retired, to_dead
        )
        self.status[index], self.reason[index] = BROKEN, reason[0]


def run(population: Population, settings: Settings, mechanism: str, event: Event) -> Outcome:
    return ExactEngine(population, settings, mechanism, event).run()
