"""One gateway's decisions: which VIP a packet is for and which backend gets its flow.

The pieces, all pure (time comes in as ``now``):

- a Maglev table per VIP over its serving set (``serving.serving``: this gateway's *own*
  healthy set, or in panic all backends of weight > 0), indexed as the VIP's placement says
  (``slots``: the flow key's hash, or ``port-bits``' source-port slot), shared between VIPs whose
  ``TableSpec`` (table size, backends and weights, placement) is identical (``TableCache``);
- this gateway's flow table, consulted first so a flow keeps its backend while that backend
  holds its flows (``held_backend``: until the backend is retired, some seconds after it left
  service, see ``serving``; an entry of a retired or removed backend is stale, dropped, and
  the flow re-hashed; entries on a draining backend, weight 0, stay).

Rebuilds happen only when a VIP's serving set changes, and never on the packet path:
``set_health``/``set_vip`` return the ``TableRequest`` s that are now needed, the shell builds
them wherever it likes (``TableCache.build`` is a pure function) and hands each back with
``install_table``, a single reference swap.  Until then the previous table answers; if it names
a backend that has just gone down, the packet is dropped rather than sent to a dead VM (the
client's SYN retransmission arrives after the swap).

Backend ids name a backend's rules in the switch (``pipeline.flow_cookie``), which outlive the
controller: ``saved_ids`` is what the state file keeps, ``restore_ids`` hands it to the next
run before its first ``set_vip``, so that a restarted controller gives each backend the id its
kept rules carry.  ``ids_version`` goes up whenever an id is given or taken (a REST change, a
retirement), for the shell to save them again.
"""

from __future__ import annotations

from array import array
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from ryu_app.core.flowkey import Flow, flow_hash, flow_key, hash_key
from ryu_app.core.flowtable import MAX_BACKEND_ID, FlowTable
from ryu_app.core.maglev import MaglevTable, TableSpec, build_spec, table_spec
from ryu_app.core.model import (
    HASH_5TUPLE,
    MODE_SWITCH,
    PLACEMENT_PORT_BITS,
    SECOND_CHANCE_OFF,
    Backend,
    Vip,
    service_key,
)
from ryu_app.core.secondchance import (
    KeptTable,
    Replaced,
    SecondChance,
    Slotting,
    TableHistory,
    slotting,
)
from ryu_app.core.serving import serving
from ryu_app.core.slots import placement_index, port_slot

HISTORY_SWEEP_SECONDS = 1.0  # how often replaced tables past their window are let go


class TableCache:
    """Maglev tables by ``TableSpec``, least recently used dropped beyond ``limit``."""

    def __init__(self, limit: int = 256):
        self.limit = limit
        self.builds = 0
        self.hits = 0
        self._tables: OrderedDict[TableSpec, MaglevTable] = OrderedDict()

    @staticmethod
    def build(spec: TableSpec) -> MaglevTable:
        """Pure and thread-safe: safe to call from a worker thread."""
        return build_spec(spec)

    def get(self, spec: TableSpec) -> MaglevTable | None:
        table = self._tables.get(spec)
        if table is not None:
            self._tables.move_to_end(spec)
            self.hits += 1
        return table

    def store(self, spec: TableSpec, table: MaglevTable) -> None:
        self._tables[spec] = table
        self._tables.move_to_end(spec)
        while len(self._tables) > self.limit:
            self._tables.popitem(last=False)

    def get_or_build(self, spec: TableSpec) -> MaglevTable:
        table = self.get(spec)
        if table is None:
            table = self.build(spec)
            self.builds += 1
            self.store(spec, table)
        return table


class SavedId(NamedTuple):
    """A backend's id as saved, with what it was given for (an id names rules that send to
    this tunnel address and MAC: a backend that changed either gets a new one)."""

    id: int
    tunnel_ip: str
    mac: str


