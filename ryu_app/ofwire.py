"""The two messages of the new-flow path, encoded straight to OpenFlow 1.3 bytes.

Every new flow costs one per-flow flow-mod and one packet-out.  Built through the framework's
message classes they cost more than all of Lockstep's own decisions together (address strings
converted back to bytes, a class per action, generic serialisers); here the per-backend part
(the actions: inner MAC, ``tun_dst``, tunnel key, output) is encoded once and cached, and each
flow only packs its match.  The bytes are identical to what ``ofmsg.flow_rule`` and
``ofmsg.packet_out`` serialise to (a unit test compares them), so everything else keeps using
``ofmsg`` and the framework's classes.

The two messages a gateway receives per flow are decoded here too, to the few things it reads:
the packet-in (``parse_packet_in``: buffer id, in_port, frame) and the flow-removed at its end
(``parse_flow_removed``: cookie, reason, the flow its match names).

Layouts: OpenFlow 1.3.5 sections 7.2.2 (OXM), 7.2.5 (actions), 7.3.4.2 (flow-mod), 7.3.7
(packet-out), 7.4.1 (packet-in), 7.4.2 (flow-removed); ``tun_dst`` is the Nicira extension field
NXM_NX_TUN_IPV4_DST.
"""

from __future__ import annotations

import functools
import ipaddress
import struct

from ryu_app.core.flowkey import ETH_IPV4, ETH_IPV6, PROTO_TCP, PROTO_UDP, Flow

OFP_VERSION = 0x04
OFPT_PACKET_IN = 10
OFPT_FLOW_REMOVED = 11
OFPT_PACKET_OUT = 13
OFPT_FLOW_MOD = 14
OFPFC_ADD = 0
OFPFF_SEND_FLOW_REM = 1
OFP_NO_BUFFER = 0xFFFFFFFF
OFPP_CONTROLLER = 0xFFFFFFFD  # the in_port of a frame the controller wrote itself
OFPIT_APPLY_ACTIONS = 4
OFPAT_OUTPUT = 0
OFPAT_SET_FIELD = 25
OFPMT_OXM = 1
OFPCML_MAX = 0xFFE5  # the framework's default max_len (only used for output to the controller)
# Why a port-status message came (``ofp_port_reason``, OpenFlow 1.3.5 section 7.4.3).
OFPPR_ADD = 0
OFPPR_DELETE = 1
OFPPR_MODIFY = 2


def _oxm_header(oxm_class: int, field: int, length: int) -> int:
    return oxm_class << 16 | field << 9 | length


def _basic(field: int, length: int) -> bytes:
    return struct.pack("!I", _oxm_header(0x8000, field, length))


IN_PORT = _basic(0, 4)
ETH_DST = _basic(3, 6)
ETH_TYPE = _basic(5, 2)
IP_PROTO = _basic(10, 1)
IPV4_SRC, IPV4_DST = _basic(11, 4), _basic(12, 4)
TCP_SRC, TCP_DST = _basic(13, 2), _basic(14, 2)
UDP_SRC, UDP_DST = _basic(15, 2), _basic(16, 2)
IPV6_SRC, IPV6_DST = _basic(26, 16), _basic(27, 16)
TUNNEL_ID = _basic(38, 8)
TUN_IPV4_DST = struct.pack("!I", _oxm_header(0x0001, 32, 4))  # NXM_NX_TUN_IPV4_DST

_HEADER = struct.Struct("!BBHI")
# cookie, cookie_mask, table_id, command, idle, hard, priority, buffer_id, out_port, out_group,
# flags, 2 pad
_FLOW_MOD = struct.Struct("!QQBBHHHIIIH2x")
_PACKET_OUT = struct.Struct("!IIH6x")
_PORT = struct.Struct("!I")
_U16 = struct.Struct("!H")


def _pad8(data: bytes) -> bytes:
    return data + bytes(-len(data) % 8)


