"""Switch mode's prototype placement (bench/switchslots.py): the power-of-two Maglev table and
the slot taken from masked bits, which the switch's wildcard rules must reproduce exactly."""

import random
from collections import Counter

import pytest

from bench.switchslots import (
    SlotBits,
    build_pow2_table,
    changed_slots,
    pow2_permutation,
    slot_match,
    slot_of,
)

TEN = [(f"vm{i}", 1) for i in range(10)]


@pytest.mark.parametrize("bits", [1, 4, 8, 12])
def test_every_backend_preference_list_visits_every_slot_once(bits):
    size = 1 << bits
    for name in ("a", "vm1", "backend-with-a-long-name"):
        offset, skip = pow2_permutation(name, size)
        assert skip % 2 == 1
        assert len({(offset + j * skip) % size for j in range(size)}) == size


@pytest.mark.parametrize("bits", [4, 8, 12])
def test_equal_weights_own_slots_within_one_of_each_other(bits):
    counts = Counter(build_pow2_table(TEN, bits))
    assert set(counts) == {name for name, _ in TEN}
    assert sum(counts.values()) == 1 << bits
    assert max(counts.values()) - min(counts.values()) <= 1


def test_weights_share_slots_in_proportion_and_weight_zero_owns_none():
    table = build_pow2_table([("a", 1), ("b", 3), ("c", 0)], 12)
    counts = Counter(table)
    assert "c" not in counts
    assert abs(counts["b"] - 3 * counts["a"]) <= 4


def test_the_table_depends_on_the_set_of_backends_not_their_order():
    shuffled = TEN[:]
    random.Random(3).shuffle(shuffled)
    assert build_pow2_table(shuffled, 10) == build_pow2_table(TEN, 10)


def test_no_backend_of_positive_weight_leaves_every_slot_empty():
    assert build_pow2_table([("a", 0)], 4) == (None,) * 16


def test_golden_slots_never_change_across_versions():
    """The table is part of the cross-gateway contract: every gateway and every release must
    build the same one (seeds shared with ryu_app.core.maglev)."""
    table = build_pow2_table([("vm1", 1), ("vm2", 1), ("vm3", 1)], 4)
    assert "".join(name[-1] for name in table) == GOLDEN_4


GOLDEN_4 = "1123123323311122"


def test_removing_one_backend_moves_little_more_than_its_own_slots():
    before = build_pow2_table(TEN, 12)
    after = build_pow2_table(TEN[1:], 12)
    moved = changed_slots(before, after)
    own = before.count("vm0")
    assert set(moved) >= {slot for slot, name in enumerate(before) if name == "vm0"}
    assert len(moved) <= own * 1.2


@pytest.mark.parametrize(
    "bits", [SlotBits(4), SlotBits(12, 1), SlotBits(8, 0), SlotBits(6, 1, 4), SlotBits(0, 0, 8)]
)
def test_a_slots_match_selects_exactly_the_flows_of_that_slot(bits):
    rng = random.Random(7)
    for _ in range(2000):
        address, port = rng.getrandbits(32), rng.getrandbits(16)
        slot = slot_of(address, port, bits)
        fields = slot_match(slot, bits)
        value, mask = fields["src_port"]
        assert port & mask == value
        if bits.ip_bits:
            value, mask = fields["src_ip"]
            assert address & mask == value
        assert 0 <= slot < 1 << bits.width


def test_linux_even_ports_use_every_slot_when_bit_zero_is_skipped():
    ports = range(32768, 32768 + 2 * 256, 2)  # a Linux client's connect() ports
    assert len({slot_of("10.0.0.1", p, SlotBits(8, 1)) for p in ports}) == 256
    assert len({slot_of("10.0.0.1", p, SlotBits(8, 0)) for p in ports}) == 128


def test_slot_of_takes_addresses_as_text_or_integers():
    assert slot_of("10.0.0.5", 0, SlotBits(0, 0, 4)) == 5
    assert slot_of(0x0A000005, 0, SlotBits(0, 0, 4)) == 5


@pytest.mark.parametrize("args", [(0, 0, 0), (17, 0, 0), (16, 1, 0), (12, 0, 5)])
def test_impossible_bit_selections_are_refused(args):
    with pytest.raises(ValueError):
        SlotBits(*args)
