"""Test helper: OpenFlow messages the core returned as bytes (``ryu_app.core.openflow``) turned
back into the framework's message objects, so tests assert on their fields.

The framework parses only what switches send, so flow-mods and packet-outs are taken apart here:
the fixed fields with ``struct``, the match, instructions and actions with the framework's own
parsers for those structures (the ones it uses for flow-stats replies).
"""

from __future__ import annotations

import ipaddress
import struct

from ryu_app.compat import ofproto_v1_3 as ofp
from ryu_app.compat import ofproto_v1_3_parser as parser
from ryu_app.core.flowkey import PROTO_TCP, Flow

_HEADER = struct.Struct("!BBHI")
_FLOW_MOD = struct.Struct("!QQBBHHHIIIH2x")
_PACKET_OUT = struct.Struct("!IIH6x")


def decode(message: bytes):
    buf = bytearray(message)
    version, kind, length, xid = _HEADER.unpack_from(buf)
    assert (version, length) == (ofp.OFP_VERSION, len(buf)), (version, length, len(buf))
    if kind == ofp.OFPT_FLOW_MOD:
        return _flow_mod(buf)
    if kind == ofp.OFPT_PACKET_OUT:
        return _packet_out(buf)
    if kind == ofp.OFPT_MULTIPART_REQUEST:
        stats_type, flags = struct.unpack_from("!HH", buf, _HEADER.size)
        assert stats_type == ofp.OFPMP_PORT_DESC, stats_type
        return parser.OFPPortDescStatsRequest(None, flags)
    raise AssertionError(f"unexpected encoded message type {kind}")


def decode_all(effects) -> list:
    """The messages of an ``Effects`` (or a list of messages), decoded."""
    messages = effects if isinstance(effects, list) else effects.messages
    return [decode(m) for m in messages]


def _flow_mod(buf: bytearray):
    offset = _HEADER.size
    fields = _FLOW_MOD.unpack_from(buf, offset)
    offset += _FLOW_MOD.size
    match = parser.OFPMatch.parser(buf, offset)
    offset += -(-match.length // 8) * 8
    instructions = []
    while offset < len(buf):
        instruction = parser.OFPInstruction.parser(buf, offset)
        instructions.append(instruction)
        offset += instruction.len
    cookie, cookie_mask, table_id, command, idle, hard, priority, buffer_id = fields[:8]
    out_port, out_group, flags = fields[8:]
    return parser.OFPFlowMod(
        None, cookie, cookie_mask, table_id, command, idle, hard, priority, buffer_id,
        out_port, out_group, flags, match, instructions,
    )  # fmt: skip


def _packet_out(buf: bytearray):
    offset = _HEADER.size
    buffer_id, in_port, actions_len = _PACKET_OUT.unpack_from(buf, offset)
    offset += _PACKET_OUT.size
    end = offset + actions_len
    actions = []
    while offset < end:
        action = parser.OFPAction.parser(buf, offset)
        actions.append(action)
        offset += action.len
    data = bytes(buf[end:]) or None
    return parser.OFPPacketOut(None, buffer_id, in_port, actions, data)


def flow_from_removed_match(match) -> Flow | None:
    """The Flow a per-flow rule's match (a framework ``OFPMatch``) names, ports 0 where not
    matched: the oracle for ``openflow.parse_flow_removed`` and a help in tests."""
    fields = dict(match.items())
    if "ipv4_src" in fields:
        version, src, dst = 4, fields["ipv4_src"], fields["ipv4_dst"]
    elif "ipv6_src" in fields:
        version, src, dst = 6, fields["ipv6_src"], fields["ipv6_dst"]
    else:
        return None
    proto = fields.get("ip_proto")
    prefix = "tcp" if proto == PROTO_TCP else "udp"
    return Flow(
        version,
        ipaddress.ip_address(src).packed,
        ipaddress.ip_address(dst).packed,
        proto,
        fields.get(f"{prefix}_src", 0),
        fields.get(f"{prefix}_dst", 0),
    )


def raw_packet_in(in_port: int, data: bytes, buffer_id: int = ofp.OFP_NO_BUFFER) -> bytes:
    """An OFPT_PACKET_IN as the switch sends it (what the fast lane hands the core)."""
    match = bytearray()
    parser.OFPMatch(in_port=in_port).serialize(match, 0)
    body = struct.pack("!IHBBQ", buffer_id, len(data), ofp.OFPR_NO_MATCH, 0, 0)
    body += bytes(match) + b"\0\0" + data
    return struct.pack("!BBHI", 4, ofp.OFPT_PACKET_IN, 8 + len(body), 0) + body