def _set_field(oxm: bytes, value: bytes) -> bytes:
    """type, length (padded to 8), the field's OXM header and value, padding."""
    length = 4 + len(oxm) + len(value)
    padded = -(-length // 8) * 8
    return struct.pack("!HH", OFPAT_SET_FIELD, padded) + oxm + value + bytes(padded - length)


@functools.lru_cache(maxsize=4096)
def backend_actions(mac: str, tunnel_ip: str, vni: int, tunnel_port: int) -> bytes:
    """The actions that send a packet to one backend: set the inner destination MAC, the
    tunnel destination and key, output to the tunnel port (as ``ofmsg.backend_actions``)."""
    return (
        _set_field(ETH_DST, bytes.fromhex(mac.replace(":", "")))
        + _set_field(TUN_IPV4_DST, ipaddress.IPv4Address(tunnel_ip).packed)
        + _set_field(TUNNEL_ID, vni.to_bytes(8, "big"))
        + struct.pack("!HHIH6x", OFPAT_OUTPUT, 16, tunnel_port, OFPCML_MAX)
    )


# The usual per-flow match in one pack: IPv4, TCP, both ports (51 bytes, padded to 56).
_IPV4_TCP_MATCH = struct.Struct("!HH4sI4sH4sB4s4s4s4s4sH4sH")
_IPV4_TCP_MATCH_HEAD = (OFPMT_OXM, _IPV4_TCP_MATCH.size, IN_PORT)
_IPV4_TCP_MATCH_MIDDLE = (ETH_TYPE, ETH_IPV4, IP_PROTO, PROTO_TCP, IPV4_SRC)


def flow_match(flow: Flow, uplink: int, with_source_port: bool) -> bytes:
    """The per-flow rule's OXM match (``ofmsg.flow_match``), in the framework's field order."""
    if flow.version == 4 and flow.proto == PROTO_TCP and with_source_port:
        return _IPV4_TCP_MATCH.pack(
            *_IPV4_TCP_MATCH_HEAD, uplink, *_IPV4_TCP_MATCH_MIDDLE, flow.src, IPV4_DST, flow.dst,
            TCP_SRC, flow.src_port, TCP_DST, flow.dst_port,
        ) + bytes(5)  # fmt: skip
    if flow.version == 4:
        fields = ETH_TYPE + _U16.pack(ETH_IPV4)
        addresses = IPV4_SRC + flow.src + IPV4_DST + flow.dst
    else:
        fields = ETH_TYPE + _U16.pack(ETH_IPV6)
        addresses = IPV6_SRC + flow.src + IPV6_DST + flow.dst
    tcp = flow.proto == PROTO_TCP
    body = IN_PORT + _PORT.pack(uplink) + fields + IP_PROTO + bytes((flow.proto,))
    if flow.version == 4:
        body += addresses
    ports = b""
    if with_source_port:
        ports += (TCP_SRC if tcp else UDP_SRC) + _U16.pack(flow.src_port)
    ports += (TCP_DST if tcp else UDP_DST) + _U16.pack(flow.dst_port)
    body += ports
    if flow.version == 6:
        body += addresses
    return _pad8(struct.pack("!HH", OFPMT_OXM, 4 + len(body)) + body)


def flow_mod(match: bytes, actions: bytes, cookie: int, idle_timeout: int, priority: int) -> bytes:
    """An ADD of one rule with apply-actions, unbuffered, asking for flow-removed."""
    instruction = struct.pack("!HH4x", OFPIT_APPLY_ACTIONS, 8 + len(actions)) + actions
    body = _FLOW_MOD.pack(
        cookie, 0, 0, OFPFC_ADD, idle_timeout, 0, priority, OFP_NO_BUFFER, 0, 0,
        OFPFF_SEND_FLOW_REM,
    )  # fmt: skip
    length = _HEADER.size + len(body) + len(match) + len(instruction)
    return _HEADER.pack(OFP_VERSION, OFPT_FLOW_MOD, length, 0) + body + match + instruction


def controller_packet_out(actions: bytes, frame: bytes) -> bytes:
    """A frame the controller wrote itself (a health probe), sent with ``actions``."""
    return packet_out(OFPP_CONTROLLER, OFP_NO_BUFFER, actions, frame)


def packet_out(in_port: int, buffer_id: int, actions: bytes, data: bytes) -> bytes:
    """Send a packet-in's packet on (its data rides along only when it was not buffered)."""
    if buffer_id != OFP_NO_BUFFER:
        data = b""
    length = _HEADER.size + _PACKET_OUT.size + len(actions) + len(data)
    head = _HEADER.pack(OFP_VERSION, OFPT_PACKET_OUT, length, 0)
    return head + _PACKET_OUT.pack(buffer_id, in_port, len(actions)) + actions + data


# buffer_id, total_len, reason, table_id, cookie; then the match (type, length, OXMs)
_PACKET_IN = struct.Struct("!8xIHBBQHH")
_PACKET_IN_MATCH = 24  # offset of the match in the message
_OXM = struct.Struct("!I")


class WireError(ValueError):
    """A received message whose OpenFlow framing does not parse (``reason``: a short label)."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def parse_packet_in(message: bytes) -> tuple[int, int, bytes]:
    """(buffer id, in_port, frame) of an OpenFlow 1.3 PACKET_IN message (header included).

    Raises ``WireError`` for a message too short for its match, a match that is not OXM or
    runs past the message, or a match without ``in_port``.
    """
    if len(message) < _PACKET_IN.size:
        raise WireError("bad-packet-in", f"{len(message)} bytes is too short")
    buffer_id, total_len, _reason, _table, _cookie, match_type, match_len = _PACKET_IN.unpack_from(
        message
    )
    match_end = _PACKET_IN_MATCH + match_len
    data_start = _PACKET_IN_MATCH + -(-match_len // 8) * 8 + 2  # padded match, 2 bytes pad
    if match_type != OFPMT_OXM or match_len < 4 or data_start > len(message):
        raise WireError("bad-packet-in", f"match type {match_type}, length {match_len}")
    in_port = None
    offset = _PACKET_IN_MATCH + 4
    while offset + 4 <= match_end:
        header = _OXM.unpack_from(message, offset)[0]
        if header == _IN_PORT_HEADER:
            if offset + 8 > match_end:
                break
            in_port = _PORT.unpack_from(message, offset + 4)[0]
            break
        offset += 4 + (header & 0xFF)
    if in_port is None:
        raise WireError("bad-packet-in", "no in_port in the match")
    data = message[data_start:]
    if total_len < len(data):  # the switch padded the frame
        data = data[:total_len]
    return buffer_id, in_port, data


_IN_PORT_HEADER = _OXM.unpack(IN_PORT)[0]

# cookie, priority, reason, table, durations, timeouts, counts; then the match (type, length)
_FLOW_REMOVED = struct.Struct("!8xQHBBIIHHQQHH")
_FLOW_REMOVED_MATCH = 48
# OXM field numbers (class OPENFLOW_BASIC) of the fields a per-flow rule matches on
_FIELD_ETH_TYPE, _FIELD_IP_PROTO = 5, 10
_ADDRESS_FIELDS = {4: (11, 12), 6: (26, 27)}  # version: (source, destination)
_PORT_FIELDS = {PROTO_TCP: (13, 14), PROTO_UDP: (15, 16)}


def parse_flow_removed(message: bytes) -> tuple[int, int, Flow | None]:
    """(cookie, reason, flow) of an OpenFlow 1.3 FLOW_REMOVED message (header included).

    ``flow`` is the Flow the rule's match names (ports 0 where not matched, as in a ``src-ip``
    VIP's rule), or None when the match names no IPv4/IPv6 TCP/UDP flow.  Raises
    ``WireError`` (reason ``bad-flow-removed``) when the message does not frame.
    """
    if len(message) < _FLOW_REMOVED.size:
        raise WireError("bad-flow-removed", f"{len(message)} bytes is too short")
    cookie, _priority, reason, *_, match_type, match_len = _FLOW_REMOVED.unpack_from(message)
    match_end = _FLOW_REMOVED_MATCH + match_len
    if match_type != OFPMT_OXM or match_len < 4 or match_end > len(message):
        raise WireError("bad-flow-removed", f"match type {match_type}, length {match_len}")
    fields: dict[int, bytes] = {}
    offset = _FLOW_REMOVED_MATCH + 4
    while offset + 4 <= match_end:
        header = _OXM.unpack_from(message, offset)[0]
        length = header & 0xFF
        if header >> 16 == 0x8000 and not header & 0x100:  # basic class, no mask
            fields[header >> 9 & 0x7F] = message[offset + 4 : offset + 4 + length]
        offset += 4 + length
    return cookie, reason, _flow_of(fields)


def _flow_of(fields: dict[int, bytes]) -> Flow | None:
    eth_type = int.from_bytes(fields.get(_FIELD_ETH_TYPE, b""), "big")
    version = {ETH_IPV4: 4, ETH_IPV6: 6}.get(eth_type)
    proto = int.from_bytes(fields.get(_FIELD_IP_PROTO, b""), "big")
    if version is None or proto not in _PORT_FIELDS:
        return None
    src_field, dst_field = _ADDRESS_FIELDS[version]
    size = 4 if version == 4 else 16
    src, dst = fields.get(src_field, b""), fields.get(dst_field, b"")
    if len(src) != size or len(dst) != size:
        return None
    sport_field, dport_field = _PORT_FIELDS[proto]
    src_port = int.from_bytes(fields.get(sport_field, b""), "big")
    dst_port = int.from_bytes(fields.get(dport_field, b""), "big")
    return Flow(version, src, dst, proto, src_port, dst_port)
