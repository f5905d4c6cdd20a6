"""The one encoder's bytes are exactly what os-ken's message classes serialise for the same
message: matches, actions, flow-mods, packet-outs and the port description request, over
random fields and values (the tests may import os-ken; ``ryu_app.core`` may not)."""

from __future__ import annotations

import ipaddress
import struct
from types import SimpleNamespace

from hypothesis import given
from hypothesis import strategies as st

from ryu_app.core import openflow as of
from ryu_app.core.flowkey import Flow
from ryu_app.shell.compat import ofproto_v1_3 as ofp
from ryu_app.shell.compat import ofproto_v1_3_parser as parser

DATAPATH = SimpleNamespace(ofproto=ofp, ofproto_parser=parser, id=1)


def serialised(message) -> bytes:
    """What os-ken writes for ``message`` (transaction id 0, as the encoder's)."""
    message.datapath = DATAPATH
    message.set_xid(0)
    message.serialize()
    return bytes(message.buf)


def values(kind: str, size: int):
    """A field's value as os-ken takes it: an int, a MAC string, an address string."""
    if kind == "int":
        return st.integers(0, 2 ** (8 * size) - 1)
    if kind == "mac":
        return st.binary(min_size=6, max_size=6).map(lambda b: b.hex(":"))
    return st.ip_addresses(v=4 if kind == "ipv4" else 6).map(str)


@st.composite
def fields(draw, names=tuple(of.FIELDS), masks=True):
    """Some fields of ``names`` (in a random order), each a value or (value, mask)."""
    chosen = draw(st.lists(st.sampled_from(names), unique=True, max_size=8))
    result = {}
    for name in chosen:
        field = of.FIELDS[name]
        value = draw(values(field.kind, field.size))
        if masks and draw(st.booleans()):
            value = (value, draw(values(field.kind, field.size)))
        result[name] = value
    return result


SETTABLE = tuple(of.FIELDS)
REG_FIELDS = ("eth_src", "eth_dst", "arp_sha", "arp_tha", "arp_spa", "arp_tpa", "ipv4_src")


@st.composite
def actions(draw, at_least=0):
    """(the encoder's bytes, os-ken's action objects) for a random list of actions."""
    mine, theirs = b"", []
    for _ in range(draw(st.integers(at_least, 5))):
        kind = draw(st.sampled_from(["output", "set_field", "reg_move"]))
        if kind == "output":
            port = draw(st.sampled_from([1, 7, of.OFPP_IN_PORT, of.OFPP_CONTROLLER]))
            max_len = draw(st.sampled_from([of.OFPCML_MAX, of.OFPCML_NO_BUFFER, 128]))
            mine += of.output(port, max_len)
            theirs.append(parser.OFPActionOutput(port, max_len))
        elif kind == "set_field":
            name = draw(st.sampled_from(SETTABLE))
            field = of.FIELDS[name]
            value = draw(values(field.kind, field.size))
            mine += of.set_field(name, value)
            theirs.append(parser.OFPActionSetField(**{name: value}))
        else:
            src, dst = draw(st.sampled_from(REG_FIELDS)), draw(st.sampled_from(REG_FIELDS))
            n_bits = draw(st.integers(1, 32))
            src_ofs, dst_ofs = draw(st.integers(0, 16)), draw(st.integers(0, 16))
            mine += of.reg_move(src, dst, n_bits, src_ofs, dst_ofs)
            theirs.append(parser.NXActionRegMove(src, dst, n_bits, src_ofs, dst_ofs))
    return mine, theirs


def framework_match(fields: dict) -> bytes:
    buf = bytearray()
    parser.OFPMatch(**fields).serialize(buf, 0)
    return bytes(buf)


@given(fields())
def test_a_match_is_oxm_as_os_ken_writes_it(chosen):
    assert of.match(**chosen) == framework_match(chosen)


