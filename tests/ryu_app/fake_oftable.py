"""A fake OpenFlow 1.3 switch table for tests: it applies the controller's messages and answers
"where does this packet go" (Faucet's ``clib/fakeoftable.py`` idea, written afresh).

The controller's bytes are decoded with os-ken's parsers (tests may import the framework), and
every message must come back byte for byte when os-ken serialises what it decoded: so each test
that drives the core through this table also checks the one encoder against os-ken.

- ``FakeOFTable.apply(messages)``: flow-mods add, delete (by cookie and mask, table ``ALL``) and
  delete strictly (priority and match); packet-outs and port description requests are recorded
  (``packet_outs``, ``port_desc_requests``); meter-mods add, modify and delete meters
  (``meters``; deleting one deletes the rules that use it, as OpenFlow says), a rule naming a
  meter that is not there is refused; meter requests are counted (``meter_requests``).  A rule
  added with a match whose prerequisites are missing (``ipv4_dst`` without ``eth_type``
  0x0800, ...) is refused, as a switch would.
- ``forward(packet)``: the highest-priority rule that matches ``packet`` (a field dict, see
  ``packet_fields``) and what its actions do to it: output ports, fields set (``tun_ipv4_dst``,
  ``eth_dst``, ...), Nicira register moves.  Two rules of equal priority that both match are an
  error (OpenFlow leaves the choice undefined).
- ``expire(rule)``: the switch's idle timeout: the rule goes, and the FLOW_REMOVED it sends.
- ``raw_packet_in``/``raw_flow_removed``: the messages a switch sends, as bytes.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field

from os_ken.lib.packet import arp, ethernet, icmpv6, ipv4, ipv6, packet, tcp, udp

from ryu_app.shell.compat import ofproto_v1_3 as ofp
from ryu_app.shell.compat import ofproto_v1_3_parser as parser

_HEADER = struct.Struct("!BBHI")
_FLOW_MOD = struct.Struct("!QQBBHHHIIIH2x")
_PACKET_OUT = struct.Struct("!IIH6x")
_FLOW_STATS_REQUEST = struct.Struct("!B3xII4xQQ")
MAC_FIELDS = frozenset({"eth_src", "eth_dst", "arp_sha", "arp_tha"})
ADDRESS_FIELDS = frozenset(
    {"ipv4_src", "ipv4_dst", "arp_spa", "arp_tpa", "tun_ipv4_dst"}
    | {"ipv6_src", "ipv6_dst", "ipv6_nd_target"}
)
IPV6_FIELDS = frozenset({"ipv6_src", "ipv6_dst", "ipv6_nd_target"})
# OpenFlow 1.3.5 table 12: a field may be matched only where its prerequisite holds.
PREREQUISITES = {
    "ipv4_src": ("eth_type", {0x0800}),
    "ipv4_dst": ("eth_type", {0x0800}),
    "ipv6_src": ("eth_type", {0x86DD}),
    "ipv6_dst": ("eth_type", {0x86DD}),
    "arp_op": ("eth_type", {0x0806}),
    "arp_spa": ("eth_type", {0x0806}),
    "arp_tpa": ("eth_type", {0x0806}),
    "arp_sha": ("eth_type", {0x0806}),
    "arp_tha": ("eth_type", {0x0806}),
    "ip_proto": ("eth_type", {0x0800, 0x86DD}),
    "tcp_src": ("ip_proto", {6}),
    "tcp_dst": ("ip_proto", {6}),
    "udp_src": ("ip_proto", {17}),
    "udp_dst": ("ip_proto", {17}),
    "icmpv6_type": ("ip_proto", {58}),
    "icmpv6_code": ("ip_proto", {58}),
    "ipv6_nd_target": ("icmpv6_type", {135, 136}),
    "tcp_flags": ("ip_proto", {6}),
}


# ---- values ------------------------------------------------------------------------------------


def as_int(name: str, value) -> int:
    """A field's value as an int, whichever way os-ken or a test wrote it."""
    if isinstance(value, int):
        return value
    if name in MAC_FIELDS:
        return int(value.replace(":", ""), 16)
    return int(ipaddress.ip_address(value))


def as_text(name: str, value: int):
    """A field's int back in the form a test writes: MACs and addresses as text."""
    if name in MAC_FIELDS:
        return value.to_bytes(6, "big").hex(":")
    if name in IPV6_FIELDS:
        return str(ipaddress.IPv6Address(value))
    if name in ADDRESS_FIELDS:
        return str(ipaddress.IPv4Address(value))
    return value


