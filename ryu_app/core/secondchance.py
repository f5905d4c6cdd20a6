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
from collections.abc import Callable
from typing import NamedTuple

from ryu_app.core.maglev import MaglevTable
from ryu_app.core.model import SECOND_CHANCE_DUPLICATE, SECOND_CHANCE_OFF

HISTORY_TABLES = 4  # replaced tables a VIP keeps, newest first
MAX_EXTRA = 2  # earlier owners a duplicated segment goes to, besides the current owner


class Replaced(NamedTuple):
    at: float  # when the table stopped answering (the caller's clock)
    table: MaglevTable


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

    def replaced(self, table: MaglevTable, now: float) -> None:
        """``table`` stops answering at ``now`` (an empty table, a new VIP's, is not kept)."""
        if table.names:
            self._replaced.appendleft(Replaced(now, table))

    def recent(self, now: float, window: float) -> tuple[MaglevTable, ...]:
        """The tables replaced within ``window`` seconds of ``now``, newest first; older ones
        are dropped for good."""
        replaced = self._replaced
        while replaced and now - replaced[-1].at > window:
            replaced.pop()
        return tuple(entry.table for entry in replaced)

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
    return earlier[:1]  # previous


DUPLICATED_CAPACITY = 65_536  # flows whose segments go to earlier owners too, at most


class Duplicated:
    """The flows this gateway duplicates (flow key -> the earlier owners' backend ids), so that
    a rule installed again (a reconnect, a lost rule) duplicates as the first one did.  The
    flow table's entry names the current owner; this holds the rest.  Bounded: beyond
    ``capacity`` the oldest record goes (counted), and that flow's rule, if installed again,
    sends to the current owner alone."""

    __slots__ = ("capacity", "evicted", "_ids")

    def __init__(self, capacity: int = DUPLICATED_CAPACITY) -> None:
        self.capacity = capacity
        self.evicted = 0
        self._ids: dict[bytes, tuple[int, ...]] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def __bool__(self) -> bool:
        return bool(self._ids)

    def put(self, key: bytes, ids: tuple[int, ...]) -> None:
        ids_of = self._ids
        ids_of.pop(key, None)
        ids_of[key] = ids
        while len(ids_of) > self.capacity:
            del ids_of[next(iter(ids_of))]
            self.evicted += 1

    def get(self, key: bytes) -> tuple[int, ...]:
        return self._ids.get(key, ())

    def discard(self, key: bytes) -> None:
        self._ids.pop(key, None)
