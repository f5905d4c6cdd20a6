"""One gateway's decisions: which VIP a packet is for and which backend gets its flow.

The pieces, all pure (time comes in as ``now``):

- a Maglev table per VIP over this gateway's *own* healthy set, shared between VIPs whose
  (table size, healthy backends and weights) are identical (``TableCache``);
- this gateway's flow table, consulted first so a flow keeps its backend while that backend is
  healthy (Maglev's rule: an entry whose backend is no longer healthy is dropped and the flow is
  re-hashed; entries on a draining backend, weight 0, stay).

Rebuilds happen only when a VIP's healthy set or weights change, and never on the packet path:
``set_health``/``set_vip`` return the ``TableRequest`` s that are now needed, the shell builds
them wherever it likes (``TableCache.build`` is a pure function) and hands each back with
``install_table``, a single reference swap.  Until then the previous table answers; if it names
a backend that has just gone down, the packet is dropped rather than sent to a dead VM (the
client's SYN retransmission arrives after the swap).
"""

from __future__ import annotations

import ipaddress
from array import array
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from ryu_app.core.flowkey import (
    HASH_5TUPLE,
    Flow,
    flow_hash,
    hash_key,
    parse_protocol,
    table_key,
)
from ryu_app.core.flowtable import MAX_BACKEND_ID, FlowTable
from ryu_app.core.health import NO_CHECKS
from ryu_app.core.maglev import MaglevTable, build_table
from topology.deployment import Backend, Vip

TableKey = tuple[int, tuple[tuple[str, int], ...]]


def table_key_for(table_size: int, backends: Iterable[tuple[str, int]]) -> TableKey:
    """The identity of a Maglev table: weight-0 backends own no slots, so they are left out."""
    return table_size, tuple(sorted((n, w) for n, w in backends if w > 0))


class TableCache:
    """Maglev tables by ``TableKey``, least recently used dropped beyond ``limit``."""

    def __init__(self, limit: int = 256):
        self.limit = limit
        self.builds = 0
        self.hits = 0
        self._tables: OrderedDict[TableKey, MaglevTable] = OrderedDict()

    @staticmethod
    def build(key: TableKey) -> MaglevTable:
        """Pure and thread-safe: safe to call from a worker thread."""
        table_size, backends = key
        return build_table(backends, table_size)

    def get(self, key: TableKey) -> MaglevTable | None:
        table = self._tables.get(key)
        if table is not None:
            self._tables.move_to_end(key)
            self.hits += 1
        return table

    def store(self, key: TableKey, table: MaglevTable) -> None:
        self._tables[key] = table
        self._tables.move_to_end(key)
        while len(self._tables) > self.limit:
            self._tables.popitem(last=False)

    def get_or_build(self, key: TableKey) -> MaglevTable:
        table = self.get(key)
        if table is None:
            table = self.build(key)
            self.builds += 1
            self.store(key, table)
        return table


@dataclass(frozen=True)
class TableRequest:
    vip: str
    key: TableKey


class Decision(NamedTuple):
    """Where one packet goes (a named tuple: one is made per packet-in)."""

    vip: Vip
    backend: Backend
    backend_id: int
    from_table: bool
    key: bytes  # the flow's flow-table key (``table_key``), for callers that track the flow


