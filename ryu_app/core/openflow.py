"""OpenFlow 1.3 on the wire: every message Lockstep sends, encoded to bytes, and the two it
reads on the packet path, decoded.  The one encoder (Faucet's ``valve_of.py`` is the model):
nothing else builds a message, and nothing here imports the framework, so the core that calls
it imports without os-ken.

Each builder produces exactly the bytes os-ken's message classes serialise for the same
message (field order, padding, defaults; the transaction id is 0): property tests compare them
with os-ken's serialiser (``tests/ryu_app/core/test_openflow.py``).  What each rule of a
gateway's table matches and does is ``pipeline``'s business; this module only knows the format.

- matches: ``match(in_port=1, eth_type=0x0800, tcp_dst=(0xC000, 0xC000), ...)``, fields in
  os-ken's names and order (``FIELDS``), values as os-ken takes them (ints, address strings) or
  as packed bytes; ``(value, mask)`` for a masked field;
- actions: ``output``, ``set_field``, ``reg_move`` (Nicira), concatenated as bytes;
- messages: ``flow_mod`` (add or delete), ``packet_out``, ``port_desc_request``;
- the new-flow path: ``flow_match`` (a Flow's match in one ``struct`` pack) and the same
  ``flow_mod`` and ``packet_out``, cheap enough for tens of thousands of flows a second;
- decoding: ``parse_packet_in`` and ``parse_flow_removed`` (``WireError`` for what does not
  frame).

Layouts: OpenFlow 1.3.5 sections 7.2.2 (OXM), 7.2.4 (instructions), 7.2.5 (actions), 7.3.4.2
(flow-mod), 7.3.5.7 (port description request), 7.3.7 (packet-out), 7.4.1 (packet-in), 7.4.2
(flow-removed); Nicira's ``NXAST_REG_MOVE`` and ``NXM_NX_TUN_IPV4_DST`` from Open vSwitch's
``nicira-ext.h`` / ``meta-flow.h``.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import NamedTuple

from ryu_app.core.flowkey import ETH_IPV4, ETH_IPV6, PROTO_TCP, PROTO_UDP, Flow

OFP_VERSION = 0x04
OFPT_PACKET_IN = 10
OFPT_FLOW_REMOVED = 11
OFPT_PACKET_OUT = 13
OFPT_FLOW_MOD = 14
OFPT_MULTIPART_REQUEST = 18
OFPMP_PORT_DESC = 13
# Flow-mod commands and flags
OFPFC_ADD = 0
OFPFC_DELETE = 3
OFPFC_DELETE_STRICT = 4
OFPFF_SEND_FLOW_REM = 1
OFPTT_ALL = 0xFF  # every table (deletes)
OFP_NO_BUFFER = 0xFFFFFFFF
OFP_DEFAULT_PRIORITY = 0x8000  # a flow-mod's priority when none is given (deletes)
# Reserved ports and groups
OFPP_IN_PORT = 0xFFFFFFF8
OFPP_CONTROLLER = 0xFFFFFFFD  # also the in_port of a frame the controller wrote itself
OFPP_ANY = 0xFFFFFFFF
OFPG_ANY = 0xFFFFFFFF
OFPCML_MAX = 0xFFE5  # os-ken's default max_len of an output (used only towards the controller)
OFPCML_NO_BUFFER = 0xFFFF  # to the controller: the whole packet, unbuffered
OFPIT_APPLY_ACTIONS = 4
OFPIT_METER = 6
OFPAT_OUTPUT = 0
OFPAT_SET_FIELD = 25
OFPAT_EXPERIMENTER = 0xFFFF
OFPMT_OXM = 1
# Why the switch removed a rule (flow-removed ``reason``, section 7.4.2).
OFPRR_IDLE_TIMEOUT = 0
OFPRR_HARD_TIMEOUT = 1
OFPRR_DELETE = 2
# Why a port-status message came (``ofp_port_reason``, section 7.4.3).
OFPPR_ADD = 0
OFPPR_DELETE = 1
OFPPR_MODIFY = 2

NX_EXPERIMENTER = 0x00002320
NXAST_REG_MOVE = 6
OXM_BASIC = 0x8000  # OFPXMC_OPENFLOW_BASIC
OXM_NXM_1 = 0x0001  # Nicira's NXM_NX_ fields
OXM_EXPERIMENTER = 0xFFFF  # OFPXMC_EXPERIMENTER: the header carries an experimenter id
ONF_EXPERIMENTER = 0x4F4E4600  # "ONF": OpenFlow 1.3's extension fields (EXT-256: tcp_flags)


class Field(NamedTuple):
    """One OXM field: its class and number, its size in bytes, and how a value is given."""

    oxm_class: int
    number: int
    size: int
    kind: str  # "int", "mac", "ipv4" or "ipv6"
    experimenter: int = 0  # an experimenter field's id (its header is 8 bytes), else 0

    @property
    def order(self) -> int:
        """os-ken's sort key for a match's fields (``OFPMatch``: class << 7 | number; an
        experimenter field's key is its experimenter id, so it sorts after the basic ones)."""
        return self.experimenter or self.oxm_class << 7 | self.number


# The fields Lockstep matches on or sets, in os-ken's names.
FIELDS = {
    "in_port": Field(OXM_BASIC, 0, 4, "int"),
    "eth_dst": Field(OXM_BASIC, 3, 6, "mac"),
    "eth_src": Field(OXM_BASIC, 4, 6, "mac"),
    "eth_type": Field(OXM_BASIC, 5, 2, "int"),
    "ip_proto": Field(OXM_BASIC, 10, 1, "int"),
    "ipv4_src": Field(OXM_BASIC, 11, 4, "ipv4"),
    "ipv4_dst": Field(OXM_BASIC, 12, 4, "ipv4"),
    "tcp_src": Field(OXM_BASIC, 13, 2, "int"),
    "tcp_dst": Field(OXM_BASIC, 14, 2, "int"),
    "udp_src": Field(OXM_BASIC, 15, 2, "int"),
    "udp_dst": Field(OXM_BASIC, 16, 2, "int"),
    "arp_op": Field(OXM_BASIC, 21, 2, "int"),
    "arp_spa": Field(OXM_BASIC, 22, 4, "ipv4"),
    "arp_tpa": Field(OXM_BASIC, 23, 4, "ipv4"),
    "arp_sha": Field(OXM_BASIC, 24, 6, "mac"),
    "arp_tha": Field(OXM_BASIC, 25, 6, "mac"),
    "ipv6_src": Field(OXM_BASIC, 26, 16, "ipv6"),
    "ipv6_dst": Field(OXM_BASIC, 27, 16, "ipv6"),
    "icmpv6_type": Field(OXM_BASIC, 29, 1, "int"),
    "icmpv6_code": Field(OXM_BASIC, 30, 1, "int"),
    "ipv6_nd_target": Field(OXM_BASIC, 31, 16, "ipv6"),
    "tunnel_id": Field(OXM_BASIC, 38, 8, "int"),
    "tun_ipv4_dst": Field(OXM_NXM_1, 32, 4, "ipv4"),
    "reg1": Field(OXM_NXM_1, 1, 4, "int"),  # switch mode: the tunnel port a learned pin outputs
    # OpenFlow 1.3 has no TCP flags field; os-ken's ``tcp_flags`` there is the ONF extension
    # (OVS: ONFOXM_ET_TCP_FLAGS), which Open vSwitch accepts in 1.3 (switch mode's SYN rules).
    "tcp_flags": Field(OXM_EXPERIMENTER, 42, 2, "int", ONF_EXPERIMENTER),
}


def oxm_header(name: str, masked: bool = False) -> bytes:
    """A field's OXM header: class, number, has-mask bit, length of what follows (4 bytes);
    an experimenter field's also carries its experimenter id, counted in the length."""
    field = FIELDS[name]
    length = field.size * (2 if masked else 1)
    if field.experimenter:
        head = struct.pack("!HBB", field.oxm_class, field.number << 1 | masked, length + 4)
        return head + struct.pack("!I", field.experimenter)
    return struct.pack("!HBB", field.oxm_class, field.number << 1 | masked, length)


def field_value(name: str, value) -> bytes:
    """A field's value in network order: ints, ``"aa:bb:..."`` MACs and address strings as
    os-ken takes them, or already packed bytes of the field's size."""
    field = FIELDS[name]
    if isinstance(value, bytes | bytearray):
        packed = bytes(value)
    elif field.kind == "int":
        packed = int(value).to_bytes(field.size, "big")
    elif field.kind == "mac":
        packed = bytes.fromhex(value.replace(":", ""))
    else:
        packed = ipaddress.ip_address(value).packed
    if len(packed) != field.size:
        raise ValueError(f"{name}: {value!r} is not {field.size} bytes")
    return packed


def _oxm(name: str, value) -> bytes:
    if isinstance(value, tuple):  # (value, mask): os-ken sends the value masked, then the mask
        packed, mask = field_value(name, value[0]), field_value(name, value[1])
        packed = bytes(v & m for v, m in zip(packed, mask, strict=True))
        return oxm_header(name, masked=True) + packed + mask
    return oxm_header(name) + field_value(name, value)


def _pad8(data: bytes) -> bytes:
    return data + bytes(-len(data) % 8)


def match(**fields) -> bytes:
    """An OXM match (``ofp_match``, padded) of ``fields`` in os-ken's order; ``match()`` is the
    empty match (every packet)."""
    oxms = b"".join(_oxm(name, fields[name]) for name in sorted(fields, key=_order))
    return _pad8(struct.pack("!HH", OFPMT_OXM, 4 + len(oxms)) + oxms)


def _order(name: str) -> int:
    return FIELDS[name].order


# ---- actions and instructions ----------------------------------------------------------------


def output(port: int, max_len: int = OFPCML_MAX) -> bytes:
    """Output to ``port`` (``max_len``: how much of the packet a controller gets)."""
    return struct.pack("!HHIH6x", OFPAT_OUTPUT, 16, port, max_len)


def to_controller() -> bytes:
    """Output to the controller, the whole packet unbuffered (it rides along)."""
    return output(OFPP_CONTROLLER, OFPCML_NO_BUFFER)


def set_field(name: str, value) -> bytes:
    """Set one field: type, length (padded to 8), the field's OXM, padding."""
    oxm = _oxm(name, value)
    return _pad8(struct.pack("!HH", OFPAT_SET_FIELD, -(-(4 + len(oxm)) // 8) * 8) + oxm)


def reg_move(src: str, dst: str, n_bits: int, src_ofs: int = 0, dst_ofs: int = 0) -> bytes:
    """Nicira's move: copy ``n_bits`` of field ``src`` to ``dst`` (``NXActionRegMove``)."""
    body = struct.pack("!HHHH", NXAST_REG_MOVE, n_bits, src_ofs, dst_ofs)
    body += oxm_header(src) + oxm_header(dst)
    action = struct.pack("!HHI", OFPAT_EXPERIMENTER, -(-(8 + len(body)) // 8) * 8, NX_EXPERIMENTER)
    return _pad8(action + body)


def apply_actions(actions: bytes) -> bytes:
    """The instruction that applies ``actions`` (none: no instruction, the packet is dropped)."""
    if not actions:
        return b""
    return struct.pack("!HH4x", OFPIT_APPLY_ACTIONS, 8 + len(actions)) + actions


# ---- messages --------------------------------------------------------------------------------

_HEADER = struct.Struct("!BBHI")  # version, type, length, xid
# cookie, cookie_mask, table_id, command, idle, hard, priority, buffer_id, out_port, out_group,
# flags, 2 pad
_FLOW_MOD = struct.Struct("!QQBBHHHIIIH2x")
_PACKET_OUT = struct.Struct("!IIH6x")
_PORT = struct.Struct("!I")
_U16 = struct.Struct("!H")


def flow_mod(
    match: bytes,
    actions: bytes = b"",
    priority: int = OFP_DEFAULT_PRIORITY,
    cookie: int = 0,
    idle_timeout: int = 0,
    flags: int = 0,
    *,
    cookie_mask: int = 0,
    command: int = OFPFC_ADD,
    table_id: int = 0,
    hard_timeout: int = 0,
    out_port: int = 0,
    out_group: int = 0,
    meter_id: int = 0,
) -> bytes:
    """A flow-mod of one rule (unbuffered), its ``actions`` applied; os-ken's defaults.  The
    fields an added rule needs may be given by position (the new-flow path does: a keyword
    argument costs it a little per flow).  ``meter_id``: the rule's packets go through that
    meter first (``ofmeter``; the flood guard's rules)."""
    if actions:
        actions = struct.pack("!HH4x", OFPIT_APPLY_ACTIONS, 8 + len(actions)) + actions
    if meter_id:
        actions = struct.pack("!HHI", OFPIT_METER, 8, meter_id) + actions
    body = _FLOW_MOD.pack(
        cookie, cookie_mask, table_id, command, idle_timeout, hard_timeout, priority,
        OFP_NO_BUFFER, out_port, out_group, flags,
    )  # fmt: skip
    length = 48 + len(match) + len(actions)  # header 8, body 40
    return _HEADER.pack(OFP_VERSION, OFPT_FLOW_MOD, length, 0) + body + match + actions


def packet_out(in_port: int, buffer_id: int, actions: bytes, data: bytes) -> bytes:
    """Send a packet-in's packet on with ``actions`` (its data rides along only when it was
    not buffered in the switch)."""
    if buffer_id != OFP_NO_BUFFER:
        data = b""
    length = 24 + len(actions) + len(data)  # header 8, body 16
    head = _HEADER.pack(OFP_VERSION, OFPT_PACKET_OUT, length, 0)
    return head + _PACKET_OUT.pack(buffer_id, in_port, len(actions)) + actions + data


def controller_packet_out(actions: bytes, frame: bytes) -> bytes:
    """A frame the controller wrote itself (a health probe, a neighbour advertisement)."""
    return packet_out(OFPP_CONTROLLER, OFP_NO_BUFFER, actions, frame)


def port_desc_request() -> bytes:
    """Ask the switch for its ports (a multipart request: type, flags, 4 pad)."""
    return _HEADER.pack(OFP_VERSION, OFPT_MULTIPART_REQUEST, 16, 0) + struct.pack(
        "!HH4x", OFPMP_PORT_DESC, 0
    )


# ---- the new-flow path -----------------------------------------------------------------------

# The OXM headers of a flow's fields, and the usual per-flow match in one pack: IPv4, TCP,
# both ports (51 bytes, padded to 56).
_IN_PORT, _ETH_TYPE = oxm_header("in_port"), oxm_header("eth_type")
_IP_PROTO = oxm_header("ip_proto")
_IPV4_SRC, _IPV4_DST = oxm_header("ipv4_src"), oxm_header("ipv4_dst")
_IPV6_SRC, _IPV6_DST = oxm_header("ipv6_src"), oxm_header("ipv6_dst")
_TCP_SRC, _TCP_DST = oxm_header("tcp_src"), oxm_header("tcp_dst")
_UDP_SRC, _UDP_DST = oxm_header("udp_src"), oxm_header("udp_dst")
_IPV4_TCP_MATCH = struct.Struct("!HH4sI4sH4sB4s4s4s4s4sH4sH")
_IPV4_TCP_MATCH_HEAD = (OFPMT_OXM, _IPV4_TCP_MATCH.size, _IN_PORT)
_IPV4_TCP_MATCH_MIDDLE = (_ETH_TYPE, ETH_IPV4, _IP_PROTO, PROTO_TCP, _IPV4_SRC)


def flow_match(flow: Flow, in_port: int, with_source_port: bool) -> bytes:
    """``match(in_port=..., eth_type=..., ip_proto=..., <addresses>, <ports>)`` of one flow,
    byte for byte, for the new-flow path: the client's port only ``with_source_port``."""
    if flow.version == 4 and flow.proto == PROTO_TCP and with_source_port:
        return _IPV4_TCP_MATCH.pack(
            *_IPV4_TCP_MATCH_HEAD, in_port, *_IPV4_TCP_MATCH_MIDDLE, flow.src, _IPV4_DST,
            flow.dst, _TCP_SRC, flow.src_port, _TCP_DST, flow.dst_port,
        ) + bytes(5)  # fmt: skip
    if flow.version == 4:
        fields = _ETH_TYPE + _U16.pack(ETH_IPV4)
        addresses = _IPV4_SRC + flow.src + _IPV4_DST + flow.dst
    else:
        fields = _ETH_TYPE + _U16.pack(ETH_IPV6)
        addresses = _IPV6_SRC + flow.src + _IPV6_DST + flow.dst
    tcp = flow.proto == PROTO_TCP
    body = _IN_PORT + _PORT.pack(in_port) + fields + _IP_PROTO + bytes((flow.proto,))
    if flow.version == 4:
        body += addresses
    if with_source_port:
        body += (_TCP_SRC if tcp else _UDP_SRC) + _U16.pack(flow.src_port)
    body += (_TCP_DST if tcp else _UDP_DST) + _U16.pack(flow.dst_port)
    if flow.version == 6:  # IPv6 addresses (fields 26, 27) sort after the ports
        body += addresses
    return _pad8(struct.pack("!HH", OFPMT_OXM, 4 + len(body)) + body)


# ---- decoding what the switch sends on the packet path ---------------------------------------

# buffer_id, total_len, reason, table_id, cookie; then the match (type, length)
_PACKET_IN = struct.Struct("!8xIHBBQHH")
_PACKET_IN_MATCH = 24  # offset of the match in the message
_OXM = struct.Struct("!I")
_IN_PORT_HEADER = _OXM.unpack(_IN_PORT)[0]


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


# cookie, priority, reason, table, durations, timeouts, counts; then the match (type, length)
_FLOW_REMOVED = struct.Struct("!8xQHBBIIHHQQHH")
_FLOW_REMOVED_MATCH = 48
_NUMBER = {name: field.number for name, field in FIELDS.items() if field.oxm_class == OXM_BASIC}
_ADDRESS_FIELDS = {
    4: (_NUMBER["ipv4_src"], _NUMBER["ipv4_dst"]),
    6: (_NUMBER["ipv6_src"], _NUMBER["ipv6_dst"]),
}
_PORT_FIELDS = {
    PROTO_TCP: (_NUMBER["tcp_src"], _NUMBER["tcp_dst"]),
    PROTO_UDP: (_NUMBER["udp_src"], _NUMBER["udp_dst"]),
}


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
        if header >> 16 == OXM_BASIC and not header & 0x100:  # basic class, no mask
            fields[header >> 9 & 0x7F] = message[offset + 4 : offset + 4 + length]
        offset += 4 + length
    return cookie, reason, _flow_of(fields)


def _flow_of(fields: dict[int, bytes]) -> Flow | None:
    eth_type = int.from_bytes(fields.get(_NUMBER["eth_type"], b""), "big")
    version = {ETH_IPV4: 4, ETH_IPV6: 6}.get(eth_type)
    proto = int.from_bytes(fields.get(_NUMBER["ip_proto"], b""), "big")
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
