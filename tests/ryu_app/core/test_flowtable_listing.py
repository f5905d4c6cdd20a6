"""FlowTable.page / locate / offset_of: listing a big table a page at a time, at a cost that
does not grow with the depth of the page (issue 11, finding 3)."""

from __future__ import annotations

import pytest

from ryu_app.core.flowtable import PINNED, FlowTable

CAPACITY = 200_000  # several shards


def key(number: int) -> bytes:
    return number.to_bytes(13, "big")


def filled(entries: int, capacity: int = CAPACITY, idle: int = PINNED) -> FlowTable:
    table = FlowTable(capacity)
    for number in range(entries):
        table.put(key(number), number % 7, 0.0, idle)
    return table


def walk(table: FlowTable, limit: int, now: float = 1.0) -> list[list]:
    pages, position = [], (0, 0)
    while position is not None:
        listed, position = table.page(position, limit, now)
        pages.append(listed)
    return pages


class Untouchable(dict):
    """A shard that must not be looked at: listing it raises."""

    def items(self):
        raise AssertionError("a shard before the page was walked")

    def __iter__(self):
        raise AssertionError("a shard before the page was walked")


@pytest.mark.parametrize("limit", [1, 7, 1000, 5000])
def test_a_listing_sees_every_entry_once(limit):
    table = filled(20_000)
    assert table.shard_count > 4
    pages = walk(table, limit)
    keys = [entry[0] for page in pages for entry in page]
    assert sorted(keys) == [key(n) for n in range(20_000)]
    assert all(len(page) <= limit for page in pages)
    assert all((backend, expires) == (int.from_bytes(k, "big") % 7, None) for k, backend, expires in
               (e for page in pages for e in page))  # fmt: skip


def test_an_empty_table_lists_nothing():
    assert FlowTable(CAPACITY).page((0, 0), 100, 0.0) == ([], None)


def test_locate_and_offset_of_are_inverses_and_follow_listing_order():
    table = filled(5_000)
    order = [entry[0] for page in walk(table, 5_000) for entry in page]
    for offset in (0, 1, 777, 4_999):
        position = table.locate(offset)
        assert table.offset_of(position) == offset
        assert table.page(position, 1, 1.0)[0][0][0] == order[offset]
    assert table.locate(5_000) == (table.shard_count, 0)
    assert table.page(table.locate(5_000), 10, 1.0) == ([], None)


def test_a_deep_page_does_not_look_at_the_shards_before_it():
    table = filled(20_000)
    last = table.shard_count - 1
    for shard in range(last):
        table._shards[shard] = Untouchable(table._shards[shard])  # len() still works
    offset = table.offset_of((last, 3))
    listed, following = table.page(table.locate(offset), 5, 1.0)
    assert len(listed) == 5 and following == (last, 8)


def test_expired_entries_are_skipped_but_count_towards_the_page():
    table = FlowTable(100)
    for number in range(10):
        table.put(key(number), 1, 0.0, 1 if number % 2 else 60)  # odd ones expire at 1 s
    listed, following = table.page((0, 0), 4, 2.0)
    assert [k for k, _, _ in listed] == [key(0), key(2)] and following == (0, 4)
    assert {round(expires) for _, _, expires in listed} == {58}
    rest = [e for page in walk(table, 4, 2.0) for e in page]
    assert len(rest) == 5


def test_a_position_past_a_shard_that_shrank_moves_on():
    assert filled(50, capacity=100).page((0, 10_000), 10, 1.0) == ([], None)  # one shard
    table = filled(20_000)
    listed, following = table.page((0, 10_000), 3, 1.0)
    assert listed == table.page((1, 0), 3, 1.0)[0] and following == (1, 3)
