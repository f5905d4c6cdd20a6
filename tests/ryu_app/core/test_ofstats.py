"""Flow statistics on the wire (``core.ofstats``): the request is what os-ken writes, and a
reply (as a switch writes it: golden bytes field by field, os-ken's serialiser, and Open
vSwitch's own decoder as the judge) parses as os-ken parses it."""

from __future__ import annotations

import struct
import subprocess
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ryu_app.core import ofstats
from ryu_app.core import openflow as of
from ryu_app.core.openflow import WireError
from ryu_app.core.pipeline import COOKIE_ALL_FLOWS_MASK, flow_cookie
from ryu_app.shell.compat import ofproto_v1_3 as ofp
from ryu_app.shell.compat import ofproto_v1_3_parser as parser
from tests.ryu_app.fake_oftable import Rule, raw_flow_stats

DATAPATH = SimpleNamespace(ofproto=ofp, ofproto_parser=parser, id=1)
U64 = st.integers(0, 2**64 - 1)

# A learned pin as Open vSwitch 3.1 writes it in a flow statistics reply (OpenFlow 1.3): the
# OXM fields in OVS's order (lib/nx-match.c nx_put_raw: the addresses before ip_proto; see
# ``ovs-ofctl parse-oxm`` below), not os-ken's (field numbers).
OVS_OXM_TEXT = (
    "OXM_OF_IN_PORT(00000001), OXM_OF_ETH_TYPE(0800), OXM_OF_IPV4_SRC(0a01000b), "
    "OXM_OF_IPV4_DST(0a000064), OXM_OF_IP_PROTO(06), OXM_OF_TCP_SRC(9c42), OXM_OF_TCP_DST(0050)"
)
PIN_MATCH = bytes.fromhex(
    "0001 0033"  # match: OXM, 51 bytes before padding
    "80000004 00000001"  # in_port 1
    "80000a02 0800"  # eth_type IPv4
    "80001604 0a01000b"  # ipv4_src 10.1.0.11
    "80001804 0a000064"  # ipv4_dst 10.0.0.100
    "80001401 06"  # ip_proto TCP
    "80001a02 9c42"  # tcp_src 40002
    "80001c02 0050"  # tcp_dst 80
    "0000000000"  # padding to a multiple of 8
)
PIN_ACTIONS = struct.pack("!HH4x", of.OFPIT_APPLY_ACTIONS, 24) + of.output(2)


def reply(entries: bytes, xid: int = 0x50490001, more: bool = False) -> bytes:
    flags = ofstats.OFPMPF_REPLY_MORE if more else 0
    head = struct.pack("!BBHIHH4x", 4, 19, 16 + len(entries), xid, ofstats.OFPMP_FLOW, flags)
    return head + entries


def golden_reply() -> bytes:
    """One learned pin's entry, field by field."""
    fixed = struct.pack(
        "!HBxIIHHHH4xQQQ",
        48 + len(PIN_MATCH) + len(PIN_ACTIONS),  # length: fixed part, match, instruction
        0,  # table
        3,  # duration, s
        250_000_000,  # duration, ns
        200,  # priority: a pin
        60,  # idle timeout
        0,  # hard timeout
        0,  # flags
        flow_cookie(7),  # cookie: Lockstep's, per-flow kind, backend 7
        12,  # packets
        4_321,  # bytes
    )
    return reply(fixed + PIN_MATCH + PIN_ACTIONS)


@given(U64, U64, st.integers(0, 2**32 - 1))
def test_a_flow_stats_request_is_as_os_ken_writes_it(cookie, mask, xid):
    match = of.match(eth_type=0x0800, ip_proto=6, ipv4_dst="10.0.0.100", tcp_dst=80)
    mine = ofstats.flow_stats_request(cookie, mask, match, xid)
    theirs = parser.OFPFlowStatsRequest(
        DATAPATH,
        0,
        ofp.OFPTT_ALL,
        ofp.OFPP_ANY,
        ofp.OFPG_ANY,
        cookie,
        mask,
        parser.OFPMatch(eth_type=0x0800, ip_proto=6, ipv4_dst="10.0.0.100", tcp_dst=80),
    )
    theirs.set_xid(xid)
    theirs.serialize()
    assert mine == bytes(theirs.buf)


def test_a_pin_of_a_golden_reply_reads_as_os_ken_reads_it():
    message = golden_reply()
    part = ofstats.reply_part(message)
    assert part == ofstats.ReplyPart(0x50490001, ofstats.OFPMP_FLOW, False)
    (entry,) = ofstats.flow_stats(message)
    assert (entry.cookie, entry.priority, entry.packets) == (flow_cookie(7), 200, 12)
    fields = ofstats.match_fields(message, entry.match_at)
    number = {name: f.number for name, f in of.FIELDS.items()}
    assert fields[number["ipv4_src"]] == (bytes([10, 1, 0, 11]), None)
    assert fields[number["tcp_src"]] == ((40002).to_bytes(2, "big"), None)
    theirs = parser.msg_parser(DATAPATH, 4, 19, len(message), 0x50490001, bytearray(message))
    (stats,) = theirs.body
    assert (stats.cookie, stats.priority, stats.packet_count) == (flow_cookie(7), 200, 12)
    assert dict(stats.match.items())["ipv4_src"] == "10.1.0.11"
    assert dict(stats.match.items())["tcp_src"] == 40002