@dataclass(frozen=True)
class SavedIds:
    """Every VIP's backend ids (VIP name -> backend name -> ``SavedId``) and the next id to
    give: what a restarted controller needs to name the rules it finds in the switch."""

    backends: dict[str, dict[str, SavedId]]
    next_id: int
    # Second chance's history by VIP (``secondchance.KeptTable``): the tables each replaced
    # within its window, and the one in use, so that a restarted controller has them too.
    history: dict[str, tuple[KeptTable, ...]] = field(default_factory=dict)


class IdsSnapshot(NamedTuple):
    """The balancer's VIPs (immutable) with a copy of their backend ids, and the next id; and
    each second-chance VIP's history as (seconds since replaced, or None for the table in
    use; spec; slotting)."""

    vips: tuple[tuple[Vip, dict[str, int]], ...]
    next_id: int
    history: tuple[tuple[str, tuple[tuple[float | None, TableSpec, Slotting], ...]], ...] = ()

    def saved(self, wall: float = 0.0) -> SavedIds:
        """``SavedIds`` of the snapshot; ``wall``: the wall-clock time it was taken at (the
        history's times are kept as wall-clock times)."""
        backends = {
            vip.name: {
                backend.name: SavedId(ids[backend.name], backend.tunnel_ip, backend.mac)
                for backend in vip.backends
            }
            for vip, ids in self.vips
        }
        history = {
            name: tuple(
                KeptTable(None if age is None else round(wall - age, 3), spec, found_by)
                for age, spec, found_by in entries
            )
            for name, entries in self.history
        }
        return SavedIds(backends, self.next_id, history)


@dataclass(frozen=True)
class TableRequest:
    vip: str
    spec: TableSpec


class Decision(NamedTuple):
    """Where one packet goes (a named tuple: one is made per packet-in)."""

    vip: Vip
    backend: Backend
    backend_id: int
    from_table: bool
    key: bytes  # the flow's flow key (``flow_key``), for callers that track the flow
    # Second chance's ``duplicate``: the earlier owners (backend, id) that get the flow's
    # packets too (``core.secondchance``); empty for nearly every flow.
    extra: tuple[tuple[Backend, int], ...] = ()
    # The flow had a duplicating rule (``pipeline.duplicating_rule``) that must go: its rule
    # now sends as this decision says.
    undo: bool = False


@dataclass
class VipState:
    vip: Vip
    backend_ids: dict[str, int]
    healthy: set[str]
    table_spec: TableSpec | None  # of the table in use (None: a new VIP's empty table)
    table: MaglevTable
    # The spec of the table the VIP needs now, as of the last change of its backends or
    # healthy set (kept, so that asking whether the table is current is cheap), the names in
    # it (new flows go to these only), and whether that set is the panic set.
    wanted: TableSpec | None = None
    serving: frozenset[str] = frozenset()
    panic: bool = False
    # The tables this VIP replaced lately, for second chance (kept across a ``set_vip``), and
    # how the VIP found slots when its table in use was swapped in.
    history: TableHistory = field(default_factory=TableHistory)
    slotting: Slotting | None = None

    def follow(self) -> None:
        """Recompute ``wanted``, ``serving`` and ``panic`` (``serving.serving``: one rule)."""
        backends, self.panic = serving(self.vip, self.healthy)
        self.serving = frozenset(name for name, _ in backends)
        self.wanted = table_spec(self.vip.table_size, backends, self.vip.placement)

    def alive(self, name: str) -> bool:
        """A backend of the VIP that this gateway finds healthy (draining or not): one whose
        connections may still be running."""
        return name in self.healthy

    def out_of_service(self) -> set[str]:
        """Backends neither healthy nor served in panic: those to retire after a grace."""
        return {b.name for b in self.vip.backends} - self.healthy - self.serving

    @property
    def table_current(self) -> bool:
        """The table in use is the one the VIP's backends and healthy set call for."""
        return self.table_spec == self.wanted


@dataclass
class BalancerCounters:
    packets: int = 0
    not_vip: int = 0
    no_backend: int = 0
    stale_entries: int = 0  # table entries dropped because their backend went down or away
    stale_table_drops: int = 0  # old table named a down backend before the rebuild landed
    table_installs: int = 0


