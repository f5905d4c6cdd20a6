"""The port-bits placement (docs/switch-mode.md): a flow's slot is bits 1..k of its TCP source
port, indexing a Maglev table of 2**k slots.  The tables are part of the cross-gateway contract
(a switch's slot rules and every controller must agree), so they are pinned here against the
bench prototype's population and its golden table."""

import random
from collections import Counter

import mmh3
import pytest

from bench.switchslots import SlotBits, slot_of
from ryu_app.core.balancer import TableCache
from ryu_app.core.flowkey import Flow, flow_hash, hash_key
from ryu_app.core.maglev import (
    OFFSET_SEED,
    SKIP_SEED,
    build_table,
    check_table_size,
    claim_schedule,
    slot_permutation,
    table_spec,
)
from ryu_app.core.model import HASH_5TUPLE, HASH_SRC_IP, PLACEMENT_HASH, PLACEMENT_PORT_BITS
from ryu_app.core.slots import (
    changed_slots,
    placement_index,
    port_slot,
    slot_bits_text,
    slot_match,
)

TEN = [(f"vm{i}", 1) for i in range(10)]


def slot_table(backends, table_size):
    return build_table(backends, table_size, PLACEMENT_PORT_BITS).owners()


def prototype_table(backends, table_size):
    """bench/switchslots.py's population as it was prototyped (commit b117516): the paper's
    loop with the weighted claim schedule, probing every claim.  The oracle for the core's."""
    active = sorted((name, weight) for name, weight in backends if weight > 0)
    if not active:
        return (None,) * table_size
    permutations = []
    for name, _ in active:
        key = name.encode()
        offset = mmh3.hash(key, OFFSET_SEED, signed=False) % table_size
        skip = (mmh3.hash(key, SKIP_SEED, signed=False) % (table_size // 2)) * 2 + 1
        permutations.append((offset, skip))
    schedule = claim_schedule([weight for _, weight in active])
    owners, cursor, left = [-1] * table_size, [o for o, _ in permutations], table_size
    while left:
        for index in schedule:
            skip, slot = permutations[index][1], cursor[index]
            while owners[slot] >= 0:
                slot = (slot + skip) % table_size
            owners[slot] = index
            cursor[index] = (slot + skip) % table_size
            left -= 1
            if not left:
                break
    return tuple(active[index][0] for index in owners)


@pytest.mark.parametrize("bits", [4, 8, 10, 12])
@pytest.mark.parametrize(
    "backends",
    [TEN, [("a", 1), ("b", 3), ("c", 0)], [(f"b{i}", 1 + i % 4) for i in range(100)]],
    ids=["ten", "weighted", "hundred"],
)
def test_the_core_builds_the_prototypes_table(bits, backends):
    assert slot_table(backends, 1 << bits) == prototype_table(backends, 1 << bits)


def test_golden_slots_never_change_across_versions():
    """The prototype's golden table (tests/bench/test_switchslots.py: GOLDEN_4), from the core."""
    table = slot_table([("vm1", 1), ("vm2", 1), ("vm3", 1)], 16)
    assert "".join(name[-1] for name in table) == "1123123323311122"


def test_a_slot_permutation_has_an_odd_skip_and_visits_every_slot():
    for size in (256, 4096):
        for name in ("a", "vm1", "backend-with-a-long-name"):
            offset, skip = slot_permutation(name, size)
            assert skip % 2 == 1
            assert len({(offset + j * skip) % size for j in range(size)}) == size


def test_the_slot_is_source_port_bits_one_to_k():
    assert port_slot(0b1_0110_1010_1011, 256) == 0b0101_0101  # bits 1..8
    assert port_slot(40001, 4096) == port_slot(40000, 4096)  # bit 0 is not used
    assert port_slot(40002, 4096) == port_slot(40000, 4096) + 1
    rng = random.Random(5)
    for _ in range(2000):
        port, bits = rng.getrandbits(16), rng.choice((8, 9, 10, 11, 12))
        assert port_slot(port, 1 << bits) == slot_of("10.0.0.1", port, SlotBits(bits, 1))


@pytest.mark.parametrize("size", [256, 4096])
def test_a_slots_match_selects_exactly_its_ports(size):
    for slot in (0, 1, size // 3, size - 1):
        value, mask = slot_match(slot, size)
        ports = [p for p in range(65536) if p & mask == value]
        assert {port_slot(p, size) for p in ports} == {slot}
        assert len(ports) == 65536 // size


def test_the_slot_bits_read_as_a_switch_match():
    assert slot_bits_text(4096) == "tcp_src & 0x1ffe"
    assert slot_bits_text(256) == "tcp_src & 0x1fe"


def test_placement_index_is_the_hash_for_hash_vips_and_the_slot_for_port_bits():
    flow = Flow(4, bytes([10, 1, 0, 11]), bytes([10, 0, 0, 100]), 6, 40000, 80)
    for mode in (HASH_5TUPLE, HASH_SRC_IP):
        expected = flow_hash(hash_key(flow, mode))
        assert placement_index(flow, mode, PLACEMENT_HASH, 65537) == expected
    assert placement_index(flow, HASH_5TUPLE, PLACEMENT_PORT_BITS, 4096) == 20000 % 4096


@pytest.mark.parametrize("size", [100, 65537, 2, 1 << 17, True])
def test_a_port_bits_table_needs_a_power_of_two(size):
    if size == 2:
        assert check_table_size(2, PLACEMENT_PORT_BITS) == 2
        return
    with pytest.raises(ValueError, match="table_size"):
        check_table_size(size, PLACEMENT_PORT_BITS)


def test_a_hash_table_still_needs_a_prime():
    with pytest.raises(ValueError, match="must be prime"):
        build_table(TEN, 4096)


def test_the_placement_is_part_of_a_tables_identity():
    hashed = table_spec(4099, TEN)
    by_port = table_spec(4096, TEN, PLACEMENT_PORT_BITS)
    assert hashed.placement == PLACEMENT_HASH and by_port.placement == PLACEMENT_PORT_BITS
    cache = TableCache()
    assert cache.get_or_build(by_port).owners() == slot_table(TEN, 4096)
    assert cache.get_or_build(hashed).table_size == 4099
    assert cache.builds == 2


# ---- minimal disruption: only the slots that changed move -------------------------------------


def test_a_backend_going_down_moves_little_more_than_its_own_slots():
    before = slot_table(TEN, 4096)
    after = slot_table(TEN[1:], 4096)
    moved = changed_slots(before, after)
    own = {slot for slot, name in enumerate(before) if name == "vm0"}
    assert set(moved) >= own
    assert len(moved) <= len(own) * 1.2
    assert all(after[slot] == before[slot] for slot in set(range(4096)) - set(moved))


def test_draining_moves_the_same_slots_as_going_down_and_coming_back_restores_the_table():
    before = slot_table(TEN, 4096)
    drained = slot_table([("vm0", 0)] + TEN[1:], 4096)
    assert drained == slot_table(TEN[1:], 4096)  # weight 0 owns nothing, like absent
    assert "vm0" not in drained
    assert slot_table(TEN, 4096) == before


def test_a_weight_change_moves_mostly_the_slots_that_backend_gains():
    """Maglev is not perfectly minimal on a weight change (measured: 375 slots moved, 335 of
    them to vm3): the bound is on the churn among the others."""
    before = slot_table(TEN, 4096)
    after = slot_table([("vm3", 2)] + [b for b in TEN if b[0] != "vm3"], 4096)
    moved = changed_slots(before, after)
    gained = Counter(after)["vm3"] - Counter(before)["vm3"]
    assert sum(after[slot] == "vm3" for slot in moved) == gained
    assert gained <= len(moved) <= gained * 1.2
    counts = Counter(after)
    assert abs(counts["vm3"] - 2 * counts["vm4"]) <= 4