def packet_fields(in_port: int, frame: bytes) -> dict[str, int]:
    """The fields a switch matches on, of ``frame`` arriving on ``in_port`` (parsed by os-ken)."""
    fields = {"in_port": in_port}
    parsed = packet.Packet(frame)
    eth = parsed.get_protocol(ethernet.ethernet)
    fields.update(eth_dst=eth.dst, eth_src=eth.src, eth_type=eth.ethertype)
    for header in parsed.protocols[1:]:
        if isinstance(header, arp.arp):
            fields.update(
                arp_op=header.opcode,
                arp_spa=header.src_ip,
                arp_tpa=header.dst_ip,
                arp_sha=header.src_mac,
                arp_tha=header.dst_mac,
            )
        elif isinstance(header, ipv4.ipv4):
            fields.update(ipv4_src=header.src, ipv4_dst=header.dst, ip_proto=header.proto)
        elif isinstance(header, ipv6.ipv6):
            fields.update(ipv6_src=header.src, ipv6_dst=header.dst, ip_proto=header.nxt)
        elif isinstance(header, tcp.tcp):
            fields.update(tcp_src=header.src_port, tcp_dst=header.dst_port, tcp_flags=header.bits)
        elif isinstance(header, udp.udp):
            fields.update(udp_src=header.src_port, udp_dst=header.dst_port)
        elif isinstance(header, icmpv6.icmpv6):
            fields.update(icmpv6_type=header.type_, icmpv6_code=header.code)
            if header.type_ in (135, 136):
                fields["ipv6_nd_target"] = header.data.dst
    return {name: as_int(name, value) for name, value in fields.items()}


# ---- decoding the controller's messages ------------------------------------------------------


class FakeDatapath:
    ofproto, ofproto_parser = ofp, parser


def decode(message: bytes):
    """A flow-mod, packet-out or port description request as os-ken's message object; raises
    AssertionError unless os-ken serialises that object back to exactly ``message``."""
    buf = bytearray(message)
    version, kind, length, xid = _HEADER.unpack_from(buf)
    assert (version, length) == (ofp.OFP_VERSION, len(buf)), (version, length, len(buf))
    if kind == ofp.OFPT_FLOW_MOD:
        decoded = _flow_mod(buf)
    elif kind == ofp.OFPT_PACKET_OUT:
        decoded = _packet_out(buf)
    elif kind == ofp.OFPT_METER_MOD:
        decoded = _meter_mod(buf)
    elif kind == ofp.OFPT_MULTIPART_REQUEST:
        stats_type, flags = struct.unpack_from("!HH", buf, _HEADER.size)
        if stats_type == ofp.OFPMP_METER_FEATURES:
            decoded = parser.OFPMeterFeaturesStatsRequest(None, flags)
        elif stats_type == ofp.OFPMP_METER:
            (meter_id,) = struct.unpack_from("!I", buf, _HEADER.size + 8)
            decoded = parser.OFPMeterStatsRequest(None, flags, meter_id)
        elif stats_type == ofp.OFPMP_FLOW:
            decoded = _flow_stats_request(buf, flags)
        else:
            assert stats_type == ofp.OFPMP_PORT_DESC, stats_type
            decoded = parser.OFPPortDescStatsRequest(None, flags)
    else:
        raise AssertionError(f"unexpected message type {kind}")
    decoded.datapath = FakeDatapath()
    decoded.set_xid(xid)  # 0 but for flow statistics requests (switch mode's pin reader)
    decoded.serialize()
    assert bytes(decoded.buf) == message, "not what os-ken writes for the same message"
    return decoded


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
    return parser.OFPFlowMod(None, *fields, match, instructions)


def _flow_stats_request(buf: bytearray, flags: int):
    table_id, out_port, out_group, cookie, cookie_mask = _FLOW_STATS_REQUEST.unpack_from(buf, 16)
    match = parser.OFPMatch.parser(buf, 16 + _FLOW_STATS_REQUEST.size)
    return parser.OFPFlowStatsRequest(
        None, flags, table_id, out_port, out_group, cookie, cookie_mask, match
    )


def _meter_mod(buf: bytearray):
    command, flags, meter_id = struct.unpack_from("!HHI", buf, _HEADER.size)
    bands = []
    for offset in range(_HEADER.size + 8, len(buf), 16):
        band_type, length, rate, burst = struct.unpack_from("!HHII", buf, offset)
        assert (band_type, length) == (ofp.OFPMBT_DROP, 16), (band_type, length)
        bands.append(parser.OFPMeterBandDrop(rate=rate, burst_size=burst))
    return parser.OFPMeterMod(None, command, flags, meter_id, bands)


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