@dataclass
class Balancer:
    flows: FlowTable = field(default_factory=FlowTable)
    cache: TableCache = field(default_factory=TableCache)
    counters: BalancerCounters = field(default_factory=BalancerCounters)
    # Idle timeout of new entries.  None: the VIP's.  A gateway pins them (flowtable.PINNED):
    # its switch rule carries the flow's packets (the controller sees none of them), and the
    # switch's flow-removed message is what ends the entry.
    entry_idle: int | None = None

    def __post_init__(self):
        self.vips: dict[str, VipState] = {}
        self.second_chance = SecondChance()  # the double change's rule and duplicated flows
        self._history_swept = float("-inf")  # when ``expire_history`` last looked
        self._services: dict[tuple[bytes, int, int], VipState] = {}
        self._backends: dict[int, tuple[str, Backend]] = {}  # id -> (vip name, backend)
        self._next_id = 1
        # Ids a restored run has not given out yet (``restore_ids``), by VIP; and all of them,
        # so that no new backend gets one until the rules it names are dealt with.
        self._restored: dict[str, dict[str, SavedId]] = {}
        self._reserved: set[int] = set()
        self.ids_version = 0  # goes up whenever a backend's id is given or taken
        self.history_version = 0  # goes up whenever second chance's history gains a table

    # ---- configuration ---------------------------------------------------------------------

    def set_vip(self, vip: Vip, now: float | None = None) -> list[TableRequest]:
        """Add or replace a VIP.  Backends that stay (same name, tunnel and MAC) keep their id
        and health; new backends start healthy (see health.py for why), and so do all the
        backends of a VIP whose health checks are off (``probed``: static backends).

        ``now`` (here and in ``set_health``, ``install_table``): when a table swapped in
        replaces the VIP's, for second chance's history; None keeps no history (the CLI,
        tests of other things)."""
        old = self.vips.get(vip.name)
        restored = self._claim_restored(vip.name)
        ids: dict[str, int] = {}
        healthy: set[str] = set()
        static = not vip.probed
        for backend in vip.backends:
            previous = old.vip.backend(backend.name) if old else None
            same = previous is not None and (previous.tunnel_ip, previous.mac) == (
                backend.tunnel_ip,
                backend.mac,
            )
            if same:
                ids[backend.name] = old.backend_ids[backend.name]
            else:
                ids[backend.name] = self._restored_id(restored.get(backend.name), backend)
            self._backends[ids[backend.name]] = (vip.name, backend)
            if static or not same or backend.name in old.healthy:
                healthy.add(backend.name)
        if old:
            self._forget(old, keep=set(ids.values()))
        if not old or ids != old.backend_ids:
            self.ids_version += 1
        # Keep answering with the old table until the new one is in (_request_if_needed).
        if old:
            state = VipState(vip, ids, healthy, old.table_spec, old.table, history=old.history)
            state.slotting = old.slotting
            if vip.second_chance == SECOND_CHANCE_OFF or vip.mode == MODE_SWITCH:
                state.history.clear()
        else:
            state = VipState(vip, ids, healthy, None, MaglevTable(vip.table_size, (), array("h")))
        self.vips[vip.name] = state
        self._services[service_key(vip).destination] = state
        return self._request_if_needed(state, now)

    def remove_vip(self, name: str) -> bool:
        state = self.vips.pop(name, None)
        if state is None:
            return False
        self._forget(state, keep=set())
        self.ids_version += 1
        return True

    def _forget(self, state: VipState, keep: set[int]) -> None:
        self._services.pop(service_key(state.vip).destination, None)
        for backend_id in state.backend_ids.values():
            if backend_id not in keep:
                self._backends.pop(backend_id, None)

    def _new_id(self) -> int:
        """The next id that neither a backend, a flow-table entry nor a restored id not yet
        dealt with still uses (ids wrap)."""
        while True:
            backend_id = self._next_id
            self._next_id = self._next_id + 1 if self._next_id < MAX_BACKEND_ID else 1
            if backend_id in self._reserved or backend_id in self._backends:
                continue
            if not self.flows.holds(backend_id):
                return backend_id

    # ---- ids that outlive the process ------------------------------------------------------

    def restore_ids(self, saved: SavedIds) -> None:
        """Take an earlier run's ids (the state file's), before the first ``set_vip``: each
        backend that ``set_vip`` finds there under its VIP, with the same tunnel address and
        MAC, gets its saved id back; other backends get new ids, from the saved next id on."""
        self._restored = {vip: dict(backends) for vip, backends in saved.backends.items()}
        self._reserved = {s.id for backends in saved.backends.values() for s in backends.values()}
        self._next_id = saved.next_id if 1 <= saved.next_id <= MAX_BACKEND_ID else 1

    def _claim_restored(self, vip_name: str) -> dict[str, SavedId]:
        """The restored ids of a VIP set for the first time since the start (at most once)."""
        if vip_name in self.vips:
            return {}
        return self._restored.pop(vip_name, {})

    def _restored_id(self, saved: SavedId | None, backend: Backend) -> int:
        """The backend's saved id if it was saved for the same tunnel address and MAC (and is
        not taken: a file that gives one id twice), else a new one."""
        same = saved is not None and (saved.tunnel_ip, saved.mac) == (
            backend.tunnel_ip,
            backend.mac,
        )
        if same and saved.id in self._reserved and saved.id not in self._backends:
            self._reserved.discard(saved.id)
            return saved.id
        return self._new_id()

    def release_unclaimed_ids(self) -> list[int]:
        """The restored ids no backend took back (its VIP or itself went, or its tunnel
        address or MAC changed, while no controller ran): the rules in the switch that carry
        them are nobody's now.  Called once the VIPs are set (at the first connection); from
        then on the ids may be given again."""
        unclaimed = sorted(self._reserved)
        self._restored, self._reserved = {}, set()
        return unclaimed

    def saved_ids(self) -> SavedIds:
        """Every VIP's backend ids, for the state file.  (Restored ids no backend took back
        are not in it: the next id, saved too, keeps them from being given again soon.)"""
        return self.ids_snapshot().saved()

    def ids_snapshot(self, now: float | None = None) -> IdsSnapshot:
        """What ``saved_ids`` is made of, taken cheaply (a copy of each VIP's id map; the
        Vips are immutable): the app takes it on the event loop and has it made into
        ``SavedIds`` off it (100,000 backends: ~70 ms, too long to hold packet-ins).  With
        ``now``, each second-chance VIP's history too (``kept_history``)."""
        vips = tuple((state.vip, dict(state.backend_ids)) for state in self.vips.values())
        history = () if now is None else self.kept_history(now)
        return IdsSnapshot(vips, self._next_id, history)

    def kept_history(self, now: float) -> tuple:
        """Each second-chance VIP's replaced tables within its window (seconds since each was
        replaced, spec, slotting) and its table in use (None for the time): what a restarted
        controller needs to send a moved connection where it was (``restore_history``)."""
        kept = []
        for name, state in self.vips.items():
            vip = state.vip
            if vip.second_chance == SECOND_CHANCE_OFF or vip.mode == MODE_SWITCH:
                continue
            entries = [
                (now - entry.at, entry.spec, entry.slotting)
                for entry in state.history.kept(now, vip.second_chance_window)
                if entry.spec is not None
            ]
            if state.table.names and state.table_spec is not None and state.slotting:
                entries.insert(0, (None, state.table_spec, state.slotting))
            if entries:
                kept.append((name, tuple(entries)))
        return tuple(kept)

    def restore_history(
        self, saved: SavedIds, tables: dict[TableSpec, MaglevTable], now: float, wall: float
    ) -> int:
        """Take an earlier run's history (``saved.history``, its times wall-clock: ``wall`` is
        ``now`` on that clock): each VIP still here with second chance on gets the tables
        replaced within its window, and the earlier run's table in use as replaced now (the
        restart replaced it).  ``tables``: built from the specs.  How many were restored."""
        restored = 0
        for name, kept in saved.history.items():
            state = self.vips.get(name)
            if state is None or state.vip.second_chance == SECOND_CHANCE_OFF:
                continue
            window = state.vip.second_chance_window
            entries = []
            for entry in kept:
                at = now if entry.at is None else now - (wall - entry.at)
                table = tables.get(entry.spec)
                if table is not None and table.names and now - at <= window:
                    entries.append(Replaced(at, table, entry.slotting, entry.spec))
            state.history.restore(entries)
            restored += len(entries)
        if restored:
            self.history_version += 1
        return restored

    # ---- health and tables -----------------------------------------------------------------

    def set_health(
        self, vip_name: str, backend_name: str, healthy: bool, now: float | None = None
    ) -> list[TableRequest]:
        """Record this gateway's verdict on one backend.  Going down takes it out of the
        serving set (no new flows) but keeps its flows until ``retire``."""
        state = self.vips[vip_name]
        if backend_name not in state.backend_ids:
            raise KeyError(f"VIP {vip_name!r} has no backend {backend_name!r}")
        if healthy == (backend_name in state.healthy):
            return []
        if healthy:
            state.healthy.add(backend_name)
        else:
            state.healthy.discard(backend_name)
        return self._request_if_needed(state, now)

    def retire(self, vip_name: str, backend_name: str, backend_id: int) -> bool:
        """End the flows of a backend that is out of service (see ``serving``) and still has
        ``backend_id``; False (nothing done) if it is back in service, changed or gone."""
        state = self.vips.get(vip_name)
        if state is None or state.backend_ids.get(backend_name) != backend_id:
            return False
        if backend_name not in state.out_of_service():
            return False
        self._retire(state, backend_name)
        return True

    def _retire(self, state: VipState, backend_name: str) -> None:
        """A backend's flows are over.  Its id is retired (the flow table sweeps the entries
        that name it, a slice at a time; ``pick`` treats a hit on it as stale) and it gets a
        new one, so flows it takes after coming back are told apart from those."""
        old_id = state.backend_ids[backend_name]
        self.flows.drop_backend(old_id)
        self._backends.pop(old_id, None)
        new_id = self._new_id()
        state.backend_ids[backend_name] = new_id
        self._backends[new_id] = (state.vip.name, state.vip.backend(backend_name))
        self.ids_version += 1

    def _request_if_needed(self, state: VipState, now: float | None) -> list[TableRequest]:
        state.follow()
        spec = state.wanted
        if spec == state.table_spec:
            return []
        table = self.cache.get(spec)
        if table is not None:
            self._swap(state, spec, table, now)
            return []
        return [TableRequest(state.vip.name, spec)]

    def install_table(
        self, request: TableRequest, table: MaglevTable, now: float | None = None
    ) -> bool:
        """Swap in a table built for ``request``; False if the VIP changed meanwhile."""
        self.cache.store(request.spec, table)
        state = self.vips.get(request.vip)
        if state is None or state.wanted != request.spec:
            return False
        self._swap(state, request.spec, table, now)
        return True

    def wants(self, request: TableRequest) -> bool:
        """Whether the VIP still waits for this table (False: it changed since, is gone, or
        has the table already): a failed build is retried only while this holds."""
        state = self.vips.get(request.vip)
        return state is not None and state.wanted == request.spec and not state.table_current

    def _swap(
        self, state: VipState, spec: TableSpec, table: MaglevTable, now: float | None
    ) -> None:
        vip = state.vip
        if (
            now is not None
            and vip.second_chance != SECOND_CHANCE_OFF
            and vip.mode != MODE_SWITCH
            and table is not state.table
            and state.slotting is not None
        ):
            state.history.replaced(state.table, now, state.slotting, state.table_spec)
            self.history_version += 1
        state.slotting = slotting(vip)
        # The table before its spec: a reader on another thread that sees the new spec (the
        # REST side asking whether a change's table is in) then finds the table in place too.
        state.table = table
        state.table_spec = spec
        self.counters.table_installs += 1

    def expire_history(self, now: float) -> None:
        """Let go of the replaced tables older than their VIP's second-chance window (a lookup
        drops them too, but a VIP without moved flows makes none); at most once a second."""
        if now - self._history_swept < HISTORY_SWEEP_SECONDS:
            return
        self._history_swept = now
        for state in self.vips.values():
            if state.history:
                state.history.recent(now, state.vip.second_chance_window)

    def rebuild_now(self, requests: Iterable[TableRequest], now: float | None = None) -> None:
        """Build and install synchronously (CLI, tests; the controller uses a worker)."""
        for request in requests:
            self.install_table(request, self.cache.get_or_build(request.spec), now)

    # ---- the packet path -------------------------------------------------------------------

    def match(self, flow: Flow) -> VipState | None:
        return self._services.get((flow.dst, flow.dst_port, flow.proto))

    def pick(self, flow: Flow, now: float) -> Decision | None:
        """The backend for this packet's flow, recording new flows in the flow table."""
        self.counters.packets += 1
        state = self._services.get((flow.dst, flow.dst_port, flow.proto))
        if state is None:
            self.counters.not_vip += 1
            return None
        vip = state.vip
        key = flow_key(flow, vip.hash)
        non_syn = flow.is_tcp_non_syn
        backend_id = self.flows.get(key, now, non_syn)
        second = self.second_chance
        if backend_id is not None:
            backend = self.held_backend(state, backend_id)
            if backend is not None:
                if not second.records:
                    return Decision(vip, backend, backend_id, True, key)
                extra, undo = second.on_hit(state, key, non_syn, self.held_backend)
                return Decision(vip, backend, backend_id, True, key, extra, undo)
            self.forget_flow(key)
            self.counters.stale_entries += 1
        if vip.placement == PLACEMENT_PORT_BITS:
            index = port_slot(flow.src_port, vip.table_size)
        else:
            hashed = key if vip.hash == HASH_5TUPLE else hash_key(flow, vip.hash)  # same bytes
            index = flow_hash(hashed)
        name = state.table.lookup(index)
        if name is None:
            self.counters.no_backend += 1
            return None
        if name not in state.serving:
            self.counters.stale_table_drops += 1
            return None
        had = bool(second.records) and second.take(key)  # (a rule that duplicated it)
        extra: tuple[tuple[Backend, int], ...] = ()
        if non_syn and vip.second_chance != SECOND_CHANCE_OFF:
            name, extra = second.on_miss(state, index, name, flow, key, now, self._backends)
        backend_id = state.backend_ids[name]
        idle = vip.idle_timeout if self.entry_idle is None else self.entry_idle
        self.flows.put(key, backend_id, now, idle)
        backend = self._backends[backend_id][1]
        return Decision(vip, backend, backend_id, False, key, extra, had and not extra)

    def forget_flow(self, key: bytes) -> None:
        """The flow is over (or its entry stale): its entry and any duplication go."""
        self.flows.remove(key)
        if self.second_chance.records:
            self.second_chance.take(key)

    def held_backend(self, state: VipState, backend_id: int) -> Backend | None:
        """The backend a flow-table entry of ``state``'s VIP (naming ``backend_id``) holds its
        flow to, or None if the entry is stale: its backend was retired (its id with it: some
        seconds after it went down, ``serving.retire_grace``) or went away, or the entry
        belongs to another VIP.  A backend DOWN but not yet retired, or draining (weight 0),
        holds its entries.  The one rule for placing packets (``pick``) and answering
        lookups."""
        owner = self._backends.get(backend_id)
        if owner is not None and owner[0] == state.vip.name:
            return owner[1]
        return None

    def predict(self, flow: Flow) -> str | None:
        """What the VIP's placement alone says for this flow (no flow table, nothing
        recorded)."""
        state = self.match(flow)
        if state is None:
            return None
        vip = state.vip
        return state.table.lookup(placement_index(flow, vip.hash, vip.placement, vip.table_size))

    def backend_of(self, backend_id: int) -> tuple[str, Backend] | None:
        return self._backends.get(backend_id)

    def owners(self) -> dict[int, tuple[str, Backend]]:
        """A copy of backend id -> (VIP name, backend): one C-level copy, for views that name
        the backends of many flows away from the packet path."""
        return dict(self._backends)
