"""Second chance at the gateway: where a TCP segment of a connection this gateway never saw goes
when the backend set changed lately (the "double change": a backend change, then an ECMP move).

Why: a gateway's flow table keeps each flow it placed on its backend through a drain, an added
backend or a weight change (``balancer.held_backend``).  A flow that ECMP moves to another
gateway finds no entry there and is hashed with that gateway's current table: if the change
moved the flow's slot, the segment reaches a VM that never saw the connection, which answers
RST.  Maglev accepts this; GLB Director and Beamer fix it with code on every backend host (a
netfilter module, a kernel module).  Here the gateway remembers the tables it replaced and sends
such a segment to the slot's earlier owners too; nothing runs on the backends.

The rule (``destinations``), for a TCP segment without SYN that misses this gateway's flow
table, in a VIP whose ``second_chance`` is on:

- the *earlier owners* of the flow's slot are its owners in the tables this gateway replaced in
  the last ``second_chance_window`` seconds (newest first, at most ``HISTORY_TABLES``) that
  differ from the current owner, each once, and are still *alive* here: in the VIP and in this
  gateway's healthy set (a draining backend, weight 0, is alive; a down or removed one is not:
  its connections are gone with it);
- ``previous`` sends the segment to the newest earlier owner alone (Beamer's daisy chain, one
  hop, at the gateway): right for every connection older than the change, wrong for one that
  began on the new owner after it (that one now breaks: the simulator counts them);
- ``duplicate`` sends it to the current owner and to the earlier owners (at most
  ``MAX_EXTRA``): right for both, if the backend that does not have the connection drops the
  segment silently instead of answering RST, which is one firewall rule on the VM (drop TCP
  non-SYN packets that conntrack sees as new or invalid; docs/deployment.md).  The cost: the
  moved flows of changed slots are carried twice on the gateway-to-VM leg while they last.

SYNs, packets of flows in the table, other protocols and VIPs with ``second_chance: off`` keep
the current table's answer.  Pure: the caller gives ``now``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from typing import NamedTuple, Protocol

from ryu_app.core import pipeline
from ryu_app.core.flowkey import Flow
from ryu_app.core.maglev import MaglevTable, TableSpec
from ryu_app.core.model import (
    SECOND_CHANCE_DUPLICATE,
    SECOND_CHANCE_OFF,
    SECOND_CHANCE_PREVIOUS,
    Backend,
    Vip,
)

HISTORY_TABLES = 4  # replaced tables a VIP keeps, newest first
MAX_EXTRA = 2  # earlier owners a duplicated segment goes to, besides the current owner


# How a VIP finds a flow's slot (placement, hash, table size): a replaced table says where a
# flow was only to a VIP that still finds slots the same way.
Slotting = tuple[str, str, int]


def slotting(vip: Vip) -> Slotting:
    return (vip.placement, vip.hash, vip.table_size)


class Replaced(NamedTuple):
    at: float  # when the table stopped answering (the caller's clock)
    table: MaglevTable
    slotting: Slotting  # of the VIP it answered for
    spec: TableSpec | None = None  # what it was built from (what the state file keeps)


class KeptTable(NamedTuple):
    """A table of a VIP's history as the state file keeps it, so that a restarted controller
    has the history too: when it was replaced (wall clock; None: the table in use when the
    file was written, which the restart replaces), what it was built from, and how its VIP
    found slots."""

    at: float | None
    spec: TableSpec
    slotting: Slotting


class TableHistory:
    """The tables one VIP replaced, newest first, bounded in number and age.

    The tables are the immutable ones the ``TableCache`` shares, so keeping one costs a
    reference while the cache still holds it, and its slots (2 bytes each) once it does not."""

    __slots__ = ("_replaced",)

    def __init__(self) -> None:
        self._replaced: deque[Replaced] = deque(maxlen=HISTORY_TABLES)

    def __len__(self) -> int:
        return len(self._replaced)

    def __bool__(self) -> bool:
        return bool(self._replaced)

    def replaced(
        self, table: MaglevTable, now: float, found_by: Slotting, spec: TableSpec | None = None
    ) -> None:
        """``table`` stops answering at ``now`` (an empty table, a new VIP's, is not kept).  A
        table already kept moves to the front: a backend that flaps down and up swaps two
        tables back and forth, and must not push an older change (a drain) out."""
        if not table.names:
            return
        replaced = self._replaced
        for entry in replaced:
            if entry.table is table:
                replaced.remove(entry)
                break
        replaced.appendleft(Replaced(now, table, found_by, spec))

    def recent(
        self, now: float, window: float, found_by: Slotting | None = None
    ) -> tuple[MaglevTable, ...]:
        """The tables replaced within ``window`` seconds of ``now`` (and answering a VIP that
        found slots as ``found_by`` does, if given), newest first; older ones are dropped for
        good."""
        replaced = self._replaced
        while replaced and now - replaced[-1].at > window:
            replaced.pop()
        return tuple(e.table for e in replaced if found_by is None or e.slotting == found_by)

    def kept(self, now: float, window: float) -> tuple[Replaced, ...]:
        """The entries within ``window`` of ``now``, newest first (older ones dropped)."""
        self.recent(now, window)
        return tuple(self._replaced)

    def restore(self, entries: list[Replaced]) -> None:
        """Take an earlier run's entries (any order): newest first, bounded as ever."""
        for entry in sorted(entries, key=lambda e: e.at):
            self.replaced(entry.table, entry.at, entry.slotting, entry.spec)

    def clear(self) -> None:
        self._replaced.clear()


def earlier_owners(
    index: int,
    current: str,
    tables: tuple[MaglevTable, ...],
    alive: Callable[[str], bool],
) -> tuple[str, ...]:
    """The slot's owners in ``tables`` (newest first) other than ``current``, each once, that
    are still ``alive``; at most ``MAX_EXTRA``."""
    found: list[str] = []
    for table in tables:
        owner = table.lookup(index)
        if owner is None or owner == current or owner in found or not alive(owner):
            continue
        found.append(owner)
        if len(found) == MAX_EXTRA:
            break
    return tuple(found)


def destinations(
    mode: str,
    index: int,
    current: str,
    tables: tuple[MaglevTable, ...],
    alive: Callable[[str], bool],
) -> tuple[str, ...]:
    """Where a TCP non-SYN segment that missed the flow table goes (the module's rule):
    the first name is the one the flow's entry records."""
    if mode == SECOND_CHANCE_OFF or not tables:
        return (current,)
    earlier = earlier_owners(index, current, tables, alive)
    if not earlier:
        return (current,)
    if mode == SECOND_CHANCE_DUPLICATE:
        return (current, *earlier)
    if mode == SECOND_CHANCE_PREVIOUS:
        return earlier[:1]
    raise ValueError(f"unknown second_chance mode {mode!r}")


# ---- the flows a gateway duplicates ------------------------------------------------------

DUPLICATED_CAPACITY = 65_536  # flows whose segments go to earlier owners too, at most


class Record(NamedTuple):
    """A duplicated flow: its VIP, the flow (to name its rule), the backend its flow-table entry
    names (the current owner) and the earlier owners that get its packets too."""

    vip: str
    flow: Flow
    primary: int
    extra: tuple[int, ...]


class VipView(Protocol):
    """What second chance reads of a VIP's state (``balancer.VipState``)."""

    vip: Vip
    history: TableHistory
    backend_ids: dict[str, int]

    def alive(self, name: str) -> bool: ...


Held = Callable[[VipView, int], Backend | None]  # ``Balancer.held_backend``


class SecondChance:
    """One gateway's second chance: the rule applied to a TCP non-SYN miss (``on_miss``), the
    flows it duplicates (flow key -> ``Record``, bounded: beyond ``capacity`` the oldest goes,
    counted, and that flow's rule keeps what it has), and what ends a duplication
    (``on_hit``: a SYN on the flow's 5-tuple or no earlier owner left; ``forget``; ``undo``:
    the VIP turned it off or went, a backend left or was retired)."""

    def __init__(self, capacity: int = DUPLICATED_CAPACITY) -> None:
        self.capacity = capacity
        self.records: dict[bytes, Record] = {}
        self.evicted = 0
        self.previous = 0  # misses sent to an earlier owner alone
        self.duplicated = 0  # misses sent to the current and earlier owners

    def __len__(self) -> int:
        return len(self.records)

    def on_miss(
        self,
        state: VipView,
        index: int,
        current: str,
        flow: Flow,
        key: bytes,
        now: float,
        owners: Mapping[int, tuple[str, Backend]],
    ) -> tuple[str, tuple[tuple[Backend, int], ...]]:
        """A TCP non-SYN miss of a second-chance VIP (``destinations``): the backend its entry
        names, and the earlier owners that get its packets too (recorded)."""
        vip = state.vip
        tables = state.history.recent(now, vip.second_chance_window, slotting(vip))
        names = destinations(vip.second_chance, index, current, tables, state.alive)
        if names[0] != current:
            self.previous += 1
        if len(names) == 1:
            return names[0], ()
        self.duplicated += 1
        ids = tuple(state.backend_ids[name] for name in names[1:])
        self._put(key, Record(vip.name, flow, state.backend_ids[names[0]], ids))
        return names[0], tuple((owners[i][1], i) for i in ids)

    def on_hit(
        self, state: VipView, key: bytes, non_syn: bool, held: Held
    ) -> tuple[tuple[tuple[Backend, int], ...], bool]:
        """A flow-table hit of a flow this gateway duplicates: the earlier owners it still
        goes to (held and alive here), and whether its duplicating rule must go (a SYN: a new
        connection on the same 5-tuple; the VIP no longer duplicates; none of them left)."""
        record = self.records.get(key)
        if record is None:
            return (), False
        extra = ()
        if non_syn and state.vip.second_chance == SECOND_CHANCE_DUPLICATE:
            extra = tuple(
                (backend, backend_id)
                for backend_id in record.extra
                if (backend := held(state, backend_id)) is not None and state.alive(backend.name)
            )
        if extra:
            return extra, False
        del self.records[key]
        return (), True

    def take(self, key: bytes) -> bool:
        """Forget the flow's record, if any: whether there was one (its rule duplicates)."""
        return self.records.pop(key, None) is not None

    def undo(
        self, vip: str, gone: frozenset[int] = frozenset(), every: bool = False
    ) -> list[tuple[bytes, Record]]:
        """Forget the VIP's records that name a backend id in ``gone`` (or all of them,
        ``every``): those whose rules must send to one backend again (or go).  A VIP change
        that names no gone backend and keeps duplicating looks at no record."""
        if not self.records or not (every or gone):
            return []
        undone = [
            (key, record)
            for key, record in self.records.items()
            if record.vip == vip
            and (every or record.primary in gone or not gone.isdisjoint(record.extra))
        ]
        for key, _ in undone:
            del self.records[key]
        return undone

    def _put(self, key: bytes, record: Record) -> None:
        records = self.records
        records.pop(key, None)
        records[key] = record
        while len(records) > self.capacity:
            del records[next(iter(records))]
            self.evicted += 1


def undo_rules(
    undone: list[tuple[bytes, Record]],
    vips: Mapping[str, VipView],
    held: Held,
    ports: pipeline.Ports,
) -> tuple[list[bytes], list[bytes]]:
    """The messages that end the duplication of ``undone`` flows: each duplicating rule goes,
    and a rule to the flow's current owner takes its place while that owner still holds the
    flow; and the keys of the flows that got such a rule."""
    messages: list[bytes] = []
    rewritten: list[bytes] = []
    for key, record in undone:
        messages.append(pipeline.delete_duplicating_rule(record.flow, ports.uplink))
        state = vips.get(record.vip)
        owner = held(state, record.primary) if state is not None else None
        if owner is None:
            continue  # (its rules went with its id)
        vip = state.vip
        actions = pipeline.backend_actions(owner.mac, owner.tunnel_ip, vip.vni, ports.tunnel)
        messages.append(pipeline.flow_rule(record.flow, vip, record.primary, actions, ports.uplink))
        rewritten.append(key)
    return messages, rewritten
