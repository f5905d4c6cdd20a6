"""GatewayCore: the messages each event produces, checked by what they do."""

import ipaddress
import struct

from ryu_app import ofmsg
from ryu_app.compat import ofproto_v1_3 as ofp
from ryu_app.compat import ofproto_v1_3_parser as parser
from ryu_app.core.flowkey import TCP_ACK, TCP_SYN
from ryu_app.core.gateway import RECENT_INSTALL_SECONDS, GatewayCore, default_mac
from topology.deployment import Backend, Gateway, Vip

UPLINK, TUNNEL = 1, 2
PORTS = {"up0": UPLINK, "vx0": TUNNEL, "other": 3}
GATEWAY = Gateway(
    "gw1", 1, ("10.0.1.1",), "10.99.0.1", ("127.0.0.1", 6653), ("127.0.0.1", 8080), "up0", "vx0"
)
BACKENDS = tuple(
    Backend(f"vm{i}", f"10.99.0.{10 + i}", f"02:00:00:00:01:{i:02x}") for i in range(1, 4)
)
VIP = Vip("web", "10.0.0.100", 80, backends=BACKENDS)


def frame(src="10.1.0.11", sport=40000, dst="10.0.0.100", dport=80, flags=TCP_SYN):
    """Ethernet + IPv4 + TCP, fields as on the wire."""
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


def ready_core():
    core = GatewayCore(GATEWAY, [VIP])
    core.balancer.rebuild_now(core.take_pending())
    core.on_connect(0.0)
    core.on_ports(PORTS, 0.0)
    return core


def actions_of(message):
    if isinstance(message, parser.OFPPacketOut):
        return message.actions
    return message.instructions[0].actions


def tunnel_target(actions):
    fields = {}
    for action in actions:
        if isinstance(action, parser.OFPActionSetField):
            fields[action.key] = action.value
    outputs = [a.port for a in actions if isinstance(a, parser.OFPActionOutput)]
    return fields.get("tun_ipv4_dst"), fields.get("eth_dst"), fields.get("tunnel_id"), outputs


def test_connect_deletes_only_lockstep_rules_and_asks_for_ports():
    core = GatewayCore(GATEWAY, [VIP])
    delete, request = core.on_connect(0.0)
    assert delete.command == ofp.OFPFC_DELETE and delete.table_id == ofp.OFPTT_ALL
    assert delete.cookie_mask == ofmsg.COOKIE_TAG_MASK and delete.cookie == ofmsg.COOKIE_TAG
    assert isinstance(request, parser.OFPPortDescStatsRequest)


def test_pipeline_punts_the_vip_and_answers_arp_in_the_switch():
    core = GatewayCore(GATEWAY, [VIP])
    messages = core.on_ports(PORTS, 0.0)
    by_priority = {}
    for message in messages:
        by_priority.setdefault(message.priority, []).append(message)
    (punt,) = by_priority[ofmsg.PRIORITY_VIP]
    assert dict(punt.match.items()) == {
        "in_port": UPLINK,
        "eth_type": 0x0800,
        "ipv4_dst": "10.0.0.100",
        "ip_proto": 6,
        "tcp_dst": 80,
    }
    (output,) = actions_of(punt)
    assert output.port == ofp.OFPP_CONTROLLER and output.max_len == ofp.OFPCML_NO_BUFFER
    (arp,) = by_priority[ofmsg.PRIORITY_ARP]
    assert dict(arp.match.items())["arp_tpa"] == "10.0.1.1"
    assert actions_of(arp)[-1].port == ofp.OFPP_IN_PORT
    (miss,) = by_priority[ofmsg.PRIORITY_MISS]
    assert dict(miss.match.items()) == {}
    assert all(not m.instructions for m in by_priority[ofmsg.PRIORITY_DROP])  # drops


def test_missing_port_names_install_nothing():
    core = GatewayCore(GATEWAY, [VIP])
    assert core.on_ports({"up0": 1}, 0.0) == []
    assert core.missing_ports == ["vx0"] and core.ports is None


def test_new_flow_gets_one_rule_and_its_first_packet_is_sent_on():
    core = ready_core()
    data = frame()
    rule, out = core.on_packet_in(UPLINK, ofp.OFP_NO_BUFFER, data, 1.0)
    expected = core.balancer.predict(ofmsg.flow_from_removed_match(rule.match))
    backend = VIP.backend(expected)
    assert tunnel_target(actions_of(rule)) == (backend.tunnel_ip, backend.mac, 100, [TUNNEL])
    assert tunnel_target(actions_of(out)) == tunnel_target(actions_of(rule))
    assert rule.idle_timeout == 60 and rule.flags & ofp.OFPFF_SEND_FLOW_REM
    assert ofmsg.backend_of_cookie(rule.cookie) == core.balancer.vips["web"].backend_ids[expected]
    assert dict(rule.match.items())["tcp_src"] == 40000
    assert out.data == data and out.buffer_id == ofp.OFP_NO_BUFFER and out.in_port == UPLINK