# ---- the table ---------------------------------------------------------------------------------


@dataclass
class Rule:
    priority: int
    cookie: int
    match: dict  # field name -> int, or (int, int mask)
    actions: list  # os-ken action objects; empty: drop
    idle_timeout: int
    flags: int
    flow_mod: object  # the decoded message (its OFPMatch serialises the FLOW_REMOVED)
    meter: int = 0  # the meter its packets go through first (0: none)
    packets: int = 0  # packets it took (``forward``), as its flow statistics say
    learn_limit: int = 0  # a learned rule: the limit of the learn that made it (0: none)

    def matches(self, packet: dict[str, int]) -> bool:
        for name, wanted in self.match.items():
            value = packet.get(name)
            if value is None:
                return False
            if isinstance(wanted, tuple):
                if value & wanted[1] != wanted[0] & wanted[1]:
                    return False
            elif value != wanted:
                return False
        return True


@dataclass
class Forwarding:
    """What the switch does with one packet: the rule (None: a packet-out's actions), the
    ports it leaves by (``OFPP_CONTROLLER`` for a punt; none: dropped), its fields after the
    actions (as a test writes them: MACs and addresses as text)."""

    rule: Rule | None
    outputs: list[int]
    fields: dict = field(default_factory=dict)
    learned: list = field(default_factory=list)  # Rules a ``learn`` action made of the packet

    @property
    def to_controller(self) -> bool:
        return ofp.OFPP_CONTROLLER in self.outputs

    @property
    def dropped(self) -> bool:
        return not self.outputs

    @property
    def tunnel(self) -> tuple:
        """Where a packet sent into the tunnel goes: (VM endpoint, inner MAC, VNI, ports)."""
        return (
            self.fields.get("tun_ipv4_dst"),
            self.fields.get("eth_dst"),
            self.fields.get("tunnel_id"),
            self.outputs,
        )


@dataclass
class PacketOut:
    message: object  # os-ken's OFPPacketOut
    forwarding: Forwarding  # where its packet goes (its actions applied to its data)

    @property
    def data(self) -> bytes | None:
        return self.message.data


def run_actions(actions: list, packet: dict[str, int], rule: Rule | None = None) -> Forwarding:
    """Apply ``actions`` (os-ken's objects) to a copy of ``packet``."""
    fields = dict(packet)
    outputs, learned = [], []
    for action in actions:
        if isinstance(action, parser.OFPActionOutput):
            port = action.port
            outputs.append(fields.get("in_port", port) if port == ofp.OFPP_IN_PORT else port)
        elif isinstance(action, parser.OFPActionSetField):
            fields[action.key] = as_int(action.key, action.value)
        elif isinstance(action, parser.NXActionRegMove):
            mask = (1 << action.n_bits) - 1
            bits = fields[action.src_field] >> action.src_ofs & mask
            kept = fields.get(action.dst_field, 0) & ~(mask << action.dst_ofs)
            fields[action.dst_field] = kept | bits << action.dst_ofs
        elif isinstance(action, parser.NXActionLearn):
            learned.append(learned_rule(action, fields))
        elif getattr(action, "subtype", None) == NXAST_LEARN2:
            learned.append(learned_rule(*_learn2(action), fields))
        else:
            raise AssertionError(f"the fake table does not know action {action}")
    readable = {name: as_text(name, value) for name, value in fields.items()}
    return Forwarding(rule, outputs, readable, learned)


NXAST_LEARN2 = 45  # os-ken does not know it: NXAST_LEARN's body, limit, result_dst_ofs, pad


def _learn2(action) -> tuple:
    """os-ken's ``NXActionLearn`` of an ``NXAST_LEARN2`` (which it reads as unknown: its body
    after the subtype), and the learn's limit.  No result field (``NX_LEARN_F_WRITE_RESULT``)."""
    body = bytes(action.data)
    limit, result_ofs = struct.unpack_from("!IH", body, 22)
    assert result_ofs == 0 and body[28:30] == b"\0\0", "no result written, zero padding"
    learn = parser.NXActionLearn.parser(bytearray(body[:22] + body[30:]))
    return learn, limit


