"""The per-gateway flow table: flow key -> backend id, with idle expiry and LRU eviction.

It is each gateway's own memory of the flows it has placed (Maglev section 3.3's connection
tracking table, Katran's LRU).  Gateways never share it; it only has to make this gateway keep
its own earlier choices, e.g. for the 2-5 packet-ins a new TCP connection brings before its rule
is installed, or for flows that stay on a draining backend.

Layout, chosen for memory (the target is <= 200 bytes per entry at 1,000,000 entries):

- ``dict`` s from key bytes to one ``int``, relying on dict insertion order for the LRU order
  (a hit re-inserts the key at the end; eviction pops from the front, in batches of 1/128 of
  a shard).  A table of more than ``SHARD_SIZE`` entries is split into
  shards by the key's hash, each its own LRU (Katran's LRUs are per CPU): a million-entry
  dict under churn rebuilds itself in one ~70 ms stop, a shard in well under a millisecond;
- the ``int`` packs ``deadline_ms << 32 | idle_ms_code << 20 | backend_id`` so an entry is a
  key object, a value object and a dict slot: no tuples, no per-entry objects of our own.

An idle timeout of 0 pins an entry: it never expires by time, only when removed, dropped with
its backend or evicted at capacity (a gateway's entries: its switch rule carries the flow's
packets and the switch's flow-removed message ends the entry).

An entry with an idle timeout expires lazily: ``get`` checks its deadline and drops it then,
``peek``, ``items`` and ``page`` skip it, and at capacity it is evicted like any other (nothing
sweeps the table by time: a gateway's entries are pinned, see above).

Time is the caller's ``now`` in seconds (any monotonic clock); nothing here reads a clock.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

MAX_BACKEND_ID = (1 << 20) - 1
MAX_IDLE_TIMEOUT = 4095  # seconds; fits the 12-bit field
EVICT_BATCH_DIVISOR = 128  # a full table drops this fraction of a shard at once (see _evict)
# A big table is split into shards (plain dicts, chosen by the key's hash) of about this many
# entries at capacity: a dict that keeps taking new keys and losing old ones rebuilds itself
# from time to time, which for one dict of a million entries stopped everything for ~70 ms.
SHARD_SIZE = 16_384
MAX_SHARDS = 256
PINNED = 0  # idle timeout of an entry that never expires by time
_NEVER_MS = 1 << 52  # the deadline of a pinned entry
_BACKEND_MASK = (1 << 20) - 1
_IDLE_SHIFT = 20
_IDLE_MASK = (1 << 12) - 1
_DEADLINE_SHIFT = 32

Position = tuple[int, int]  # (shard, index in that shard's order): where a listing resumes
Listed = tuple[bytes, int, float | None]  # key, backend id, seconds to idle expiry (None: pinned)


@dataclass
class FlowTableCounters:
    hits: int = 0
    misses: int = 0
    tcp_non_syn_misses: int = 0
    inserts: int = 0
    evictions: int = 0
    expirations: int = 0
    removals: int = 0


class FlowTable:
    """Flow key bytes -> backend id (0..2**20-1)."""

    def __init__(self, capacity: int = 1_000_000):
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be a positive integer, got {capacity!r}")
        self.capacity = capacity
        self.counters = FlowTableCounters()
        shards = 1
        while shards < MAX_SHARDS and capacity // shards > SHARD_SIZE:
            shards *= 2
        self._shards: list[dict[bytes, int]] = [{} for _ in range(shards)]
        self._mask = shards - 1
        self._size = 0
        self._per_backend: dict[int, int] = {}  # backend id -> entries (kept, not counted)
        self._doomed: set[int] = set()  # dropped backends whose entries the next pass removes
        self._sweeping: frozenset[int] = frozenset()  # ... and those the current pass removes
        self._sweep: Iterator[bytes] | None = None  # keys of the shard being swept, still to see
        self._sweep_shard = 0  # the shard the current pass is at (0 between passes)

    def _shard(self, key: bytes) -> dict[bytes, int]:
        return self._shards[hash(key) & self._mask]

    def __len__(self) -> int:
        return self._size

    def __contains__(self, key: bytes) -> bool:
        return key in self._shard(key)

    def get(self, key: bytes, now: float, tcp_non_syn: bool = False) -> int | None:
        """The backend id of a live entry (refreshing its idle timer), or None on a miss.

        ``tcp_non_syn`` marks a miss of a TCP packet that cannot open a connection: the flow was
        started on another gateway or before a restart.  Such misses are counted separately.
        """
        entries = self._shard(key)
        packed = entries.pop(key, None)
        if packed is not None:
            now_ms = int(now * 1000)
            if packed >> _DEADLINE_SHIFT > now_ms:
                idle_ms = ((packed >> _IDLE_SHIFT) & _IDLE_MASK) * 1000
                if idle_ms:  # pinned entries keep their (endless) deadline
                    low = packed & ((1 << _DEADLINE_SHIFT) - 1)
                    packed = (now_ms + idle_ms) << _DEADLINE_SHIFT | low
                entries[key] = packed
                self.counters.hits += 1
                return packed & _BACKEND_MASK
            self._forget(packed)
            self.counters.expirations += 1
        self.counters.misses += 1
        if tcp_non_syn:
            self.counters.tcp_non_syn_misses += 1
        return None

    def peek(self, key: bytes, now: float) -> int | None:
        """Like ``get`` but changes nothing: no counters, no refresh, no LRU move."""
        packed = self._shard(key).get(key)
        if packed is None or packed >> _DEADLINE_SHIFT <= int(now * 1000):
            return None
        return packed & _BACKEND_MASK

    def put(self, key: bytes, backend_id: int, now: float, idle_timeout: int) -> None:
        """Insert or replace an entry; a full table first evicts least recently used entries
        of the key's shard (``_evict``)."""
        if type(backend_id) is not int or not 0 <= backend_id <= MAX_BACKEND_ID:
            raise ValueError(
                f"backend_id must be an integer 0..{MAX_BACKEND_ID}, got {backend_id!r}"
            )
        if type(idle_timeout) is not int or not 0 <= idle_timeout <= MAX_IDLE_TIMEOUT:
            raise ValueError(
                f"idle_timeout must be 1..{MAX_IDLE_TIMEOUT} s (0: pinned), got {idle_timeout}"
            )
        entries = self._shard(key)
        old = entries.pop(key, None)
        if old is None:
            self.counters.inserts += 1
            if self._size >= self.capacity:
                self._evict(entries)
        else:
            self._forget(old)
        per_backend = self._per_backend
        per_backend[backend_id] = per_backend.get(backend_id, 0) + 1
        deadline_ms = int(now * 1000) + idle_timeout * 1000 if idle_timeout else _NEVER_MS
        entries[key] = deadline_ms << _DEADLINE_SHIFT | idle_timeout << _IDLE_SHIFT | backend_id
        self._size += 1

    def _evict(self, entries: dict[bytes, int]) -> None:
        """Make room: drop the least recently used 1/128 of one shard (at least one entry).

        In batches because a dict's oldest entry is found by scanning from the front of its
        slot array, over the slots that earlier removals emptied (until the dict compacts
        itself): one at a time, a full table of a million entries spent ~0.2 ms per new flow
        on that scan; a batch pays it once."""
        doomed = list(itertools.islice(entries, max(1, len(entries) // EVICT_BATCH_DIVISOR)))
        for key in doomed:
            self._forget(entries.pop(key))
        self.counters.evictions += len(doomed)

    def _forget(self, packed: int) -> None:
        """Keep the size and per-backend counts in step with an entry that left the table."""
        self._size -= 1
        backend_id = packed & _BACKEND_MASK
        left = self._per_backend[backend_id] - 1
        if left:
            self._per_backend[backend_id] = left
        else:
            del self._per_backend[backend_id]

    def remove(self, key: bytes) -> bool:
        packed = self._shard(key).pop(key, None)
        if packed is None:
            return False
        self._forget(packed)
        self.counters.removals += 1
        return True

    def drop_backend(self, backend_id: int) -> None:
        """Have every entry of one backend removed (it went down) by the coming ``sweep``s.

        Not at once: finding them means looking at every entry (~50 ms for a million), too
        long to hold up new flows.  Until swept they stay, so the caller must stop using the
        id at once (the balancer gives the backend a new one) and treat a hit on it as stale.
        """
        if backend_id in self._per_backend:
            self._doomed.add(backend_id)

    def sweep(self, limit: int | None = None) -> int:
        """Look at up to ``limit`` entries (None: all) for those of dropped backends and remove
        them; returns how many were removed.  A pass goes shard by shard over the keys each
        had when the pass reached it (the table may change between calls); ids dropped
        during a pass are swept by the next one."""
        removed = 0
        while limit is None or limit > 0:
            if self._sweep is None:
                if self._sweep_shard == 0:  # between passes
                    if not self._doomed:
                        break
                    self._sweeping, self._doomed = frozenset(self._doomed), set()
                self._sweep = iter(list(self._shards[self._sweep_shard]))
            looked, found = self._sweep_slice(self._shards[self._sweep_shard], limit)
            removed += found
            if limit is not None:
                if looked == limit:
                    break  # the budget is spent (the shard may or may not be done)
                limit -= looked
            self._sweep = None  # this shard is done: the next, or the pass is over
            self._sweep_shard = (self._sweep_shard + 1) % len(self._shards)
            if self._sweep_shard == 0:
                self._sweeping = frozenset()
        self.counters.removals += removed
        return removed

    def _sweep_slice(self, entries: dict[bytes, int], limit: int | None) -> tuple[int, int]:
        sweeping = self._sweeping
        looked = removed = 0
        for key in itertools.islice(self._sweep, limit):
            looked += 1
            packed = entries.get(key)
            if packed is not None and packed & _BACKEND_MASK in sweeping:
                del entries[key]
                self._forget(packed)
                removed += 1
        return looked, removed

    @property
    def sweeping(self) -> bool:
        """Entries of dropped backends may still be in the table."""
        return bool(self._sweeping or self._doomed)

    def holds(self, backend_id: int) -> bool:
        """Whether any entry (swept or not yet) names this backend id."""
        return backend_id in self._per_backend

    def items(self, now: float) -> Iterator[tuple[bytes, int, float | None]]:
        """(key, backend id, seconds until idle expiry or None if pinned) of live entries,
        shard by shard, oldest use first in each (one shard below ``SHARD_SIZE`` entries of
        capacity).  Lazy: the table must not change while the iterator is in use."""
        now_ms = int(now * 1000)
        for key, packed in itertools.chain.from_iterable(s.items() for s in self._shards):
            deadline_ms = packed >> _DEADLINE_SHIFT
            if deadline_ms == _NEVER_MS:
                yield key, packed & _BACKEND_MASK, None
            elif deadline_ms > now_ms:
                yield key, packed & _BACKEND_MASK, (deadline_ms - now_ms) / 1000

    # ---- listing a page at a time ------------------------------------------------------------

    @property
    def shard_count(self) -> int:
        return len(self._shards)

    def locate(self, offset: int) -> Position:
        """The position of the ``offset``-th entry in listing order (shards in turn, each oldest
        use first), found from the shards' sizes: O(shards), not O(offset)."""
        for shard, entries in enumerate(self._shards):
            if offset < len(entries):
                return shard, offset
            offset -= len(entries)
        return len(self._shards), 0  # past the end

    def offset_of(self, position: Position) -> int:
        """How many entries come before ``position`` in listing order (``locate``'s inverse)."""
        shard, index = position
        return sum(len(entries) for entries in self._shards[:shard]) + index

    def page(self, start: Position, limit: int, now: float) -> tuple[list[Listed], Position | None]:
        """The live entries among the next ``limit`` from ``start`` (a shard, and a position in
        that shard's order), and where the page after begins (None: the listing is over).

        Cheap at any depth, so that a listing never holds up new flows: the shards before
        ``start`` are not looked at, and reaching ``start`` within its shard is a skip at C
        speed over at most one shard (~16k entries at a capacity of a million, ~0.2 ms).  A
        page holds fewer than ``limit`` entries when some it looked at had expired; only
        None says the end.  Positions are not keys: an entry that is used (moved to the end
        of its shard), added or removed while a listing goes on may be missed or listed
        twice; the others are listed once."""
        shard, index = start
        now_ms = int(now * 1000)
        listed: list[Listed] = []
        looked = 0
        while shard < len(self._shards) and looked < limit:
            entries = self._shards[shard]
            wanted = limit - looked
            chunk = list(itertools.islice(entries.items(), index, index + wanted))
            looked += len(chunk)
            index += len(chunk)
            for key, packed in chunk:
                deadline_ms = packed >> _DEADLINE_SHIFT
                if deadline_ms == _NEVER_MS:
                    listed.append((key, packed & _BACKEND_MASK, None))
                elif deadline_ms > now_ms:
                    listed.append((key, packed & _BACKEND_MASK, (deadline_ms - now_ms) / 1000))
            if len(chunk) < wanted or index >= len(entries):
                shard, index = shard + 1, 0  # this shard is done
        return listed, ((shard, index) if shard < len(self._shards) else None)

    def count_by_backend(self) -> dict[int, int]:
        """Entries per backend id, O(backends); expired entries that no ``get`` has dropped
        yet are counted too."""
        return dict(self._per_backend)
