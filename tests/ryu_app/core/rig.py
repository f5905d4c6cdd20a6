"""A GatewayCore wired to a fake switch, for behaviour tests: what the core returns is applied
as the app applies it (messages to the switch's table, tables built, lines logged), and tests
ask where packets go.

``GatewayRig.send(in_port, frame, now)`` is a packet arriving at the switch: it goes where the
table sends it, and when a rule punts it to the controller, the core gets it as a packet-in and
its answer (a packet-out, maybe a new rule) says where it went.  The deployment's pieces used
by most tests (a gateway, three backends, a VIP) are here too.
"""

from __future__ import annotations

import ipaddress
import random
import struct

from os_ken.lib.packet import arp, ethernet, packet

from ryu_app.core import pipeline
from ryu_app.core.effects import Effects
from ryu_app.core.flowkey import TCP_SYN
from ryu_app.core.gateway import GatewayCore, default_mac
from ryu_app.core.model import Backend, Gateway, HealthCheck, Vip
from ryu_app.core.packets import mac_bytes, tcp_frame
from ryu_app.shell.compat import ofproto_v1_3 as ofp
from tests.ryu_app.fake_oftable import (
    FakeOFTable,
    Forwarding,
    PacketOut,
    Rule,
    packet_fields,
    raw_error,
    raw_meter_features,
    raw_packet_in,
)

UPLINK, TUNNEL, OTHER = 1, 2, 3
PORTS = {"up0": UPLINK, "vx0": TUNNEL, "other": OTHER}
GATEWAY = Gateway(
    "gw1", 1, ("10.0.1.1",), "10.99.0.1", ("127.0.0.1", 6653), ("127.0.0.1", 8080), "up0", "vx0"
)
GATEWAY6 = Gateway(
    "gw1",
    1,
    ("10.0.1.1", "fd00:1::1"),
    "10.99.0.1",
    ("127.0.0.1", 6653),
    ("127.0.0.1", 8080),
    "up0",
    "vx0",
)
GATEWAY_MAC = default_mac(GATEWAY.dpid)
ROUTER_MAC = "02:00:00:00:fe:01"
BACKENDS = tuple(
    Backend(f"vm{i}", f"10.99.0.{10 + i}", f"02:00:00:00:01:{i:02x}") for i in range(1, 4)
)
BY_TUNNEL = {b.tunnel_ip: b.name for b in BACKENDS}
VIP = Vip("web", "10.0.0.100", 80, backends=BACKENDS)
CHECK = HealthCheck(type="tcp", interval=1.0, timeout=0.5, rise=2, fall=2)
SMALL_TABLE = 251  # quick to build; these tests are about probes and rules, not spread
PROBED_VIP = Vip("web", "10.0.0.100", 80, health=CHECK, table_size=SMALL_TABLE, backends=BACKENDS)


def frame(src="10.1.0.11", sport=40000, dst="10.0.0.100", dport=80, flags=TCP_SYN):
    """Ethernet + IPv4 + TCP from a client, through the router, fields as on the wire."""
    eth = bytes.fromhex("020000000001") + bytes.fromhex("02000000aaaa") + b"\x08\x00"
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,  # version 4, IHL 5
        0,  # DSCP/ECN
        40,  # total length: 20 IP + 20 TCP
        1,  # identification
        0x4000,  # don't fragment
        64,  # TTL
        6,  # TCP
        0,  # checksum (not checked)
        ipaddress.ip_address(src).packed,
        ipaddress.ip_address(dst).packed,
    )
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, flags, 65535, 0, 0)
    return eth + ip + tcp


def reply_frame(syn, flags, seq=9000, ack=None, src=None, src_port=None):
    """A backend's answer to a probe (``syn``: the parsed segment) as the router delivers it to
    the gateway's uplink."""
    return tcp_frame(
        mac_bytes(ROUTER_MAC),
        mac_bytes(GATEWAY_MAC),
        src or syn.dst,
        syn.src,
        syn.dst_port if src_port is None else src_port,
        syn.src_port,
        seq,
        (syn.seq + 1) & 0xFFFFFFFF if ack is None else ack,
        flags,
    )


def arp_request(target: str, sender="10.0.1.254", sender_mac=ROUTER_MAC) -> bytes:
    """Who has ``target``? (the router asks, broadcast)."""
    built = packet.Packet()
    built.add_protocol(ethernet.ethernet("ff:ff:ff:ff:ff:ff", sender_mac, 0x0806))
    built.add_protocol(
        arp.arp(
            opcode=arp.ARP_REQUEST,
            src_mac=sender_mac,
            src_ip=sender,
            dst_mac="00:00:00:00:00:00",
            dst_ip=target,
        )
    )
    built.serialize()
    return bytes(built.data)