def _basic(name: str) -> str:
    """A learn spec's NXM field under the name the table's matches use (``in_port_nxm``)."""
    return name.removesuffix("_nxm")


def learned_rule(action, limit_or_fields, fields: dict[str, int] | None = None) -> Rule:
    """The rule a ``learn`` action installs for a packet whose fields are ``fields`` (whole
    fields only, as switch mode's specs: offset 0, the field's full width); with a learn's
    ``limit`` before them (``NXAST_LEARN2``), the rule carries it (``FakeOFTable.forward``)."""
    limit, fields = (0, limit_or_fields) if fields is None else (limit_or_fields, fields)
    match, actions = {}, []
    for spec in action.specs:
        if isinstance(spec, parser.NXFlowSpecOutput):
            actions.append(parser.OFPActionOutput(fields[_basic(spec.src[0])]))
            continue
        name = _basic(spec.dst[0])
        assert spec.dst[1] == 0, "the fake table learns whole fields only"
        value = fields[_basic(spec.src[0])] if isinstance(spec.src, tuple) else spec.src
        if isinstance(spec, parser.NXFlowSpecMatch):
            match[name] = value
        else:
            actions.append(parser.OFPActionSetField(**{name: as_text(name, value)}))
    _check_prerequisites(match)
    rule = Rule(action.priority, action.cookie, match, actions, action.idle_timeout, 0, None)
    rule.learn_limit = limit
    return rule


def _outputs(rule: Rule) -> set[int]:
    """The ports a rule's actions output to (OpenFlow's ``out_port`` filter of a delete)."""
    return {a.port for a in rule.actions if isinstance(a, parser.OFPActionOutput)}