def test_the_empty_match_matches_every_packet():
    # type OXM (1), length 4 (no fields), 4 bytes of padding
    assert of.match() == bytes.fromhex("0001 0004 00000000") == framework_match({})


# A packet-out has at least one action here: os-ken writes an unbuffered one without actions
# wrong (its body overwrites the data's first 16 bytes), and Lockstep never sends one.
@given(actions(at_least=1), st.integers(0, 2**32 - 1), st.binary(max_size=200))
def test_actions_in_a_packet_out_are_as_os_ken_writes_them(case, in_port, data):
    mine, theirs = case
    reference = parser.OFPPacketOut(None, ofp.OFP_NO_BUFFER, in_port, theirs, data)
    assert of.packet_out(in_port, of.OFP_NO_BUFFER, mine, data) == serialised(reference)


@given(actions(), st.sampled_from([0, 77, 2**32 - 2]), st.binary(max_size=100))
def test_a_buffered_packet_out_names_its_buffer_and_carries_no_data(case, buffer_id, data):
    mine, theirs = case
    reference = parser.OFPPacketOut(None, buffer_id, 3, theirs, None)
    assert of.packet_out(3, buffer_id, mine, data) == serialised(reference)


@given(actions(at_least=1), st.binary(min_size=14, max_size=200))
def test_a_controller_packet_out_comes_from_the_controller_port(case, frame):
    mine, theirs = case
    reference = parser.OFPPacketOut(None, ofp.OFP_NO_BUFFER, ofp.OFPP_CONTROLLER, theirs, frame)
    assert of.controller_packet_out(mine, frame) == serialised(reference)


@st.composite
def flow_mod_settings(draw):
    return {
        "priority": draw(st.integers(0, 0xFFFF)),
        "cookie": draw(st.integers(0, 2**64 - 1)),
        "idle_timeout": draw(st.integers(0, 0xFFFF)),
        "flags": draw(st.integers(0, 0x1F)),
        "cookie_mask": draw(st.integers(0, 2**64 - 1)),
        "command": draw(st.sampled_from([of.OFPFC_ADD, of.OFPFC_DELETE, of.OFPFC_DELETE_STRICT])),
        "table_id": draw(st.sampled_from([0, 3, of.OFPTT_ALL])),
        "hard_timeout": draw(st.integers(0, 0xFFFF)),
        "out_port": draw(st.sampled_from([0, 5, of.OFPP_ANY])),
        "out_group": draw(st.sampled_from([0, of.OFPG_ANY])),
    }


@given(fields(), actions(), flow_mod_settings())
def test_a_flow_mod_is_as_os_ken_writes_it(chosen, case, settings):
    mine, theirs = case
    instructions = [parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, theirs)] if theirs else []
    reference = parser.OFPFlowMod(
        None, match=parser.OFPMatch(**chosen), instructions=instructions, **settings
    )
    assert of.flow_mod(of.match(**chosen), mine, **settings) == serialised(reference)


def test_a_flow_mod_has_os_ken_defaults():
    # Priority 0x8000, cookie 0, table 0, unbuffered, out_port/out_group 0, no instructions.
    reference = parser.OFPFlowMod(None, match=parser.OFPMatch())
    assert of.flow_mod(of.match()) == serialised(reference)


def test_port_description_request_is_as_os_ken_writes_it():
    # version 4, type 18 (multipart request), length 16, xid 0; type 13 (port desc), flags 0
    expected = bytes.fromhex("04 12 0010 00000000 000d 0000 00000000")
    assert of.port_desc_request() == expected
    assert serialised(parser.OFPPortDescStatsRequest(None, 0)) == expected


def test_the_tunnel_destination_is_nicira_field_32():
    # set-field (25), length 16; NXM_NX_TUN_IPV4_DST: class 1, field 32, length 4; the address
    assert of.set_field("tun_ipv4_dst", "10.99.0.11") == bytes.fromhex(
        "0019 0010 0001 40 04 0a63000b 00000000"
    )


