"""Tests for ryu_app.core.flowtable: the per-gateway flow table (idle expiry, LRU eviction)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

from ryu_app.core import flowtable
from ryu_app.core.flowtable import MAX_BACKEND_ID, MAX_IDLE_TIMEOUT, PINNED, FlowTable

# Times in these tests are integers or binary fractions (x.5, x.25, x.125): exact in floating
# point, so ``now * 1000`` is an exact whole number of milliseconds.


def counters(table: FlowTable) -> dict[str, int]:
    return asdict(table.counters)


def keys_in_order(table: FlowTable, now: float) -> list[bytes]:
    return [key for key, _, _ in table.items(now)]


# --------------------------------------------------------------------------------------------
# Basic use
# --------------------------------------------------------------------------------------------


def test_put_get_roundtrip():
    table = FlowTable(10)
    table.put(b"a", 7, 100.0, 30)
    table.put(b"b", MAX_BACKEND_ID, 100.0, 30)
    table.put(b"c", 0, 100.0, 30)
    assert len(table) == 3
    assert b"a" in table
    assert b"zzz" not in table
    assert table.get(b"a", 101.0) == 7
    assert table.get(b"b", 101.0) == MAX_BACKEND_ID
    assert table.get(b"c", 101.0) == 0  # backend 0 is a hit, not a falsy miss
    assert counters(table) == {
        "hits": 3,
        "misses": 0,
        "tcp_non_syn_misses": 0,
        "inserts": 3,
        "evictions": 0,
        "expirations": 0,
        "removals": 0,
    }


def test_replacing_a_key_changes_the_backend_and_is_not_an_insert():
    table = FlowTable(10)
    table.put(b"a", 1, 0.0, 30)
    table.put(b"a", 2, 0.0, 30)
    assert len(table) == 1
    assert table.get(b"a", 1.0) == 2
    assert table.counters.inserts == 1


def test_miss_counters():
    table = FlowTable(10)
    assert table.get(b"nope", 0.0) is None
    assert table.counters.misses == 1
    assert table.counters.tcp_non_syn_misses == 0
    assert table.counters.hits == 0


def test_tcp_non_syn_misses_are_counted_only_when_flagged():
    table = FlowTable(10)
    table.put(b"a", 1, 0.0, 30)
    assert table.get(b"x", 0.0, tcp_non_syn=False) is None
    assert table.get(b"x", 0.0) is None
    assert table.counters.tcp_non_syn_misses == 0
    assert table.get(b"x", 0.0, tcp_non_syn=True) is None
    assert table.counters.tcp_non_syn_misses == 1
    assert table.counters.misses == 3
    # A flagged hit is a hit, nothing else.
    assert table.get(b"a", 0.0, tcp_non_syn=True) == 1
    assert table.counters.tcp_non_syn_misses == 1
    assert table.counters.hits == 1
    # A flagged lookup of an expired entry is a (non-SYN) miss.
    assert table.get(b"a", 100.0, tcp_non_syn=True) is None
    assert table.counters.tcp_non_syn_misses == 2
    assert table.counters.misses == 4


# --------------------------------------------------------------------------------------------
# Idle expiry
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("put_time", [0.0, 10.5, 1234.25, 86400.125])
@pytest.mark.parametrize("idle", [1, 30, MAX_IDLE_TIMEOUT])
def test_entry_is_alive_before_the_idle_timeout_and_gone_at_it(put_time, idle):
    table = FlowTable(10)
    table.put(b"k", 3, put_time, idle)
    deadline = put_time + idle
    assert table.peek(b"k", deadline - 0.001) == 3
    assert list(table.items(deadline - 0.125)) == [(b"k", 3, 0.125)]
    assert table.peek(b"k", deadline) is None
    assert list(table.items(deadline)) == []
    assert table.get(b"k", deadline - 0.125) == 3  # refreshes: deadline + idle - 0.125 now
    table2 = FlowTable(10)
    table2.put(b"k", 3, put_time, idle)
    assert table2.get(b"k", deadline) is None
    assert table2.counters.expirations == 1
    assert table2.counters.misses == 1
    assert b"k" not in table2  # the expired entry was dropped by the failed lookup


def test_get_refreshes_the_idle_deadline():
    table = FlowTable(10)
    table.put(b"k", 3, 0.0, 10)
    assert table.get(b"k", 8.0) == 3  # deadline moves from 10 to 18
    assert table.peek(b"k", 17.5) == 3
    assert table.get(b"k", 17.5) == 3  # deadline moves to 27.5
    assert table.peek(b"k", 27.25) == 3
    assert table.peek(b"k", 27.5) is None
    assert table.get(b"k", 27.5) is None


def test_peek_does_not_refresh_the_deadline():
    table = FlowTable(10)
    table.put(b"k", 3, 0.0, 10)
    assert table.peek(b"k", 9.5) == 3
    assert table.peek(b"k", 10.0) is None


def test_put_over_an_existing_key_restarts_its_timer():
    table = FlowTable(10)
    table.put(b"k", 3, 0.0, 10)
    table.put(b"k", 3, 9.0, 10)
    assert table.peek(b"k", 18.5) == 3
    assert table.peek(b"k", 19.0) is None


def test_idle_timeouts_differ_per_entry():
    table = FlowTable(10)
    table.put(b"short", 1, 0.0, 5)
    table.put(b"long", 2, 0.0, 60)
    assert table.peek(b"short", 4.5) == 1
    assert table.peek(b"short", 5.0) is None
    assert table.peek(b"long", 5.0) == 2
    assert table.peek(b"long", 59.5) == 2
    assert table.peek(b"long", 60.0) is None
    # A refresh uses the entry's own timeout.
    assert table.get(b"long", 30.0) == 2
    assert table.peek(b"long", 89.5) == 2
    assert table.peek(b"long", 90.0) is None


def test_items_yields_live_entries_with_remaining_time_oldest_use_first():
    table = FlowTable(10)
    table.put(b"a", 1, 0.0, 10)
    table.put(b"b", 2, 1.0, 3)
    table.put(b"c", 3, 2.0, 20)
    assert table.get(b"a", 2.5) == 1  # a becomes the most recently used
    assert list(table.items(3.0)) == [(b"b", 2, 1.0), (b"c", 3, 19.0), (b"a", 1, 9.5)]
    assert list(table.items(4.0)) == [(b"c", 3, 18.0), (b"a", 1, 8.5)]  # b expired
    assert len(table) == 3  # items() only reads: b is still stored until swept
    assert counters(table)["expirations"] == 0


# --------------------------------------------------------------------------------------------
# LRU eviction
# --------------------------------------------------------------------------------------------


def test_eviction_at_capacity_drops_the_least_recently_inserted():
    table = FlowTable(3)
    for index, key in enumerate([b"a", b"b", b"c"]):
        table.put(key, index, 0.0, 60)
    table.put(b"d", 3, 1.0, 60)
    assert len(table) == 3
    assert b"a" not in table
    assert keys_in_order(table, 1.0) == [b"b", b"c", b"d"]
    assert table.counters.evictions == 1
    assert table.counters.inserts == 4


def test_eviction_drops_the_least_recently_used_not_inserted():
    table = FlowTable(3)
    for index, key in enumerate([b"a", b"b", b"c"]):
        table.put(key, index, 0.0, 60)
    assert table.get(b"a", 1.0) == 0  # a moves to the end: b is now the LRU entry
    table.put(b"d", 3, 2.0, 60)
    assert b"a" in table
    assert b"b" not in table
    assert keys_in_order(table, 2.0) == [b"c", b"a", b"d"]
    table.put(b"e", 4, 3.0, 60)
    assert b"c" not in table
    assert keys_in_order(table, 3.0) == [b"a", b"d", b"e"]
    assert table.counters.evictions == 2


def test_peek_does_not_protect_from_eviction():
    table = FlowTable(2)
    table.put(b"a", 0, 0.0, 60)
    table.put(b"b", 1, 0.0, 60)
    assert table.peek(b"a", 1.0) == 0
    table.put(b"c", 2, 1.0, 60)
    assert b"a" not in table
    assert b"b" in table


def test_replacing_a_key_at_capacity_does_not_evict():
    table = FlowTable(2)
    table.put(b"a", 0, 0.0, 60)
    table.put(b"b", 1, 0.0, 60)
    table.put(b"a", 5, 1.0, 60)  # replace: a moves to the end, nothing is evicted
    assert len(table) == 2
    assert table.counters.evictions == 0
    assert table.counters.inserts == 2
    assert keys_in_order(table, 1.0) == [b"b", b"a"]
    assert table.peek(b"a", 1.0) == 5
    table.put(b"c", 2, 2.0, 60)  # now b is the LRU entry
    assert b"b" not in table
    assert keys_in_order(table, 2.0) == [b"a", b"c"]


def test_capacity_one():
    table = FlowTable(1)
    table.put(b"a", 1, 0.0, 60)
    table.put(b"b", 2, 0.0, 60)
    assert len(table) == 1
    assert table.get(b"b", 0.0) == 2
    assert table.get(b"a", 0.0) is None
    assert table.counters.evictions == 1


# --------------------------------------------------------------------------------------------
# lazy expiry, remove, drop_backend
# --------------------------------------------------------------------------------------------


def test_an_expired_entry_is_never_answered_and_the_get_that_finds_it_drops_it():
    table = FlowTable(10)
    for index in range(5):
        table.put(bytes([index]), index, float(index), 10)  # deadlines 10, 11, 12, 13, 14
    assert keys_in_order(table, 9.5) == [bytes([index]) for index in range(5)]
    assert keys_in_order(table, 12.0) == [bytes([3]), bytes([4])]
    assert [table.peek(bytes([index]), 12.0) for index in range(5)] == [None, None, None, 3, 4]
    page, _ = table.page((0, 0), 10, 12.0)
    assert [key for key, _, _ in page] == [bytes([3]), bytes([4])]
    assert len(table) == 5  # nothing sweeps the table by time
    assert table.get(bytes([0]), 12.0) is None
    assert len(table) == 4 and bytes([0]) not in table
    assert table.counters.expirations == 1 and table.counters.misses == 1
    assert table.count_by_backend() == {1: 1, 2: 1, 3: 1, 4: 1}


def test_an_entry_behind_a_longer_lived_one_still_expires_on_time():
    # Per-VIP timeouts: the front entry lives longer than the one behind it.
    table = FlowTable(10)
    table.put(b"long", 1, 0.0, 100)
    table.put(b"short", 2, 0.0, 5)
    assert keys_in_order(table, 10.0) == [b"long"]
    assert table.peek(b"short", 10.0) is None
    assert table.get(b"short", 10.0) is None
    assert b"short" not in table
    assert table.counters.expirations == 1


def test_a_get_refreshes_the_idle_timer():
    table = FlowTable(10)
    table.put(b"a", 1, 0.0, 10)
    table.put(b"b", 2, 0.0, 10)
    assert table.get(b"a", 5.0) == 1  # a: deadline 15 and moved behind b
    assert keys_in_order(table, 12.0) == [b"a"]
    assert table.get(b"b", 12.0) is None
    assert table.get(b"a", 14.5) == 1


def test_remove():
    table = FlowTable(10)
    table.put(b"a", 1, 0.0, 10)
    assert table.remove(b"a") is True
    assert b"a" not in table
    assert table.remove(b"a") is False
    assert table.remove(b"never") is False
    assert table.counters.removals == 1


def test_drop_backend_removes_only_that_backends_entries():
    table = FlowTable(10)
    table.put(b"a", 1, 0.0, 10)
    table.put(b"b", 2, 0.0, 10)
    table.put(b"c", 1, 0.0, 10)
    table.put(b"d", 3, 0.0, 10)
    table.put(b"e", 0, 0.0, 10)
    table.drop_backend(1)
    assert len(table) == 5, "dropped entries go when swept, not before"
    assert table.sweep() == 2
    assert sorted(key for key, _, _ in table.items(1.0)) == [b"b", b"d", b"e"]
    assert table.counters.removals == 2
    table.drop_backend(1)
    table.drop_backend(99)
    assert table.sweep() == 0 and not table.sweeping
    table.drop_backend(0)
    assert table.sweep() == 1
    assert b"e" not in table
    assert table.counters.removals == 3
    assert table.count_by_backend() == {2: 1, 3: 1}


def test_a_sweep_goes_a_slice_at_a_time_while_the_table_changes():
    table = FlowTable(1000)
    for index in range(300):
        table.put(index.to_bytes(2, "big"), index % 3, 0.0, PINNED)  # backends 0, 1, 2
    table.drop_backend(1)
    assert table.sweeping
    assert table.sweep(100) == 33  # keys 0..99: 1, 4, ..., 97
    table.remove((4).to_bytes(2, "big"))  # gone already: nothing to do
    table.remove((7).to_bytes(2, "big"))  # swept already
    table.remove((103).to_bytes(2, "big"))  # not yet swept: removed by hand
    table.put((106).to_bytes(2, "big"), 5, 0.0, PINNED)  # moved to another backend meanwhile
    table.put(b"new", 5, 0.0, PINNED)  # after the snapshot: not looked at, not backend 1
    table.drop_backend(2)  # waits for the next pass
    removed = table.sweep(100) + table.sweep(100)  # keys 100..299: the rest of the pass
    assert removed == 100 - 33 - 2  # backend 1's entries, less 103 (removed) and 106 (moved)
    assert table.sweeping, "backend 2's pass is still to come"
    assert table.count_by_backend() == {0: 100, 2: 100, 5: 2}
    assert table.sweep() == 100 and not table.sweeping
    assert table.count_by_backend() == {0: 100, 5: 2}
    assert table.sweep(100) == 0


def test_holds_tells_whether_any_entry_still_names_a_backend():
    table = FlowTable(10)
    table.put(b"a", 7, 0.0, 10)
    table.drop_backend(7)
    assert table.holds(7) and not table.holds(8)
    table.sweep()
    assert not table.holds(7)


def test_count_by_backend():
    table = FlowTable(10)
    assert table.count_by_backend() == {}
    table.put(b"a", 1, 0.0, 10)
    table.put(b"b", 2, 0.0, 10)
    table.put(b"c", 1, 0.0, 10)
    table.put(b"d", MAX_BACKEND_ID, 0.0, 10)
    assert table.count_by_backend() == {1: 2, 2: 1, MAX_BACKEND_ID: 1}
    table.put(b"c", 2, 0.0, 10)  # moved to another backend
    assert table.count_by_backend() == {1: 1, 2: 2, MAX_BACKEND_ID: 1}


# --------------------------------------------------------------------------------------------
# peek changes nothing
# --------------------------------------------------------------------------------------------


def test_peek_changes_nothing():
    table = FlowTable(3)
    table.put(b"a", 1, 0.0, 10)
    table.put(b"b", 2, 0.0, 10)
    table.put(b"c", 3, 0.0, 2)
    before_counters = counters(table)
    before_items = list(table.items(1.0))
    assert table.peek(b"a", 1.0) == 1
    assert table.peek(b"missing", 1.0) is None
    assert table.peek(b"c", 5.0) is None  # expired: still not removed, not counted
    assert counters(table) == before_counters
    assert list(table.items(1.0)) == before_items
    assert len(table) == 3
    assert b"c" in table


# --------------------------------------------------------------------------------------------
# Invalid arguments
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("capacity", [0, -1, True, 1.5, "10", None])
def test_invalid_capacity(capacity):
    with pytest.raises(ValueError, match="capacity"):
        FlowTable(capacity)


def test_default_capacity():
    assert FlowTable().capacity == 1_000_000


@pytest.mark.parametrize("backend_id", [-1, MAX_BACKEND_ID + 1, 1 << 32])
def test_backend_id_out_of_range(backend_id):
    table = FlowTable(10)
    with pytest.raises(ValueError, match="backend_id"):
        table.put(b"a", backend_id, 0.0, 10)
    assert len(table) == 0
    assert table.counters.inserts == 0


@pytest.mark.parametrize("idle_timeout", [-1, MAX_IDLE_TIMEOUT + 1, 100_000, 1.5])
def test_idle_timeout_out_of_range(idle_timeout):
    table = FlowTable(10)
    with pytest.raises(ValueError, match="idle_timeout"):
        table.put(b"a", 1, 0.0, idle_timeout)
    assert len(table) == 0
    assert table.counters.inserts == 0


def test_invalid_put_does_not_disturb_an_existing_entry():
    table = FlowTable(10)
    table.put(b"a", 1, 0.0, 10)
    with pytest.raises(ValueError):
        table.put(b"a", MAX_BACKEND_ID + 1, 1.0, 10)
    with pytest.raises(ValueError):
        table.put(b"a", 2, 1.0, -1)
    assert table.peek(b"a", 9.5) == 1


def test_a_pinned_entry_never_expires_by_time_but_goes_like_any_other():
    table = FlowTable(2)
    table.put(b"pinned", 7, 0.0, PINNED)
    table.put(b"idle", 8, 0.0, 1)
    assert table.get(b"pinned", 10**9) == 7
    assert table.peek(b"idle", 10**9) is None  # expired: never answered
    assert [(k, b, left) for k, b, left in table.items(10**9)] == [(b"pinned", 7, None)]
    table.put(b"third", 9, 10**9, PINNED)  # capacity 2: the least recently used goes
    assert b"idle" not in table and b"pinned" in table
    assert table.remove(b"pinned") and b"pinned" not in table


def test_counts_by_backend_follow_every_way_an_entry_leaves():
    table = FlowTable(3)
    for key, backend in ((b"a", 1), (b"b", 1), (b"c", 2)):
        table.put(key, backend, 0.0, 10)
    assert table.count_by_backend() == {1: 2, 2: 1}
    table.put(b"a", 2, 0.0, 10)  # moved to another backend
    assert table.count_by_backend() == {1: 1, 2: 2}
    table.put(b"d", 3, 0.0, 10)  # evicts b (least recently used)
    assert table.count_by_backend() == {2: 2, 3: 1}
    table.remove(b"d")
    table.drop_backend(2)
    table.sweep()
    assert table.count_by_backend() == {}
    table.put(b"e", 4, 0.0, 1)
    assert table.get(b"e", 5.0) is None  # expired on read
    assert table.count_by_backend() == {}


def test_extreme_fields_do_not_bleed_into_each_other():
    # Backend id, idle timeout and deadline share one packed int.
    table = FlowTable(10)
    now = 1_000_000_000.5  # a large clock value
    table.put(b"max", MAX_BACKEND_ID, now, MAX_IDLE_TIMEOUT)
    table.put(b"min", 0, now, 1)
    assert table.peek(b"max", now + MAX_IDLE_TIMEOUT - 0.5) == MAX_BACKEND_ID
    assert table.peek(b"max", now + MAX_IDLE_TIMEOUT) is None
    assert table.peek(b"min", now + 0.5) == 0
    assert table.peek(b"min", now + 1) is None
    assert list(table.items(now)) == [
        (b"max", MAX_BACKEND_ID, float(MAX_IDLE_TIMEOUT)),
        (b"min", 0, 1.0),
    ]
    assert table.get(b"max", now + 4000) == MAX_BACKEND_ID
    assert table.peek(b"max", now + 4000 + MAX_IDLE_TIMEOUT - 0.5) == MAX_BACKEND_ID


# --------------------------------------------------------------------------------------------
# Model-based test: FlowTable against a plain dict + explicit LRU order + deadlines
# --------------------------------------------------------------------------------------------

KEYS = st.sampled_from([b"a", b"b", b"c", b"d", b"e", b"f", b"g"])
BACKENDS = st.integers(min_value=0, max_value=3)
IDLE = st.integers(min_value=1, max_value=4)
TICKS = st.integers(min_value=0, max_value=48)  # clock steps of 1/8 s: up to 6 s


class FlowTableMachine(RuleBasedStateMachine):
    """The model keeps an OrderedDict (least recently used first) of key -> (backend, idle,
    deadline) and the counters, and mirrors each documented rule by hand."""

    @initialize(capacity=st.integers(min_value=1, max_value=5))
    def setup(self, capacity):
        self.table = FlowTable(capacity)
        self.capacity = capacity
        self.now = 0.0
        self.model: OrderedDict[bytes, tuple[int, int, float]] = OrderedDict()
        self.counts = dict.fromkeys(counters(self.table), 0)

    @rule(ticks=TICKS)
    def advance(self, ticks):
        self.now += ticks / 8

    @rule(key=KEYS, backend=BACKENDS, idle=IDLE)
    def put(self, key, backend, idle):
        self.table.put(key, backend, self.now, idle)
        if key in self.model:
            del self.model[key]
        else:
            self.counts["inserts"] += 1
            if len(self.model) >= self.capacity:
                self.model.popitem(last=False)
                self.counts["evictions"] += 1
        self.model[key] = (backend, idle, self.now + idle)

    @rule(key=KEYS, tcp_non_syn=st.booleans())
    def get(self, key, tcp_non_syn):
        expected = None
        entry = self.model.pop(key, None)
        if entry is not None:
            backend, idle, deadline = entry
            if deadline > self.now:
                self.model[key] = (backend, idle, self.now + idle)
                expected = backend
                self.counts["hits"] += 1
            else:
                self.counts["expirations"] += 1
        if expected is None:
            self.counts["misses"] += 1
            if tcp_non_syn:
                self.counts["tcp_non_syn_misses"] += 1
        assert self.table.get(key, self.now, tcp_non_syn=tcp_non_syn) == expected

    @rule(key=KEYS)
    def peek(self, key):
        entry = self.model.get(key)
        expected = entry[0] if entry is not None and entry[2] > self.now else None
        assert self.table.peek(key, self.now) == expected

    @rule(key=KEYS)
    def remove(self, key):
        present = self.model.pop(key, None) is not None
        if present:
            self.counts["removals"] += 1
        assert self.table.remove(key) is present

    @rule(backend=BACKENDS)
    def drop_backend(self, backend):
        doomed = [key for key, entry in self.model.items() if entry[0] == backend]
        for key in doomed:
            del self.model[key]
        self.counts["removals"] += len(doomed)
        self.table.drop_backend(backend)
        assert self.table.sweep() == len(doomed)
        assert not self.table.sweeping

    @invariant()
    def same_contents(self):
        assert len(self.table) == len(self.model) <= self.capacity
        live = [
            (key, backend, deadline - self.now)
            for key, (backend, _, deadline) in self.model.items()
            if deadline > self.now
        ]
        assert list(self.table.items(self.now)) == live
        by_backend: dict[int, int] = {}
        for backend, _, _ in self.model.values():
            by_backend[backend] = by_backend.get(backend, 0) + 1
        assert self.table.count_by_backend() == by_backend
        assert counters(self.table) == self.counts
        for key in self.model:
            assert key in self.table


FlowTableMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=60)
TestFlowTableAgainstModel = FlowTableMachine.TestCase


# --------------------------------------------------------------------------------------------
# shards (tables above SHARD_SIZE entries of capacity)
# --------------------------------------------------------------------------------------------


def test_a_big_table_is_sharded_and_a_small_one_is_not():
    assert len(FlowTable(flowtable.SHARD_SIZE)._shards) == 1
    assert len(FlowTable(1_000_000)._shards) == 64
    assert len(FlowTable(10**9)._shards) == flowtable.MAX_SHARDS


def test_a_sharded_table_keeps_its_capacity_and_its_recent_entries(monkeypatch):
    monkeypatch.setattr(flowtable, "SHARD_SIZE", 64)
    table = FlowTable(1024)  # 16 shards of ~64
    assert len(table._shards) == 16
    keys = [index.to_bytes(4, "big") for index in range(5000)]
    for index, key in enumerate(keys):
        table.put(key, index % 7, float(index), PINNED)
        assert len(table) <= 1024
    assert len(table) > 1024 - 16 * 2, "each shard evicts a little at a time"
    assert sum(table.count_by_backend().values()) == len(table)
    assert all(key in table for key in keys[-200:]), "the most recent keys stay"
    assert not any(key in table for key in keys[:2000]), "the oldest went"
    assert sorted(k for k, _, _ in table.items(0.0)) == sorted(k for k in keys if k in table)
    assert table.counters.evictions == 5000 - len(table)


def test_sweep_lazy_expiry_and_remove_reach_every_shard(monkeypatch):
    monkeypatch.setattr(flowtable, "SHARD_SIZE", 16)
    table = FlowTable(256)
    for index in [*range(1, 200, 2), *range(0, 200, 2)]:  # the expiring ones first, by age
        table.put(index.to_bytes(2, "big"), index % 4, 0.0, 10 if index % 2 else PINNED)
    table.drop_backend(2)
    assert table.sweep(60) + table.sweep(60) + table.sweep(60) + table.sweep(60) == 50
    assert 2 not in table.count_by_backend() and len(table) == 150
    expiring = [index.to_bytes(2, "big") for index in range(1, 200, 2)]  # backends 1 and 3
    assert all(table.get(key, 20.0) is None for key in expiring)  # 10 s timeouts: expired
    assert table.count_by_backend() == {0: 50} and len(table) == 50
    assert table.remove((4).to_bytes(2, "big")) and len(table) == 49