class FakeOFTable:
    """Table 0 of one switch, fed the controller's messages."""

    def __init__(self):
        self.rules: list[Rule] = []
        self.packet_outs: list[PacketOut] = []
        self.port_desc_requests = 0
        self.flow_removed: list[bytes] = []  # what the switch told the controller, in order
        self.meters: dict[int, tuple[int, int]] = {}  # meter id -> (rate, burst), packets/s
        self.meter_requests: list[int] = []  # OFPMP_METER_FEATURES or OFPMP_METER, in order
        self.flow_stats_requests: list = []  # decoded, not yet answered (``flow_stats_reply``)

    # ---- the controller's messages -------------------------------------------------------

    def apply(self, messages) -> list[PacketOut]:
        """Apply each message (bytes; or an ``Effects``: its messages); the packet-outs among
        them, with where their packets go."""
        if not isinstance(messages, list):
            messages = messages.messages
        outs = []
        for message in messages:
            decoded = decode(message)
            if isinstance(decoded, parser.OFPFlowMod):
                self._flow_mod(decoded)
            elif isinstance(decoded, parser.OFPPacketOut):
                outs.append(self._packet_out(decoded))
            elif isinstance(decoded, parser.OFPMeterMod):
                self._meter_mod(decoded)
            elif isinstance(decoded, parser.OFPPortDescStatsRequest):
                self.port_desc_requests += 1
            elif isinstance(decoded, parser.OFPFlowStatsRequest):
                self.flow_stats_requests.append(decoded)
            else:
                self.meter_requests.append(decoded.type)
        self.packet_outs += outs
        return outs

    def _flow_mod(self, message) -> None:
        match = {name: _match_value(name, value) for name, value in message.match.items()}
        if message.command == ofp.OFPFC_ADD:
            _check_prerequisites(match)
            assert message.table_id == 0 and message.buffer_id == ofp.OFP_NO_BUFFER
            (actions,) = [i.actions for i in message.instructions if hasattr(i, "actions")] or [[]]
            meters = [i.meter_id for i in message.instructions if hasattr(i, "meter_id")]
            meter = meters[0] if meters else 0
            assert not meter or meter in self.meters, f"the rule names meter {meter}: no such"
            rule = Rule(
                message.priority,
                message.cookie,
                match,
                actions,
                message.idle_timeout,
                message.flags,
                message,
                meter,
            )
            self.rules = [r for r in self.rules if (r.priority, r.match) != (rule.priority, match)]
            self.rules.append(rule)
            return
        assert message.command in (ofp.OFPFC_DELETE, ofp.OFPFC_DELETE_STRICT), message.command
        assert message.out_group == ofp.OFPG_ANY
        assert message.table_id in (0, ofp.OFPTT_ALL)
        strict = message.command == ofp.OFPFC_DELETE_STRICT
        for rule in list(self.rules):
            if rule.cookie & message.cookie_mask != message.cookie & message.cookie_mask:
                continue
            if message.out_port != ofp.OFPP_ANY and message.out_port not in _outputs(rule):
                continue
            if strict and (rule.priority, rule.match) != (message.priority, match):
                continue
            if not strict and any(rule.match.get(n) != v for n, v in match.items()):
                continue
            self._remove(rule, ofp.OFPRR_DELETE)

    def _meter_mod(self, message) -> None:
        if message.command == ofp.OFPMC_DELETE:
            gone = set(self.meters) if message.meter_id == ofp.OFPM_ALL else {message.meter_id}
            for meter_id in gone:
                self.meters.pop(meter_id, None)
            for rule in [r for r in self.rules if r.meter in gone]:
                self._remove(rule, ofp.OFPRR_DELETE)  # 1.3 has no METER_DELETE reason
            return
        exists = message.meter_id in self.meters
        assert exists == (message.command == ofp.OFPMC_MODIFY), (message.command, exists)
        assert message.flags & ofp.OFPMF_PKTPS, "the fake switch meters packets only"
        (band,) = message.bands
        self.meters[message.meter_id] = (band.rate, band.burst_size)

    def _packet_out(self, message) -> PacketOut:
        packet = packet_fields(message.in_port, message.data) if message.data else {}
        packet["in_port"] = message.in_port
        return PacketOut(message, run_actions(message.actions, packet))

    def _remove(self, rule: Rule, reason: int) -> None:
        self.rules.remove(rule)
        if rule.flags & ofp.OFPFF_SEND_FLOW_REM:
            self.flow_removed.append(raw_flow_removed(rule, reason))

    # ---- what the switch does ------------------------------------------------------------

    def lookup(self, packet: dict[str, int]) -> Rule | None:
        """The rule that takes ``packet``: the matching one of highest priority."""
        matching = [r for r in self.rules if r.matches(packet)]
        if not matching:
            return None
        best = max(r.priority for r in matching)
        tied = [r for r in matching if r.priority == best]
        assert len(tied) == 1, f"{len(tied)} rules of priority {best} match: undefined"
        return tied[0]

    def forward(self, packet: dict[str, int]) -> Forwarding:
        """Where ``packet`` goes (no rule at all: dropped, as a table miss without a rule)."""
        rule = self.lookup(packet)
        if rule is None:
            return Forwarding(None, [], {})
        rule.packets += 1
        forwarding = run_actions(rule.actions, packet, rule)
        # As Open vSwitch: no rule is learned while the table holds ``limit`` with its cookie.
        forwarding.learned = [
            learned
            for learned in forwarding.learned
            if not learned.learn_limit
            or sum(r.cookie == learned.cookie for r in self.rules) < learned.learn_limit
        ]
        for learned in forwarding.learned:  # replaces a rule of the same priority and match
            same = (learned.priority, learned.match)
            self.rules = [r for r in self.rules if (r.priority, r.match) != same]
            self.rules.append(learned)
        return forwarding

    def expire(self, rule: Rule) -> bytes:
        """The rule's idle timeout: it goes; the FLOW_REMOVED the switch sends (its flag)."""
        assert rule.idle_timeout, "a rule without an idle timeout never expires"
        self._remove(rule, ofp.OFPRR_IDLE_TIMEOUT)
        return self.flow_removed[-1]

    def rules_at(self, priority: int) -> list[Rule]:
        return [r for r in self.rules if r.priority == priority]

    def flow_stats_reply(self, request, per_part: int = 100) -> list[bytes]:
        """The reply to a flow statistics request (``flow_stats_requests``): the rules whose
        cookie matches under its mask and whose match holds every field of its match, in
        parts of ``per_part`` rules (``OFPMPF_REPLY_MORE`` on all but the last)."""
        wanted = {name: _match_value(name, value) for name, value in request.match.items()}
        rules = [
            rule
            for rule in self.rules
            if rule.cookie & request.cookie_mask == request.cookie & request.cookie_mask
            and all(rule.match.get(name) == value for name, value in wanted.items())
        ]
        parts = [rules[at : at + per_part] for at in range(0, len(rules), per_part)] or [[]]
        return [
            raw_flow_stats(part, request.xid, more=number < len(parts) - 1)
            for number, part in enumerate(parts)
        ]


def _match_value(name: str, value):
    if isinstance(value, tuple):
        return as_int(name, value[0]), as_int(name, value[1])
    return as_int(name, value)