@dataclass
class VipState:
    vip: Vip
    backend_ids: dict[str, int]
    healthy: set[str]
    table_key: TableKey
    table: MaglevTable
    # The key of the table the VIP needs now: ``wanted_key()`` as of the last change of its
    # backends or healthy set (kept, so that asking whether the table is current is cheap).
    wanted: TableKey | None = None

    def wanted_key(self) -> TableKey:
        return table_key_for(
            self.vip.table_size,
            ((b.name, b.weight) for b in self.vip.backends if b.name in self.healthy),
        )

    @property
    def table_current(self) -> bool:
        """The table in use is the one the VIP's backends and healthy set call for."""
        return self.table_key == self.wanted


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
        self._services: dict[tuple[bytes, int, int], VipState] = {}
        self._backends: dict[int, tuple[str, Backend]] = {}  # id -> (vip name, backend)
        self._next_id = 1

    # ---- configuration ---------------------------------------------------------------------

    def set_vip(self, vip: Vip) -> list[TableRequest]:
        """Add or replace a VIP.  Backends that stay (same name, tunnel and MAC) keep their id
        and health; new backends start healthy (see health.py for why), and so do all the
        backends of a VIP whose health checks are off (``probed``: static backends)."""
        old = self.vips.get(vip.name)
        ids: dict[str, int] = {}
        healthy: set[str] = set()
        static = not probed(vip)
        for backend in vip.backends:
            previous = old.vip.backend(backend.name) if old else None
            same = previous is not None and (previous.tunnel_ip, previous.mac) == (
                backend.tunnel_ip,
                backend.mac,
            )
            ids[backend.name] = old.backend_ids[backend.name] if same else self._new_id()
            self._backends[ids[backend.name]] = (vip.name, backend)
            if static or not same or backend.name in old.healthy:
                healthy.add(backend.name)
        if old:
            self._forget(old, keep=set(ids.values()))
        # Keep answering with the old table until the new one is in (_request_if_needed).
        if old:
            state = VipState(vip, ids, healthy, old.table_key, old.table)
        else:
            state = VipState(vip, ids, healthy, None, MaglevTable(vip.table_size, (), array("h")))
        self.vips[vip.name] = state
        self._services[_service_of(vip)] = state
        return self._request_if_needed(state)

    def remove_vip(self, name: str) -> bool:
        state = self.vips.pop(name, None)
        if state is None:
            return False
        self._forget(state, keep=set())
        return True

    def _forget(self, state: VipState, keep: set[int]) -> None:
        self._services.pop(_service_of(state.vip), None)
        for backend_id in state.backend_ids.values():
            if backend_id not in keep:
                self._backends.pop(backend_id, None)

    def _new_id(self) -> int:
        """The next id that neither a backend nor a flow-table entry still uses (ids wrap)."""
        while True:
            backend_id = self._next_id
            self._next_id = self._next_id + 1 if self._next_id < MAX_BACKEND_ID else 1
            if backend_id not in self._backends and not self.flows.holds(backend_id):
                return backend_id

    # ---- health and tables -----------------------------------------------------------------

    def set_health(self, vip_name: str, backend_name: str, healthy: bool) -> list[TableRequest]:
        """Record this gateway's verdict on one backend.  Going down also forgets its flows."""
        state = self.vips[vip_name]
        if backend_name not in state.backend_ids:
            raise KeyError(f"VIP {vip_name!r} has no backend {backend_name!r}")
        if healthy == (backend_name in state.healthy):
            return []
        if healthy:
            state.healthy.add(backend_name)
        else:
            state.healthy.discard(backend_name)
            self._retire(state, backend_name)
        return self._request_if_needed(state)

    def _retire(self, state: VipState, backend_name: str) -> None:
        """A backend went down: its flows are over.  Its id is retired (the flow table sweeps
        the entries that name it, a slice at a time; ``pick`` treats a hit on it as stale) and
        it gets a new one, so flows it takes after coming back are told apart from those."""
        old_id = state.backend_ids[backend_name]
        self.flows.drop_backend(old_id)
        self._backends.pop(old_id, None)
        new_id = self._new_id()
        state.backend_ids[backend_name] = new_id
        self._backends[new_id] = (state.vip.name, state.vip.backend(backend_name))

    def _request_if_needed(self, state: VipState) -> list[TableRequest]:
        key = state.wanted = state.wanted_key()
        if key == state.table_key:
            return []
        table = self.cache.get(key)
        if table is not None:
            self._swap(state, key, table)
            return []
        return [TableRequest(state.vip.name, key)]

    def install_table(self, request: TableRequest, table: MaglevTable) -> bool:
        """Swap in a table built for ``request``; False if the VIP changed meanwhile."""
        self.cache.store(request.key, table)
        state = self.vips.get(request.vip)
        if state is None or state.wanted != request.key:
            return False
        self._swap(state, request.key, table)
        return True

    def wants(self, request: TableRequest) -> bool:
        """Whether the VIP still waits for this table (False: it changed since, is gone, or
        has the table already): a failed build is retried only while this holds."""
        state = self.vips.get(request.vip)
        return state is not None and state.wanted == request.key and not state.table_current

    def _swap(self, state: VipState, key: TableKey, table: MaglevTable) -> None:
        # The table before its key: a reader on another thread that sees the new key (the
        # REST side asking whether a change's table is in) then finds the table in place too.
        state.table = table
        state.table_key = key
        self.counters.table_installs += 1

    def rebuild_now(self, requests: Iterable[TableRequest]) -> None:
        """Build and install synchronously (CLI, tests; the controller uses a worker)."""
        for request in requests:
            self.install_table(request, self.cache.get_or_build(request.key))

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
        key = table_key(flow, vip.hash)
        backend_id = self.flows.get(key, now, flow.is_tcp_non_syn)
        if backend_id is not None:
            owner = self._backends.get(backend_id)
            if owner is not None and owner[0] == vip.name and owner[1].name in state.healthy:
                return Decision(vip, owner[1], backend_id, True, key)
            self.flows.remove(key)
            self.counters.stale_entries += 1
        hashed = key if vip.hash == HASH_5TUPLE else hash_key(flow, vip.hash)  # same bytes
        name = state.table.lookup(flow_hash(hashed))
        if name is None:
            self.counters.no_backend += 1
            return None
        if name not in state.healthy:
            self.counters.stale_table_drops += 1
            return None
        backend_id = state.backend_ids[name]
        idle = vip.idle_timeout if self.entry_idle is None else self.entry_idle
        self.flows.put(key, backend_id, now, idle)
        return Decision(vip, self._backends[backend_id][1], backend_id, False, key)

    def predict(self, flow: Flow) -> str | None:
        """What the hash alone says for this flow (no flow table, nothing recorded)."""
        state = self.match(flow)
        if state is None:
            return None
        return state.table.lookup(flow_hash(hash_key(flow, state.vip.hash)))

    def backend_of(self, backend_id: int) -> tuple[str, Backend] | None:
        return self._backends.get(backend_id)

    def owners(self) -> dict[int, tuple[str, Backend]]:
        """A copy of backend id -> (VIP name, backend): one C-level copy, for views that name
        the backends of many flows away from the packet path."""
        return dict(self._backends)


def probed(vip: Vip) -> bool:
    """Whether the VIP's backends are health-checked (``health.type`` ``none``: static
    backends, never probed and always counted healthy; weight 0 still drains)."""
    return vip.health.type != NO_CHECKS


def _service_of(vip: Vip) -> tuple[bytes, int, int]:
    return ipaddress.ip_address(vip.address).packed, vip.port, parse_protocol(vip.protocol)
