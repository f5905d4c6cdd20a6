"""The numpy fill (``maglev_vector``) gives the plain loop's table slot for slot: for any
backends, weights, prime or power-of-two size, and however its batches are cut."""

import contextlib
import random
from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_maglev import GOLDEN, GOLDEN_WEIGHTED_251, THREE, letters

from ryu_app.core import maglev, maglev_vector
from ryu_app.core.maglev import (
    PERMUTATIONS,
    _populate,
    build_table,
    claim_schedule,
    vector_pays,
)
from ryu_app.core.maglev_reference import reference_table
from ryu_app.core.model import PLACEMENT_HASH, PLACEMENT_PORT_BITS

PRIMES = [7, 11, 17, 101, 251, 1009, 4099, 10007]
POWERS_OF_TWO = [2, 4, 16, 256, 1024, 4096, 16384]


@contextlib.contextmanager
def knobs(**values):
    """Set ``maglev_vector``'s batch knobs for a block (small values make small tables go
    through many batches, contests and window run-outs)."""
    saved = {name: getattr(maglev_vector, name) for name in values}
    for name, value in values.items():
        setattr(maglev_vector, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(maglev_vector, name, value)


def both_fills(weights: dict[str, int], size: int, placement: str):
    names = sorted(weights)
    permutations = [PERMUTATIONS[placement](name, size) for name in names]
    schedule = claim_schedule([weights[name] for name in names])
    plain = _populate(permutations, schedule, size)
    vector = maglev_vector.populate(permutations, schedule, size)
    return plain, vector.tolist()


@settings(max_examples=150, deadline=None)
@given(
    data=st.data(),
    placement=st.sampled_from([PLACEMENT_HASH, PLACEMENT_PORT_BITS]),
    tail=st.sampled_from([0, 3, 256]),
    fraction=st.sampled_from([0.1, 0.35, 0.9, 1.0]),
    margin=st.sampled_from([0.0, 0.15, 1.0]),
)
def test_property_vector_fill_equals_the_plain_loop(data, placement, tail, fraction, margin):
    size = data.draw(st.sampled_from(PRIMES if placement == PLACEMENT_HASH else POWERS_OF_TWO))
    names = data.draw(
        st.lists(
            st.text(alphabet="abcdefghij0123456789-", min_size=1, max_size=8),
            min_size=2,
            max_size=min(size, 60),
            unique=True,
        )
    )
    weights = {name: data.draw(st.integers(min_value=1, max_value=9)) for name in names}
    with knobs(TAIL_FREE=tail, BATCH_FRACTION=fraction, MARGIN=margin):
        plain, vector = both_fills(weights, size, placement)
    assert vector == plain


@pytest.mark.parametrize(
    ("count", "size", "placement"),
    [
        (100, 65537, PLACEMENT_HASH),
        (1000, 65537, PLACEMENT_HASH),
        (300, 262147, PLACEMENT_HASH),
        (100, 65536, PLACEMENT_PORT_BITS),
    ],
)
def test_big_tables_equal_the_plain_loop(count, size, placement):
    rng = random.Random(count + size)
    weights = {f"vm{i}": rng.choice([1, 1, 2, 5, 100]) for i in range(count)}
    plain, vector = both_fills(weights, size, placement)
    assert vector == plain


def test_a_slow_fixed_point_splits_the_batch_and_stays_exact():
    weights = {f"b{i}": 1 + i % 4 for i in range(40)}
    with knobs(MAX_SETTLE_ROUNDS=1, TAIL_FREE=0):
        plain, vector = both_fills(weights, 4099, PLACEMENT_HASH)
    assert vector == plain


@pytest.fixture
def vector_everywhere(monkeypatch):
    monkeypatch.setattr(maglev, "vector_pays", lambda backends, size: True)
    with knobs(TAIL_FREE=0):
        yield


@pytest.mark.parametrize("size", sorted(GOLDEN))
def test_golden_tables_through_the_vector_fill(vector_everywhere, size):
    assert letters(build_table(THREE, size)) == GOLDEN[size]


def test_golden_weighted_table_through_the_vector_fill(vector_everywhere):
    table = build_table([("vm-a", 1), ("vm-b", 2), ("vm-c", 3)], 251)
    assert letters(table) == GOLDEN_WEIGHTED_251


def test_vector_tables_match_the_papers_pseudocode(vector_everywhere):
    rng = random.Random(5)
    backends = {f"vm{i}": rng.randint(0, 7) for i in range(40)}
    table = build_table(backends.items(), 4099)
    assert [table.names[i] for i in table.slots] == reference_table(backends, 4099)


def test_big_tables_take_the_vector_fill_and_keep_an_array():
    assert vector_pays(100, 655373) and vector_pays(1000, 655373)
    assert not vector_pays(100, 65537)  # measured no faster there: the plain loop
    assert not vector_pays(3000, 262147)
    table = build_table([(f"vm{i}", 1 + i % 3) for i in range(200)], 262147)
    assert isinstance(table.slots, array) and table.slots.typecode == "h"
    assert table.slot_counts()["vm2"] > table.slot_counts()["vm0"]