def _check_prerequisites(match: dict) -> None:
    for name in match:
        if name in PREREQUISITES:
            needed, allowed = PREREQUISITES[name]
            assert match.get(needed) in allowed, f"{name} matched without {needed} in {allowed}"


# ---- what the switch sends -------------------------------------------------------------------


def raw_packet_in(in_port: int, data: bytes, buffer_id: int = ofp.OFP_NO_BUFFER) -> bytes:
    """An OFPT_PACKET_IN as the switch sends it (what the fast lane hands the core)."""
    match = bytearray()
    parser.OFPMatch(in_port=in_port).serialize(match, 0)
    body = struct.pack("!IHBBQ", buffer_id, len(data), ofp.OFPR_NO_MATCH, 0, 0)
    body += bytes(match) + b"\0\0" + data
    return struct.pack("!BBHI", 4, ofp.OFPT_PACKET_IN, 8 + len(body), 0) + body


def raw_flow_removed(rule: Rule, reason: int = ofp.OFPRR_IDLE_TIMEOUT) -> bytes:
    """The OFPT_FLOW_REMOVED the switch sends when ``rule`` goes (section 7.4.2)."""
    match = bytearray()
    rule.flow_mod.match.serialize(match, 0)
    body = struct.pack(
        "!QHBBIIHHQQ", rule.cookie, rule.priority, reason, 0, 9, 0, rule.idle_timeout, 0, 3, 180
    )
    length = 8 + len(body) + len(match)
    return struct.pack("!BBHI", 4, ofp.OFPT_FLOW_REMOVED, length, 0) + body + bytes(match)


def raw_meter_features(max_meter: int = 65536, band_types: int = 1 << ofp.OFPMBT_DROP) -> bytes:
    """The switch's answer to a meter features request (Open vSwitch's, by default)."""
    capabilities = ofp.OFPMF_KBPS | ofp.OFPMF_PKTPS | ofp.OFPMF_BURST | ofp.OFPMF_STATS
    body = struct.pack("!IIIBB2x", max_meter, band_types, capabilities, 1, 0)
    return _multipart_reply(ofp.OFPMP_METER_FEATURES, body)


def raw_meter_stats(dropped: dict[int, int]) -> bytes:
    """A meter statistics reply: per meter, the packets its (one) band dropped."""
    body = b""
    for meter_id, packets in dropped.items():
        body += struct.pack("!IH6xIQQII", meter_id, 56, 1, packets * 2, 0, 1, 0)
        body += struct.pack("!QQ", packets, packets * 60)
    return _multipart_reply(ofp.OFPMP_METER, body)


def raw_flow_stats(rules: list[Rule], xid: int = 0, more: bool = False) -> bytes:
    """One part of a flow statistics reply (section 7.3.5.2): per rule its fixed fields, its
    match (os-ken's serialiser: the OXM order a switch may use) and its apply-actions."""
    body = b""
    for rule in rules:
        fields = {
            name: tuple(as_text(name, v) for v in value)
            if isinstance(value, tuple)
            else as_text(name, value)
            for name, value in rule.match.items()
        }
        match = bytearray()
        parser.OFPMatch(**fields).serialize(match, 0)
        instructions = bytearray()
        if rule.actions:
            apply = parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, rule.actions)
            apply.serialize(instructions, 0)
        length = 48 + len(match) + len(instructions)
        body += struct.pack(
            "!HBxIIHHHH4xQQQ",
            length,
            0,  # table
            7,  # duration, s
            500,  # duration, ns
            rule.priority,
            rule.idle_timeout,
            0,  # hard timeout
            rule.flags,
            rule.cookie,
            rule.packets,
            rule.packets * 60,  # bytes
        )
        body += bytes(match) + bytes(instructions)
    return _multipart_reply(ofp.OFPMP_FLOW, body, xid, ofp.OFPMPF_REPLY_MORE if more else 0)


def _multipart_reply(kind: int, body: bytes, xid: int = 0, flags: int = 0) -> bytes:
    head = struct.pack("!BBHIHH4x", 4, ofp.OFPT_MULTIPART_REPLY, 16 + len(body), xid, kind, flags)
    return head + body


def raw_error(error_type: int, code: int, refused: bytes) -> bytes:
    """An OFPT_ERROR refusing ``refused`` (its first 64 bytes quoted, as OVS does)."""
    data = refused[:64]
    return struct.pack("!BBHIHH", 4, ofp.OFPT_ERROR, 12 + len(data), 0, error_type, code) + data
