"""The vectorized engine: one event, one mechanism, every flow of a population, in numpy.

Per flow it keeps the backend that holds the connection (``conn``), the gateway its packets
reach now (``gw``), and up to ``ENTRIES`` flow-table entries on gateways (``entry_gw``, with
the time the flow left that gateway: an entry outlives its flow's last packet by the VIP's idle
timeout, 60 s).  Between two changes of the timeline nothing happens to open connections; at a
change:

- a flow that ECMP moves to a gateway where it has a live entry follows it;
- one that lands where it has none is a TCP non-SYN miss: the mechanism's destinations at that
  gateway (``rule.destinations``, with that gateway's table, history and healthy view) decide:
  the connection survives iff its backend is among them (``outcome.classify``);
- a gateway that retires a backend it sees down drops its entries: those flows miss too;
- a VM that dies takes its connections with it (counted apart, not the balancer's doing).

New flows between changes are placed by their gateway's current table (their SYN).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from fleetsim import outcome
from fleetsim.ecmp import Ecmp
from fleetsim.fleet import Fleet
from fleetsim.outcome import ALIVE, BROKEN, Costs, Outcome, classify, count_reasons
from fleetsim.population import Population
from fleetsim.rule import DUPLICATE, EXCHANGE, NONE, USES_HISTORY, destinations
from fleetsim.scenarios import Change, Event, compile_event, horizon_of

ENTRIES = 3


@dataclass(frozen=True)
class Settings:
    gateways: int
    backends: int
    table_size: int = 65537
    ecmp: str = "modulo"
    window: float = 900.0  # second_chance_window
    idle: float = 60.0  # the VIP's idle timeout (TCP default)
    exchange_delay: float = 0.2  # seconds from a table change to its entries reaching peers
    exchange_rate: float = 10_000.0  # entries a gateway pushes per second, at most
    seed: int = 1


class FlowState:
    def __init__(self, count: int):
        self.status = np.zeros(count, np.int8)
        self.reason = np.zeros(count, np.int8)
        self.conn = np.full(count, NONE, np.int16)
        self.gw = np.full(count, NONE, np.int16)
        self.entry_gw = np.full((count, ENTRIES), NONE, np.int16)
        self.entry_left = np.full((count, ENTRIES), np.inf)
        self.dup_gw = np.full(count, NONE, np.int16)
        self.dup_since = np.zeros(count)
        self.dup_ever = np.zeros(count, bool)
        self.pushed_ready = np.full(count, np.inf)
        self.pushed_at = np.full(count, np.inf)
        self.pushed_from = np.full(count, NONE, np.int16)


class Engine:
    def __init__(self, population: Population, settings: Settings, mechanism: str, event: Event):
        self.pop, self.settings, self.mechanism, self.event = population, settings, mechanism, event
        self.fleet = Fleet(settings.backends, 1, settings.gateways + 1, settings.table_size)
        live = list(range(settings.gateways))
        self.ecmp = Ecmp(live, settings.ecmp)
        for gateway in live:
            self.fleet.refresh(gateway, -np.inf)
        self.flows = FlowState(len(population))
        self.costs = Costs()
        self.moved_misses = 0
        self.push_free_at = np.zeros(settings.gateways + 1)
        self.pushed_by = np.zeros(settings.gateways + 1, np.int64)

    def run(self) -> Outcome:
        started = time.perf_counter()
        horizon = horizon_of(self.event)
        changes = compile_event(self.event, self.ecmp.live, horizon, self.settings.seed)
        times = sorted({change.time for change in changes})
        first = int(np.searchsorted(self.pop.start, 0.0))
        self.place(0, first)
        for position, now in enumerate(times):
            rerouted = False
            for change in changes:
                if change.time == now:
                    rerouted |= self.apply(change, now)
            if rerouted:
                self.reroute(now)
            upto = times[position + 1] if position + 1 < len(times) else horizon
            self.place(
                int(np.searchsorted(self.pop.start, now)),
                int(np.searchsorted(self.pop.start, upto)),
            )
        return self.outcome(horizon, first, time.perf_counter() - started)

    # ---- the timeline's changes --------------------------------------------------------------

    def apply(self, change: Change, now: float) -> bool:
        """Apply one change; True if the router's choice of gateways changed."""
        fleet, kind = self.fleet, change.kind
        if kind == "vm_dead":
            fleet.dead[change.backend] = True
            victims = self.alive(now)
            victims = victims[self.flows.conn[victims] == change.backend]
            self.break_flows(victims, outcome.LOST_WITH_VM)
        elif kind in ("weight", "add"):
            if kind == "add":
                fleet.present[change.backend] = True
                fleet.healthy[:, change.backend] = True
                fleet.weights[change.backend] = 1
            else:
                fleet.weights[change.backend] = int(change.value)
            for gateway in self.ecmp.live:
                self.refreshed(gateway, now)
        elif kind == "health":
            fleet.healthy[change.gateway, change.backend] = bool(change.value)
            self.refreshed(change.gateway, now)
        elif kind == "retire":
            if not fleet.healthy[change.gateway, change.backend]:
                self.retire(change.gateway, change.backend, now)
        elif kind == "ecmp_out":
            self.ecmp.remove(change.gateway)
            self.flows.entry_gw[self.flows.entry_gw == change.gateway] = NONE
            return True
        elif kind == "ecmp_in":
            fleet.restart(change.gateway, now, keep_history=self.event.keeps_history)
            self.ecmp.add(change.gateway)
            return True
        return False

    def refreshed(self, gateway: int, now: float) -> None:
        swapped = self.fleet.refresh(gateway, now)
        if swapped is not None and self.mechanism == EXCHANGE:
            self.push_entries(gateway, swapped[0], swapped[1], now)

    def retire(self, gateway: int, backend: int, now: float) -> None:
        """The gateway retires ``backend``: its entries naming it go; flows there miss."""
        flows = self.flows
        holders = np.nonzero(flows.conn == backend)[0]
        entries = flows.entry_gw[holders]
        entries[entries == gateway] = NONE
        flows.entry_gw[holders] = entries
        here = holders[(flows.status[holders] == ALIVE) & (self.pop.end[holders] > now)]
        here = here[flows.gw[here] == gateway]
        self.lookup(gateway, here, now, retired=True)

    # ---- flows ---------------------------------------------------------------------------------

    def alive(self, now: float) -> np.ndarray:
        return np.nonzero((self.flows.status == ALIVE) & (self.pop.end > now))[0]

    def break_flows(self, indices: np.ndarray, reason) -> None:
        self.flows.status[indices] = BROKEN
        self.flows.reason[indices] = reason

    def place(self, low: int, high: int) -> None:
        """New flows (their SYN) go where their gateway's current table says."""
        if high <= low:
            return
        flows, indices = self.flows, np.arange(low, high)
        gateways = self.ecmp.gateways(self.pop.router_hash[indices])
        for gateway in np.unique(gateways):
            chosen = indices[gateways == gateway]
            conn = self.fleet.tables[gateway][self.pop.slot[chosen]]
            flows.conn[chosen] = conn
            flows.gw[chosen] = gateway
            flows.status[chosen] = ALIVE
            flows.entry_gw[chosen, 0] = gateway
            self.break_flows(chosen[conn == NONE], outcome.NO_BACKEND)
            dead = chosen[conn != NONE]
            self.break_flows(dead[self.fleet.dead[flows.conn[dead]]], outcome.NEW_TO_DEAD_VM)

    def reroute(self, now: float) -> None:
        """ECMP changed: every open flow goes where the router now sends it."""
        flows = self.flows
        indices = self.alive(now)
        new = self.ecmp.gateways(self.pop.router_hash[indices])
        moved = new != flows.gw[indices]
        indices, new = indices[moved], new[moved]
        old = flows.gw[indices]
        entry_gw, entry_left = flows.entry_gw[indices], flows.entry_left[indices]
        entry_left[entry_gw == old[:, None]] = now
        self.stop_duplicating(indices[flows.dup_gw[indices] == old], now)
        valid = (entry_gw == new[:, None]) & (now < entry_left + self.settings.idle)
        has = valid.any(axis=1)
        entry_left[valid] = np.inf
        flows.entry_left[indices] = entry_left
        flows.gw[indices] = new
        missing, missing_gw = indices[~has], new[~has]
        for gateway in np.unique(missing_gw):
            self.lookup(int(gateway), missing[missing_gw == gateway], now, retired=False)

    def lookup(self, gateway: int, indices: np.ndarray, now: float, retired: bool) -> None:
        """TCP non-SYN misses at ``gateway``: the mechanism decides; record the survivors'
        entries, break the others."""
        if not len(indices):
            return
        self.moved_misses += len(indices)
        flows, fleet, mechanism = self.flows, self.fleet, self.mechanism
        slots, conn = self.pop.slot[indices], flows.conn[indices].astype(np.int32)
        history = []
        if mechanism in USES_HISTORY:
            history = fleet.recent(gateway, now, self.settings.window)
        table = fleet.tables[gateway]
        dests = destinations(mechanism, slots, table, history, fleet.alive(gateway))
        if mechanism == EXCHANGE:
            pushed = (
                (flows.pushed_ready[indices] <= now)
                & (flows.pushed_at[indices] >= fleet.born[gateway])
                & (flows.pushed_from[indices] != gateway)
            )
            dests[pushed, 0] = conn[pushed]
        current = table[slots].astype(np.int32)
        serving = fleet.serving[gateway, conn]
        dead = fleet.dead[np.maximum(dests[:, 0], 0)] & (dests[:, 0] != NONE)
        survived, reason = classify(mechanism, conn, dests, current, serving, retired, dead)
        self.break_flows(indices[~survived], reason[~survived])
        kept = indices[survived]
        self.add_entries(kept, gateway)
        duplicated = kept[dests[survived, 1] != NONE]
        if mechanism.startswith(DUPLICATE) and len(duplicated):
            flows.dup_gw[duplicated] = gateway
            flows.dup_since[duplicated] = now
            flows.dup_ever[duplicated] = True

    def add_entries(self, indices: np.ndarray, gateway: int) -> None:
        """An entry on ``gateway`` in each flow's free (or longest-left) entry place."""
        flows = self.flows
        left = np.where(flows.entry_gw[indices] == NONE, -np.inf, flows.entry_left[indices])
        column = np.argmin(left, axis=1)
        flows.entry_gw[indices, column] = gateway
        flows.entry_left[indices, column] = np.inf

    def stop_duplicating(self, indices: np.ndarray, now: float) -> None:
        flows = self.flows
        self.costs.duplicated_seconds += float(np.sum(now - flows.dup_since[indices]))
        flows.dup_gw[indices] = NONE

    def push_entries(self, gateway: int, old: np.ndarray, new: np.ndarray, now: float) -> None:
        """``exchange``: the gateway's entries of flows whose slot changed owner (and whose
        backend is not the new owner) reach every peer ``exchange_delay`` later, at most
        ``exchange_rate`` entries a second."""
        flows, settings = self.flows, self.settings
        here = self.alive(now)
        here = here[flows.gw[here] == gateway]
        slots = self.pop.slot[here]
        changed = here[(old[slots] != new[slots]) & (flows.conn[here] != new[slots])]
        if not len(changed):
            return
        start = max(now + settings.exchange_delay, self.push_free_at[gateway])
        ready = start + np.arange(len(changed)) / settings.exchange_rate
        self.push_free_at[gateway] = start + len(changed) / settings.exchange_rate
        fresh = flows.pushed_at[changed] == np.inf
        flows.pushed_ready[changed[fresh]] = ready[fresh]
        flows.pushed_at[changed[fresh]] = now
        flows.pushed_from[changed[fresh]] = gateway
        self.pushed_by[gateway] += len(changed)
        self.costs.exchange_entries_pushed += len(changed)
        self.costs.exchange_messages += len(changed) * (len(self.ecmp.live) - 1)

    # ---- the result ----------------------------------------------------------------------------

    def outcome(self, horizon: float, open_at_zero: int, seconds: float) -> Outcome:
        flows = self.flows
        duplicating = np.nonzero((flows.dup_gw != NONE) & (flows.status == ALIVE))[0]
        ends = np.minimum(self.pop.end[duplicating], horizon)
        self.costs.duplicated_seconds += float(np.sum(ends - flows.dup_since[duplicating]))
        self.costs.duplicated_flows = int(flows.dup_ever.sum())
        if self.mechanism in USES_HISTORY:
            self.costs.history_bytes = self.fleet.history_bytes()
        if self.mechanism == EXCHANGE:
            total = int(self.pushed_by.sum())
            self.costs.exchange_entries_held = total - int(self.pushed_by.min())
        return Outcome(
            self.event.name,
            self.mechanism,
            open_at_zero,
            int(np.sum(self.pop.start < horizon)),
            self.moved_misses,
            count_reasons(flows.reason),
            self.costs,
            seconds,
        )


def run(population: Population, settings: Settings, mechanism: str, event: Event) -> Outcome:
    return Engine(population, settings, mechanism, event).run()