# ---- the new-flow path -------------------------------------------------------------------------


@st.composite
def flows(draw):
    version = draw(st.sampled_from([4, 6]))
    size = 4 if version == 4 else 16
    return Flow(
        version,
        draw(st.binary(min_size=size, max_size=size)),
        draw(st.binary(min_size=size, max_size=size)),
        draw(st.sampled_from([6, 17])),
        draw(st.integers(0, 65535)),
        draw(st.integers(0, 65535)),
    )


def flow_fields(flow: Flow, in_port: int, with_source_port: bool) -> dict:
    ip = f"ipv{flow.version}"
    l4 = "tcp" if flow.proto == 6 else "udp"
    chosen = {
        "in_port": in_port,
        "eth_type": 0x0800 if flow.version == 4 else 0x86DD,
        "ip_proto": flow.proto,
        f"{ip}_src": str(ipaddress.ip_address(flow.src)),
        f"{ip}_dst": str(ipaddress.ip_address(flow.dst)),
        f"{l4}_dst": flow.dst_port,
    }
    if with_source_port:
        chosen[f"{l4}_src"] = flow.src_port
    return chosen


@given(flows(), st.integers(0, 2**32 - 1), st.booleans())
def test_a_flows_match_is_the_general_match_of_its_fields(flow, in_port, with_source_port):
    chosen = flow_fields(flow, in_port, with_source_port)
    expected = framework_match(chosen)
    assert of.flow_match(flow, in_port, with_source_port) == of.match(**chosen) == expected


def test_the_per_flow_rule_golden_bytes():
    flow = Flow(4, bytes([10, 1, 0, 11]), bytes([10, 0, 0, 100]), 6, 40000, 80)
    actions = of.output(2)
    message = of.flow_mod(of.flow_match(flow, 1, True), actions, 200, 0x4C53020000000007, 60, 1)
    assert message == bytes.fromhex(
        "04 0e 0080 00000000"  # version 4, FLOW_MOD, length 128, xid 0
        "4c53020000000007 0000000000000000"  # cookie (Lockstep, per-flow, backend 7), no mask
        "00 00 003c 0000 00c8"  # table 0, ADD, idle 60 s, no hard timeout, priority 200
        "ffffffff 00000000 00000000 0001 0000"  # unbuffered, out port/group 0, SEND_FLOW_REM
        "0001 0033"  # match: OXM, 51 bytes
        "80000004 00000001"  # in_port 1
        "80000a02 0800"  # eth_type IPv4
        "80001401 06"  # ip_proto TCP
        "80001604 0a01000b 80001804 0a000064"  # ipv4_src 10.1.0.11, ipv4_dst 10.0.0.100
        "80001a02 9c40 80001c02 0050"  # tcp_src 40000, tcp_dst 80
        "0000000000"  # padding to 56
        "0004 0018 00000000"  # apply-actions, 24 bytes
        "0000 0010 00000002 ffe5 000000000000"  # output to port 2
    )


@given(flows(), st.integers(0, 2**32 - 1))
def test_a_flow_rule_and_its_packet_out_agree_with_os_ken(flow, in_port):
    actions = of.set_field("eth_dst", "02:00:00:00:01:01") + of.output(7)
    theirs = [parser.OFPActionSetField(eth_dst="02:00:00:00:01:01"), parser.OFPActionOutput(7)]
    mine = of.flow_mod(of.flow_match(flow, in_port, True), actions, 200, 5, 60, 1)
    reference = parser.OFPFlowMod(
        None,
        cookie=5,
        idle_timeout=60,
        priority=200,
        flags=ofp.OFPFF_SEND_FLOW_REM,
        match=parser.OFPMatch(**flow_fields(flow, in_port, True)),
        instructions=[parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, theirs)],
    )
    assert mine == serialised(reference)
    length = struct.unpack_from("!H", mine, 2)[0]
    assert length == len(mine)
