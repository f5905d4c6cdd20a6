"""The vectorized second-chance rule equals the core's (``secondchance.destinations``)."""

from __future__ import annotations

import numpy as np
import pytest

from fleetsim import rule
from fleetsim.fleet import TableBook, backend_name
from ryu_app.core import secondchance
from ryu_app.core.maglev import build_spec, table_spec

SIZE = 251


def spec(indices, weights=None):
    weights = weights or {}
    return table_spec(SIZE, [(backend_name(i), weights.get(i, 1)) for i in indices])


@pytest.mark.parametrize("mechanism", ["off", "previous", "duplicate"])
def test_every_slot_gets_the_cores_destinations(mechanism):
    rng = np.random.default_rng(7)
    book = TableBook(SIZE)
    specs = [spec(range(8)), spec([*range(1, 8), 9]), spec(range(8), {2: 3}), spec([0, 1, 2, 3, 9])]
    current, history = specs[-1], specs[:-1][::-1]  # newest first
    alive = np.zeros(10, bool)
    alive[rng.choice(10, 7, replace=False)] = True
    slots = np.arange(SIZE, dtype=np.int32)
    got = rule.destinations(
        mechanism, slots, book.table(current), [book.table(s) for s in history], alive
    )
    tables = tuple(build_spec(s) for s in history)
    now = build_spec(current)
    for slot in range(SIZE):
        expected = secondchance.destinations(
            mechanism,
            slot,
            now.lookup(slot),
            tables,
            lambda name: bool(alive[int(name[2:])]),
        )
        row = [backend_name(i) for i in got[slot] if i != rule.NONE]
        assert tuple(row) == expected, slot


def test_a_table_maps_to_global_backend_indices():
    book = TableBook(SIZE)
    table = book.table(spec([3, 5, 8]))
    assert set(np.unique(table).tolist()) == {3, 5, 8}
    assert book.table(spec([])).tolist() == [rule.NONE] * SIZE
