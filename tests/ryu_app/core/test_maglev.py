"""Maglev table: exact agreement with the paper's algorithm, stability, balance, disruption."""

import os
import random
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ryu_app.core.maglev import backend_permutation, build_table, check_table_size, claim_schedule
from ryu_app.core.maglev_reference import reference_table
from ryu_app.core.model import DEFAULT_TABLE_SIZE, MAX_TABLE_SIZE

THREE = [("vm-a", 1), ("vm-b", 1), ("vm-c", 1)]

# Golden tables: the cross-version contract.  Every gateway, whatever Lockstep version it runs,
# must build exactly these, or flows move between backends during a rolling upgrade.
GOLDEN = {
    7: "aacbbca",
    17: "bcbcbbcbaacabaaac",
    251: (
        "bccaabcabcabbbacacbbbcacacbbccacbbaccabcbbcaacbbcacbbbbccacbbacaabcbccaacbbcaccbcaacac"
        "bbbcaabbbccabcbacaacbcbacabcaccacbbabaabcbbcaacbabaccbcabcaccaabaabbabbaacbabaacbcabc"
        "abcacbaacaabbaccaacaacbabbcabcabbaccaabbacaabcbaccacbaabcabbabcacbbccacbbbaccacb"
    ),
}
GOLDEN_WEIGHTED_251 = (
    "bccbabcacccbcbaccccbbcbcacbbccacbbacccbcbcccacbcccccbbbccacbbbcaabcbcccacbbccccbcabcaccb"
    "bcaabbbcccbcbaccacbcbccabcbccaccbcbacccbbccacbbbcccbcabcaccbabcccbcbbcaccabcacbcabcabcb"
    "cbaccbcbbccccaccaccbcbcabcabbaccbcbbccbcbcbaccacbaaccabbcbcbcbbccbcbbbaccacb"
)


def letters(table):
    return "".join("abc"[index] for index in table.slots)


def names_of(table):
    return [table.names[index] for index in table.slots]


@pytest.mark.parametrize("size", sorted(GOLDEN))
def test_golden_tables_for_small_primes(size):
    assert letters(build_table(THREE, size)) == GOLDEN[size]


def test_golden_weighted_table():
    table = build_table([("vm-a", 1), ("vm-b", 2), ("vm-c", 3)], 251)
    assert letters(table) == GOLDEN_WEIGHTED_251


@pytest.mark.parametrize("size", [7, 17, 251, 4099, DEFAULT_TABLE_SIZE])
@pytest.mark.parametrize("count", [2, 3, 10, 100])
def test_equal_weights_match_the_papers_algorithm(size, count):
    backends = {f"backend-{i}": 1 for i in range(count)}
    assert names_of(build_table(backends.items(), size)) == reference_table(backends, size)


@pytest.mark.parametrize("size", [251, 4099, DEFAULT_TABLE_SIZE])
def test_weighted_tables_match_the_reference(size):
    rng = random.Random(size)
    backends = {f"vm{i}": rng.randint(0, 7) for i in range(40)}
    assert names_of(build_table(backends.items(), size)) == reference_table(backends, size)


@settings(max_examples=60, deadline=None)
@given(
    size=st.sampled_from([7, 11, 17, 101, 251, 1009]),
    backends=st.dictionaries(
        st.text(alphabet="abcdefghij0123456789-", min_size=1, max_size=8),
        st.integers(min_value=0, max_value=5),
        min_size=1,
        max_size=30,
    ),
)
def test_property_any_backend_set_matches_the_reference(size, backends):
    table = build_table(backends.items(), size)
    if not any(backends.values()):
        assert table.names == () and table.lookup(12345) is None
        return
    assert names_of(table) == reference_table(backends, size)


def test_order_of_backends_does_not_matter():
    backends = [(f"vm{i}", 1 + i % 3) for i in range(50)]
    expected = build_table(backends, 4099)
    for seed in range(5):
        shuffled = backends[:]
        random.Random(seed).shuffle(shuffled)
        assert build_table(shuffled, 4099) == expected