def test_buffered_packet_in_is_released_by_buffer_id():
    core = ready_core()
    _, out = core.on_packet_in(UPLINK, 77, frame(), 1.0)
    assert out.buffer_id == 77 and out.data is None


def test_repeated_packet_ins_reuse_the_entry_and_install_once():
    core = ready_core()
    first = core.on_packet_in(UPLINK, ofp.OFP_NO_BUFFER, frame(), 1.0)
    again = core.on_packet_in(UPLINK, ofp.OFP_NO_BUFFER, frame(flags=TCP_ACK), 1.1)
    assert len(first) == 2 and len(again) == 1
    assert isinstance(again[0], parser.OFPPacketOut)
    assert tunnel_target(again[0].actions) == tunnel_target(first[1].actions)
    assert core.counters.flows_installed == 1


def test_a_packet_in_long_after_install_reinstalls_the_lost_rule():
    core = ready_core()
    core.on_packet_in(UPLINK, ofp.OFP_NO_BUFFER, frame(), 1.0)
    later = core.on_packet_in(
        UPLINK, ofp.OFP_NO_BUFFER, frame(flags=TCP_ACK), 2.0 + RECENT_INSTALL_SECONDS
    )
    assert isinstance(later[0], parser.OFPFlowMod) and core.counters.reinstalls == 1


def test_malformed_and_foreign_packets_are_counted_and_dropped():
    core = ready_core()
    assert core.on_packet_in(UPLINK, ofp.OFP_NO_BUFFER, b"\x00" * 26, 1.0) == []
    assert core.on_packet_in(UPLINK, ofp.OFP_NO_BUFFER, frame()[:30], 1.0) == []
    assert core.on_packet_in(3, ofp.OFP_NO_BUFFER, frame(), 1.0) == []
    assert core.counters.malformed == {"not-ip": 1, "truncated": 1}
    assert core.counters.foreign_port == 1


def test_non_vip_traffic_is_ignored():
    core = ready_core()
    assert core.on_packet_in(UPLINK, ofp.OFP_NO_BUFFER, frame(dport=22), 1.0) == []


def test_flow_removed_forgets_the_flow():
    core = ready_core()
    rule, _ = core.on_packet_in(UPLINK, ofp.OFP_NO_BUFFER, frame(), 1.0)
    assert len(core.balancer.flows) == 1
    core.on_flow_removed(rule.cookie, rule.match, 70.0)
    assert len(core.balancer.flows) == 0 and core.counters.flows_removed == 1
    # Someone else's rule is not ours to act on.
    core.on_flow_removed(0x1234, rule.match, 71.0)
    assert core.counters.flows_removed == 1


def test_backend_down_deletes_its_rules_by_cookie_and_requests_a_rebuild():
    core = ready_core()
    rule, _ = core.on_packet_in(UPLINK, ofp.OFP_NO_BUFFER, frame(), 1.0)
    name = core.balancer.predict(ofmsg.flow_from_removed_match(rule.match))
    (delete,) = core.set_health("web", name, False)
    assert delete.command == ofp.OFPFC_DELETE
    assert delete.cookie == rule.cookie and delete.cookie_mask == ofmsg.COOKIE_BACKEND_MASK
    assert core.take_pending() and len(core.balancer.flows) == 0
    assert core.set_health("web", name, True) == []


def test_src_ip_vip_rule_matches_the_client_not_its_port():
    vip = Vip("web", "10.0.0.100", 80, hash="src-ip", backends=BACKENDS)
    core = GatewayCore(GATEWAY, [vip])
    core.balancer.rebuild_now(core.take_pending())
    core.on_ports(PORTS, 0.0)
    rule, _ = core.on_packet_in(UPLINK, ofp.OFP_NO_BUFFER, frame(), 1.0)
    fields = dict(rule.match.items())
    assert "tcp_src" not in fields and fields["ipv4_src"] == "10.1.0.11" and fields["tcp_dst"] == 80


def test_messages_serialise_for_a_real_switch():
    """Every message the core builds encodes as OpenFlow 1.3 (caught here, not on a switch)."""

    class FakeDatapath:
        ofproto, ofproto_parser = ofp, parser

    core = GatewayCore(GATEWAY, [VIP])
    core.balancer.rebuild_now(core.take_pending())
    messages = core.on_connect(0.0) + core.on_ports(PORTS, 0.0)
    messages += core.on_packet_in(UPLINK, ofp.OFP_NO_BUFFER, frame(), 1.0)
    messages += core.set_health("web", "vm1", False)
    for message in messages:
        message.datapath = FakeDatapath()
        message.serialize()
        assert len(message.buf) >= 8 and message.buf[0] == ofp.OFP_VERSION


def test_default_mac_is_locally_administered_and_from_the_dpid():
    assert default_mac(0x1) == "02:00:00:00:00:01"
    assert default_mac(0xABCDEF) == "02:00:00:ab:cd:ef"
