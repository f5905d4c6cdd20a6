"""The learn action's bytes are exactly what os-ken's ``NXActionLearn`` serialises for the
same action, over random parameters and flow specs (the tests may import os-ken; the core
may not); and Open vSwitch reads a switch-mode pin's learn as the prototype writes it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ryu_app.core import oflearn
from ryu_app.shell.compat import ofproto_v1_3_parser as parser

NAMES = tuple(oflearn.LEARN_FIELDS)


def serialised(action) -> bytes:
    """What os-ken writes for ``action``, zero-padded to the length it declares: os-ken leaves
    the padding out when the action ends the buffer (the next action's pack fills it in a
    flow-mod; Open vSwitch needs it), so the switch-mode rules never end with a learn."""
    buf = bytearray()
    action.serialize(buf, 0)
    assert action.len - 8 < len(buf) <= action.len
    return bytes(buf) + bytes(action.len - len(buf))


@st.composite
def specs(draw):
    """(the encoder's spec bytes, os-ken's spec object) for one random flow spec."""
    kind = draw(st.sampled_from(["match_field", "match_value", "load_value", "output_field"]))
    dst = draw(st.sampled_from(NAMES))
    bits = oflearn.field_bits(dst)
    n_bits = draw(st.one_of(st.none(), st.integers(1, bits)))
    width = bits if n_bits is None else n_bits
    if kind == "match_field":
        src = draw(st.sampled_from([n for n in NAMES if oflearn.field_bits(n) >= width]))
        mine = oflearn.match_field(dst, src, n_bits)
        return mine, parser.NXFlowSpecMatch(src=(src, 0), dst=(dst, 0), n_bits=width)
    value = draw(st.integers(0, 2**width - 1))
    if kind == "match_value":
        mine = oflearn.match_value(dst, value, n_bits)
        return mine, parser.NXFlowSpecMatch(src=value, dst=(dst, 0), n_bits=width)
    if kind == "load_value":
        mine = oflearn.load_value(value, dst, n_bits)
        return mine, parser.NXFlowSpecLoad(src=value, dst=(dst, 0), n_bits=width)
    mine = oflearn.output_field(dst, n_bits)
    return mine, parser.NXFlowSpecOutput(src=(dst, 0), dst="", n_bits=width)


u16 = st.integers(0, 0xFFFF)


@given(
    st.lists(specs(), max_size=8),
    st.integers(0, 254),
    u16,
    u16,
    u16,
    st.integers(0, 2**64 - 1),
    st.integers(0, 7),
    u16,
    u16,
)
def test_a_learn_action_is_what_os_ken_writes(
    chosen, table, idle, hard, prio, cookie, flags, fi, fh
):
    mine = oflearn.learn(
        [spec for spec, _ in chosen], table, idle, hard, prio, cookie, flags, fi, fh
    )
    theirs = parser.NXActionLearn(
        table_id=table,
        specs=[spec for _, spec in chosen],
        idle_timeout=idle,
        hard_timeout=hard,
        priority=prio,
        cookie=cookie,
        flags=flags,
        fin_idle_timeout=fi,
        fin_hard_timeout=fh,
    )
    assert mine == serialised(theirs)
    assert len(mine) % 8 == 0


def test_the_defaults_are_os_kens():
    spec = oflearn.match_field("ipv4_src_nxm")
    theirs = parser.NXActionLearn(
        table_id=0,
        specs=[parser.NXFlowSpecMatch(src=("ipv4_src_nxm", 0), dst=("ipv4_src_nxm", 0), n_bits=32)],
    )
    assert oflearn.learn([spec]) == serialised(theirs)


def test_a_limit_makes_it_learn2_the_same_learn_with_the_limit_after_its_parameters():
    """``NXAST_LEARN2`` (OVS lib/ofp-actions.c, ``struct nx_action_learn2``): the 32 bytes of
    ``nx_action_learn`` with subtype 45, then limit (u32), result_dst_ofs (u16, 0: no result
    field), 2 bytes of zero padding, then the same flow specs, padded to 8 bytes."""
    specs = [oflearn.match_field("ipv4_src_nxm"), oflearn.output_field("reg1")]
    plain = oflearn.learn(specs, idle_timeout=60, priority=200, cookie=7)
    limited = oflearn.learn(specs, idle_timeout=60, priority=200, cookie=7, limit=100_000)
    assert plain[8:10] == b"\x00\x10" and limited[8:10] == b"\x00\x2d"  # subtype 16, 45
    assert limited[:2] == b"\xff\xff" and limited[4:8] == b"\x00\x00\x23\x20"  # Nicira
    assert limited[10:32] == plain[10:32]  # timeouts, priority, cookie, flags, table
    assert limited[32:36] == (100_000).to_bytes(4, "big")  # limit
    assert limited[36:40] == bytes(4)  # result_dst_ofs 0, pad
    spec_bytes = b"".join(specs)
    assert limited[40 : 40 + len(spec_bytes)] == spec_bytes == plain[32 : 32 + len(spec_bytes)]
    length = int.from_bytes(limited[2:4], "big")
    assert length == len(limited) and length % 8 == 0 and length >= 40 + len(spec_bytes)
    assert not any(limited[40 + len(spec_bytes) :])
    assert oflearn.learn(specs, limit=0) == oflearn.learn(specs)
    with pytest.raises(ValueError, match="limit"):
        oflearn.learn(specs, limit=2**32)