def test_same_table_in_processes_with_different_hash_seeds():
    program = (
        "from ryu_app.core.maglev import build_table;"
        "t = build_table([(f'vm{i}', 1) for i in range(20)], 4099);"
        "print(bytes(t.slots).hex())"
    )
    outputs = set()
    for seed in ("0", "1", "12345", "random"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        result = subprocess.run(
            [sys.executable, "-c", program], env=env, capture_output=True, text=True, check=True
        )
        outputs.add(result.stdout)
    assert len(outputs) == 1


def test_equal_weights_are_balanced_within_one_slot():
    for count in (3, 10, 100, 1000):
        counts = build_table([(f"vm{i}", 1) for i in range(count)]).slot_counts()
        assert max(counts.values()) - min(counts.values()) <= 1, count
        assert sum(counts.values()) == DEFAULT_TABLE_SIZE


def test_weights_give_proportional_slots_within_one_percent_of_the_table():
    rng = random.Random(7)
    backends = {f"vm{i}": rng.randint(1, 100) for i in range(30)}
    counts = build_table(backends.items()).slot_counts()
    total = sum(backends.values())
    for name, weight in backends.items():
        share = DEFAULT_TABLE_SIZE * weight / total
        assert abs(counts[name] - share) <= DEFAULT_TABLE_SIZE * 0.01, (name, weight)


def test_weight_zero_drains_the_backend():
    table = build_table([("vm1", 1), ("vm2", 0), ("vm3", 1)], 251)
    assert table.names == ("vm1", "vm3")
    assert "vm2" not in table.slot_counts()
    # ... and the result is exactly the table without it.
    assert table == build_table([("vm1", 1), ("vm3", 1)], 251)


@pytest.mark.parametrize("count", [10, 100])
def test_removing_one_backend_moves_at_most_one_percent_of_the_others(count):
    backends = [(f"vm{i}", 1) for i in range(count)]
    before = names_of(build_table(backends))
    for removed in ("vm0", f"vm{count // 2}", f"vm{count - 1}"):
        after = names_of(build_table([b for b in backends if b[0] != removed]))
        moved = sum(1 for old, new in zip(before, after, strict=True) if old not in (removed, new))
        others = sum(1 for old in before if old != removed)
        assert moved <= 0.01 * others, (removed, moved)
        # The removed backend's slots all went to survivors.
        assert removed not in after


def test_zero_and_one_backend():
    empty = build_table([], 251)
    assert empty.names == () and empty.lookup(99) is None and empty.slot_counts() == {}
    single = build_table([("only", 3)], 251)
    assert single.slot_counts() == {"only": 251}
    assert {single.lookup(h) for h in range(1000)} == {"only"}


def test_lookup_uses_hash_modulo_table_size():
    table = build_table(THREE, 17)
    for flow_hash in range(200):
        assert table.lookup(flow_hash) == table.names[table.slots[flow_hash % 17]]


@pytest.mark.parametrize(
    ("size", "fragment"),
    [
        (65536, "must be prime"),
        (1, "at least 7"),
        (5, "at least 7"),
        (MAX_TABLE_SIZE + 2, "at most"),
        (65537.0, "integer"),
        ("65537", "integer"),
        (True, "integer"),
    ],
)
def test_bad_table_sizes_are_rejected_with_a_reason(size, fragment):
    with pytest.raises(ValueError, match=fragment):
        check_table_size(size)
    with pytest.raises(ValueError, match=fragment):
        build_table(THREE, size)


@pytest.mark.parametrize(
    ("backends", "fragment"),
    [
        ([("a", 1), ("a", 2)], "appears twice"),
        ([("", 1)], "non-empty"),
        ([("a", -1)], "0..10000"),
        ([("a", 1.5)], "integer"),
        ([("a", True)], "integer"),
    ],
)
def test_bad_backends_are_rejected(backends, fragment):
    with pytest.raises(ValueError, match=fragment):
        build_table(backends, 251)


def test_permutation_is_a_full_cycle():
    offset, skip = backend_permutation("vm1", 251)
    assert 0 <= offset < 251 and 1 <= skip < 251
    assert len({(offset + j * skip) % 251 for j in range(251)}) == 251


def test_claim_schedule_gives_each_backend_its_weight_per_period():
    schedule = claim_schedule([3, 1, 2])
    assert sorted(schedule) == [0, 0, 0, 1, 2, 2]
    assert claim_schedule([2, 2, 2]) == [0, 1, 2]