def test_open_vswitch_writes_a_pins_fields_in_the_golden_order():
    """``ovs-ofctl parse-oxm``: OVS's encoder normalises a match to the order it writes."""
    shuffled = ", ".join(reversed(OVS_OXM_TEXT.split(", ")))
    text = subprocess.run(
        ["ovs-ofctl", "parse-oxm", "OpenFlow13"],
        input=shuffled,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert text.strip() == OVS_OXM_TEXT


def test_open_vswitch_reads_the_golden_reply_as_the_pin_it_is():
    """``ovs-ofctl ofp-print``: Open vSwitch's own decoder of the same bytes."""
    text = subprocess.run(
        ["ovs-ofctl", "ofp-print", golden_reply().hex()],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "OFPST_FLOW reply (OF1.3)" in text, text
    for expected in (
        f"cookie={flow_cookie(7):#x}",
        "n_packets=12",
        "priority=200",
        "tcp,in_port=1,nw_src=10.1.0.11,nw_dst=10.0.0.100,tp_src=40002,tp_dst=80",
        "actions=output:2",
    ):
        assert expected in text, (expected, text)


def test_a_reply_in_parts_says_which_part_has_more():
    rules = [
        Rule(200, flow_cookie(b), {"eth_type": 0x0800}, [], 0, 0, None, packets=b)
        for b in range(1, 4)
    ]
    first = raw_flow_stats(rules[:2], xid=9, more=True)
    last = raw_flow_stats(rules[2:], xid=9)
    assert ofstats.reply_part(first) == ofstats.ReplyPart(9, ofstats.OFPMP_FLOW, True)
    assert ofstats.reply_part(last).more is False
    assert [e.packets for e in ofstats.flow_stats(first)] == [1, 2]
    assert [e.cookie for e in ofstats.flow_stats(last)] == [flow_cookie(3)]


def test_a_masked_field_reads_as_value_and_mask():
    rule = Rule(210, 0, {"eth_type": 0x0800, "ip_proto": 6, "tcp_src": (8, 0x1FE)}, [], 0, 0, None)
    message = raw_flow_stats([rule])
    (entry,) = ofstats.flow_stats(message)
    fields = ofstats.match_fields(message, entry.match_at)
    assert fields[of.FIELDS["tcp_src"].number] == (b"\x00\x08", b"\x01\xfe")


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda m: m[:20], "bad-flow-stats"),  # an entry cut short
        (lambda m: m[:16] + b"\x00\x07" + m[18:], "bad-flow-stats"),  # length not 8-aligned
        (lambda m: m[:16] + b"\x7f\xf8" + m[18:], "bad-flow-stats"),  # length past the end
        (lambda m: m[:64] + b"\x00\x00" + m[66:], "bad-flow-stats"),  # match not OXM
        (lambda m: m[:66] + b"\xff\xf0" + m[68:], "bad-flow-stats"),  # match longer than entry
    ],
)
def test_a_reply_that_does_not_frame_raises_a_wire_error(damage, reason):
    message = damage(golden_reply())
    message = message[:2] + len(message).to_bytes(2, "big") + message[4:]
    with pytest.raises(WireError) as raised:
        list(ofstats.flow_stats(message))
    assert raised.value.reason == reason


def test_an_oxm_running_past_its_match_raises():
    message = bytearray(golden_reply())
    message[16 + 48 + 4 + 3] = 0xF0  # in_port's length: 240 bytes
    (entry,) = ofstats.flow_stats(bytes(message))
    with pytest.raises(WireError):
        ofstats.match_fields(bytes(message), entry.match_at)


def test_a_reply_header_that_lies_about_its_length_raises():
    message = golden_reply()
    with pytest.raises(WireError):
        ofstats.reply_part(message[:-8])
    with pytest.raises(WireError):
        ofstats.reply_part(message[:12])


@given(st.binary(max_size=300))
def test_any_bytes_either_parse_or_raise_a_wire_error(tail):
    message = reply(tail)
    try:
        for entry in ofstats.flow_stats(message):
            ofstats.match_fields(message, entry.match_at)
    except WireError:
        pass


def test_the_request_filters_by_the_flow_kind_cookie():
    request = ofstats.flow_stats_request(flow_cookie(0), COOKIE_ALL_FLOWS_MASK)
    (cookie, mask) = struct.unpack_from("!QQ", request, 16 + 16)
    assert (cookie, mask) == (flow_cookie(0), COOKIE_ALL_FLOWS_MASK)
    assert request[16 + 32 :] == of.match()