class GatewayRig:
    """A core, the fake table its messages go to, and what it logged."""

    def __init__(
        self,
        gateway: Gateway = GATEWAY,
        vips=(VIP,),
        connect: bool = True,
        build_tables: bool = True,
        seed: int = 5,
        saved_ids=None,
    ):
        self.core = GatewayCore(gateway, rng=random.Random(seed))
        if saved_ids is not None:  # an earlier run's (the state file's): a restarted controller
            self.core.restore_ids(saved_ids)
        self.table = FakeOFTable()
        self.notices: list[str] = []
        self.warnings: list[str] = []
        self.errors: list[str] = []
        self.tables_wanted: list = []  # asked for and not built (``build_tables`` False)
        self.build_tables = build_tables
        self.now = 0.0  # the latest time the rig was given: tables built now are installed then
        self.run(self.core.set_vips(list(vips), 0.0))
        self.build()  # at start, the app builds the tables before any switch connects
        if connect:
            self.connect(0.0)

    def run(self, effects: Effects) -> Effects:
        """Apply ``effects`` as the app does: messages to the switch, lines to the log, tables
        built at once (unless ``build_tables`` is False: then ``build`` does)."""
        self.table.apply(effects.messages)
        self.notices += effects.notices
        self.warnings += effects.warnings
        self.errors += effects.errors
        self.tables_wanted += effects.tables
        if self.build_tables:
            self.build()
        return effects

    def build(self) -> None:
        requests, self.tables_wanted = self.tables_wanted, []
        for request in requests:
            table = self.core.balancer.cache.get_or_build(request.spec)
            self.run(self.core.table_built(request, table, self.now))

    def connect(self, now: float, ports=PORTS, meters: bool = True) -> None:
        """The switch connects, answers the meter features request (as Open vSwitch does;
        ``meters`` False: as a switch without meters, with an error) and describes its ports."""
        self.now = now
        effects = self.run(self.core.on_connect(now))
        features = struct.pack("!H", ofp.OFPMP_METER_FEATURES)
        request = next(
            (
                m
                for m in effects.messages
                if m[1] == ofp.OFPT_MULTIPART_REQUEST and m[8:10] == features
            ),
            None,
        )
        if request is not None:  # the features request
            answer = (
                raw_meter_features()
                if meters
                else raw_error(ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_MULTIPART, request)
            )
            self.run(self.core.on_messages([answer], now))
        self.run(self.core.on_ports(ports, now))

    def packet_in(
        self, in_port: int, data: bytes, now: float, buffer_id: int = ofp.OFP_NO_BUFFER
    ) -> list[PacketOut]:
        """The switch hands ``data`` to the controller: the packet-outs of its answer (its
        rules are in the table now)."""
        before = len(self.table.packet_outs)
        self.now = now
        self.run(self.core.on_messages([raw_packet_in(in_port, data, buffer_id)], now))
        return self.table.packet_outs[before:]

    def send(self, in_port: int, data: bytes, now: float) -> Forwarding:
        """``data`` arrives at the switch on ``in_port``: where it goes.  If the table punts it,
        where the controller's packet-out sends it (``rule`` None; dropped if it sent none)."""
        forwarding = self.table.forward(packet_fields(in_port, data))
        if not forwarding.to_controller:
            return forwarding
        answers = [out for out in self.packet_in(in_port, data, now) if out.data == data]
        if not answers:
            return Forwarding(None, [])
        (answer,) = answers
        return answer.forwarding

    def tick(self, now: float, lag: float = 0.0) -> list[PacketOut]:
        """A health tick (``lag`` seconds late): the packets the controller sent (probes)."""
        before = len(self.table.packet_outs)
        self.now = now
        self.run(self.core.health_tick(now, lag))
        return self.table.packet_outs[before:]

    def expire(self, rule: Rule, now: float) -> None:
        """The switch expires ``rule`` and tells the controller."""
        self.now = now
        self.run(self.core.on_messages([self.table.expire(rule)], now))

    def flow_rule(self, data: bytes) -> Rule | None:
        """The rule that takes ``data`` arriving on the uplink, if it is a per-flow rule."""
        rule = self.table.lookup(packet_fields(UPLINK, data))
        return rule if rule is not None and rule.priority == pipeline.PRIORITY_FLOW else None
