"""GatewayCore: the messages each event produces, checked by what they do."""

import dataclasses
import ipaddress
import random
import struct

import pytest
from os_ken.lib.packet import ethernet, icmpv6, ipv6, packet, packet_utils

from ryu_app.compat import ofproto_v1_3 as ofp
from ryu_app.compat import ofproto_v1_3_parser as parser
from ryu_app.core import pipeline
from ryu_app.core.flowkey import TCP_ACK, TCP_SYN
from ryu_app.core.gateway import (
    RECENT_INSTALL_SECONDS,
    GatewayCore,
    RecentInstalls,
    default_mac,
)
from ryu_app.core.packets import TCP_RST, mac_bytes, parse_segment, tcp_frame
from tests.ryu_app.wire import decode, decode_all, flow_from_removed_match, raw_packet_in
from topology.deployment import Backend, Gateway, HealthCheck, Vip


def packet_in(core, in_port, buffer_id, data, now):
    """A packet-in as the switch sends it, through ``core.on_messages``: the answers decoded."""
    return decode_all(core.on_messages([raw_packet_in(in_port, data, buffer_id)], now))


def new_core(gateway, vips, now=0.0, rng=None):
    """A core with ``vips`` and their Maglev tables (the app builds them at start too)."""
    core = GatewayCore(gateway, rng=rng)
    core.balancer.rebuild_now(core.set_vips(list(vips), now).tables)
    return core


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
    core = new_core(GATEWAY, [VIP])
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
    core = new_core(GATEWAY, [VIP])
    delete, request = decode_all(core.on_connect(0.0))
    assert delete.command == ofp.OFPFC_DELETE and delete.table_id == ofp.OFPTT_ALL
    assert delete.cookie_mask == pipeline.COOKIE_TAG_MASK and delete.cookie == pipeline.COOKIE_TAG
    assert isinstance(request, parser.OFPPortDescStatsRequest)


def test_pipeline_punts_the_vip_and_answers_arp_in_the_switch():
    core = new_core(GATEWAY, [VIP])
    messages = decode_all(core.on_ports(PORTS, 0.0))
    by_priority = {}
    for message in messages:
        by_priority.setdefault(message.priority, []).append(message)
    (punt,) = by_priority[pipeline.PRIORITY_VIP]
    assert dict(punt.match.items()) == {
        "in_port": UPLINK,
        "eth_type": 0x0800,
        "ipv4_dst": "10.0.0.100",
        "ip_proto": 6,
        "tcp_dst": 80,
    }
    (output,) = actions_of(punt)
    assert output.port == ofp.OFPP_CONTROLLER and output.max_len == ofp.OFPCML_NO_BUFFER
    (arp,) = by_priority[pipeline.PRIORITY_ARP]
    assert dict(arp.match.items())["arp_tpa"] == "10.0.1.1"
    assert actions_of(arp)[-1].port == ofp.OFPP_IN_PORT
    (miss,) = by_priority[pipeline.PRIORITY_MISS]
    assert dict(miss.match.items()) == {}
    assert all(not m.instructions for m in by_priority[pipeline.PRIORITY_DROP])  # drops


def test_missing_port_names_install_nothing():
    core = new_core(GATEWAY, [VIP])
    assert core.on_ports({"up0": 1}, 0.0).messages == []
    assert core.missing_ports == ["vx0"] and core.ports is None


def test_new_flow_gets_one_rule_and_its_first_packet_is_sent_on():
    core = ready_core()
    data = frame()
    rule, out = packet_in(core, UPLINK, ofp.OFP_NO_BUFFER, data, 1.0)
    expected = core.balancer.predict(flow_from_removed_match(rule.match))
    backend = VIP.backend(expected)
    assert tunnel_target(actions_of(rule)) == (backend.tunnel_ip, backend.mac, 100, [TUNNEL])
    assert tunnel_target(actions_of(out)) == tunnel_target(actions_of(rule))
    assert rule.idle_timeout == 60 and rule.flags & ofp.OFPFF_SEND_FLOW_REM
    assert (
        pipeline.backend_of_cookie(rule.cookie) == core.balancer.vips["web"].backend_ids[expected]
    )
    assert dict(rule.match.items())["tcp_src"] == 40000
    assert out.data == data and out.buffer_id == ofp.OFP_NO_BUFFER and out.in_port == UPLINK


def test_buffered_packet_in_is_released_by_buffer_id():
    core = ready_core()
    _, out = packet_in(core, UPLINK, 77, frame(), 1.0)
    assert out.buffer_id == 77 and out.data is None


def test_repeated_packet_ins_reuse_the_entry_and_install_once():
    core = ready_core()
    first = packet_in(core, UPLINK, ofp.OFP_NO_BUFFER, frame(), 1.0)
    again = packet_in(core, UPLINK, ofp.OFP_NO_BUFFER, frame(flags=TCP_ACK), 1.1)
    assert len(first) == 2 and len(again) == 1
    assert isinstance(again[0], parser.OFPPacketOut)
    assert tunnel_target(again[0].actions) == tunnel_target(first[1].actions)
    assert core.counters.flows_installed == 1


def test_a_packet_in_long_after_install_reinstalls_the_lost_rule():
    core = ready_core()
    packet_in(core, UPLINK, ofp.OFP_NO_BUFFER, frame(), 1.0)
    later = packet_in(
        core, UPLINK, ofp.OFP_NO_BUFFER, frame(flags=TCP_ACK), 2.0 + RECENT_INSTALL_SECONDS
    )
    assert isinstance(later[0], parser.OFPFlowMod) and core.counters.reinstalls == 1


def test_malformed_and_foreign_packets_are_counted_and_dropped():
    core = ready_core()
    assert packet_in(core, UPLINK, ofp.OFP_NO_BUFFER, b"\x00" * 26, 1.0) == []
    assert packet_in(core, UPLINK, ofp.OFP_NO_BUFFER, frame()[:30], 1.0) == []
    assert packet_in(core, 3, ofp.OFP_NO_BUFFER, frame(), 1.0) == []
    assert core.counters.malformed == {"not-ip": 1, "truncated": 1}
    assert core.counters.foreign_port == 1


def test_a_burst_of_raw_packet_ins_is_answered_as_each_one_alone():
    frames = [frame(sport=40000 + i) for i in range(20)] + [frame(sport=40003, flags=TCP_ACK)]
    alone = ready_core()
    expected = [
        m for data in frames for m in alone.on_messages([raw_packet_in(UPLINK, data)], 1.0).messages
    ]
    burst = ready_core()
    answers = burst.on_messages([raw_packet_in(UPLINK, data) for data in frames], 1.0).messages
    assert answers == expected and len(answers) == 41  # 20 rules + 21 packet-outs
    assert burst.counters == alone.counters


def test_a_raw_packet_in_that_does_not_frame_is_counted_and_the_rest_go_on():
    core = ready_core()
    good = raw_packet_in(UPLINK, frame())
    answers = core.on_messages([good[:20], good[:24] + b"\x00\x09" + good[26:], good], 1.0)
    assert len(decode_all(answers)) == 2
    assert core.counters.malformed == {"bad-packet-in": 2}
    assert core.counters.packet_ins == 3


def raw_flow_removed(rule, reason=ofp.OFPRR_IDLE_TIMEOUT) -> bytes:
    """The FLOW_REMOVED the switch sends when ``rule`` (a decoded flow-mod) expires."""
    match = bytearray()
    rule.match.serialize(match, 0)
    body = struct.pack("!QHBBIIHHQQ", rule.cookie, rule.priority, reason, 0, 9, 0, 60, 0, 3, 180)
    return struct.pack("!BBHI", 4, ofp.OFPT_FLOW_REMOVED, 8 + len(body) + len(match), 0) + (
        body + bytes(match)
    )


def test_a_raw_flow_removed_in_a_burst_ends_the_flow():
    core = ready_core()
    rule, _ = decode_all(core.on_messages([raw_packet_in(UPLINK, frame())], 1.0))
    assert len(core.balancer.flows) == 1
    deleted_by_us = raw_flow_removed(rule, ofp.OFPRR_DELETE)
    assert not core.on_messages([deleted_by_us, raw_flow_removed(rule)], 70.0)
    assert len(core.balancer.flows) == 0 and core.counters.flows_removed == 1
    again = decode_all(core.on_messages([raw_packet_in(UPLINK, frame())], 71.0))
    assert isinstance(again[0], parser.OFPFlowMod), "a new flow on that 5-tuple gets a rule"


def test_recent_installs_remember_a_window_and_forget_after_it():
    recent = RecentInstalls(window=2.0)
    recent.add(b"a", 0.0)
    recent.add(b"b", 1.5)
    assert recent.contains(b"a", 2.0) and not recent.contains(b"a", 2.01)
    recent.add(b"c", 2.5)  # a new generation starts; a and b are the old one
    recent.add(b"d", 5.0)  # and another: a is gone from memory, c is the old one
    assert len(recent) == 2
    assert recent.contains(b"c", 4.5) and recent.contains(b"d", 6.9)
    assert not recent.contains(b"b", 3.0) and not recent.contains(b"a", 0.0)
    recent.discard(b"c")
    assert not recent.contains(b"c", 4.5)
    recent.clear()
    assert len(recent) == 0


def test_recent_installs_stay_bounded_by_two_windows_of_flows():
    recent = RecentInstalls(window=1.0)
    for i in range(100_000):
        recent.add(i.to_bytes(4, "big"), i / 1000)  # 1,000 new flows a second, 100 s
    assert len(recent) <= 2 * 1000 + 1


def test_non_vip_traffic_is_ignored():
    core = ready_core()
    assert packet_in(core, UPLINK, ofp.OFP_NO_BUFFER, frame(dport=22), 1.0) == []


def test_flow_removed_forgets_the_flow():
    core = ready_core()
    rule, _ = packet_in(core, UPLINK, ofp.OFP_NO_BUFFER, frame(), 1.0)
    assert len(core.balancer.flows) == 1
    core.on_messages([raw_flow_removed(rule)], 70.0)
    assert len(core.balancer.flows) == 0 and core.counters.flows_removed == 1
    # Someone else's rule is not ours to act on.
    rule.cookie = 0x1234
    core.on_messages([raw_flow_removed(rule)], 71.0)
    assert core.counters.flows_removed == 1


def test_rules_we_deleted_ourselves_do_not_end_the_flow():
    core = ready_core()
    rule, _ = packet_in(core, UPLINK, ofp.OFP_NO_BUFFER, frame(), 1.0)
    core.on_connect(2.0)  # a reconnection deletes every rule of ours ...
    core.on_messages([raw_flow_removed(rule, ofp.OFPRR_DELETE)], 2.0)
    assert len(core.balancer.flows) == 1  # ... but the flow keeps its backend here
    core.on_ports(PORTS, 2.0)
    again = packet_in(core, UPLINK, ofp.OFP_NO_BUFFER, frame(flags=TCP_ACK), 3.0)
    assert [type(m) for m in again] == [parser.OFPFlowMod, parser.OFPPacketOut]
    assert tunnel_target(actions_of(again[0])) == tunnel_target(actions_of(rule))
    assert core.counters.reinstalls == 1


def test_an_entry_outlives_the_vips_idle_timeout_while_its_rule_carries_the_flow():
    # The switch rule forwards the flow's packets without the controller seeing them; only its
    # flow-removed message (idle timeout in the switch) ends the entry.
    core = ready_core()
    packet_in(core, UPLINK, ofp.OFP_NO_BUFFER, frame(), 1.0)
    later = 1.0 + 10 * VIP.idle_timeout
    core.health_tick(later)  # sweeps expired entries
    assert len(core.balancer.flows) == 1


def test_backend_down_deletes_its_rules_by_cookie_and_requests_a_rebuild():
    core = ready_core()
    rule, _ = packet_in(core, UPLINK, ofp.OFP_NO_BUFFER, frame(), 1.0)
    name = core.balancer.predict(flow_from_removed_match(rule.match))
    down = core.set_health("web", name, False)
    (delete,) = decode_all(down)
    assert delete.command == ofp.OFPFC_DELETE
    assert delete.cookie == rule.cookie and delete.cookie_mask == pipeline.COOKIE_BACKEND_MASK
    assert down.tables
    core.health_tick(2.0)  # sweeps the backend's entries
    assert len(core.balancer.flows) == 0
    assert core.set_health("web", name, True).messages == []


def test_src_ip_vip_rule_matches_the_client_not_its_port():
    vip = Vip("web", "10.0.0.100", 80, hash="src-ip", backends=BACKENDS)
    core = new_core(GATEWAY, [vip])
    core.on_ports(PORTS, 0.0)
    rule, _ = packet_in(core, UPLINK, ofp.OFP_NO_BUFFER, frame(), 1.0)
    fields = dict(rule.match.items())
    assert "tcp_src" not in fields and fields["ipv4_src"] == "10.1.0.11" and fields["tcp_dst"] == 80


class FakeDatapath:
    ofproto, ofproto_parser = ofp, parser


def assert_os_ken_writes_the_same(messages: list[bytes]) -> None:
    """Each message, decoded into os-ken's objects and serialised by os-ken, is itself."""
    for message in messages:
        decoded = decode(message)
        decoded.datapath = FakeDatapath()
        decoded.set_xid(0)
        decoded.serialize()
        assert bytes(decoded.buf) == message


def test_messages_are_what_os_ken_would_write():
    """Every message the core builds is OpenFlow 1.3 as os-ken writes it (caught here, not on
    a switch)."""
    core = new_core(GATEWAY, [VIP])
    effects = core.on_connect(0.0) + core.on_ports(PORTS, 0.0)
    effects += core.on_messages([raw_packet_in(UPLINK, frame())], 1.0)
    effects += core.set_health("web", "vm1", False)
    assert len(effects.messages) == 2 + 7 + 2 + 1  # connect, pipeline, new flow, down
    assert_os_ken_writes_the_same(effects.messages)


def test_default_mac_is_locally_administered_and_from_the_dpid():
    assert default_mac(0x1) == "02:00:00:00:00:01"
    assert default_mac(0xABCDEF) == "02:00:00:ab:cd:ef"


# ---- health probes through the switch --------------------------------------------------------

CHECK = HealthCheck(type="tcp", interval=1.0, timeout=0.5, rise=2, fall=2)
SMALL_TABLE = 251  # quick to build; these tests are about probes and rules, not spread
PROBED_VIP = Vip("web", "10.0.0.100", 80, health=CHECK, table_size=SMALL_TABLE, backends=BACKENDS)
GATEWAY_MAC = default_mac(GATEWAY.dpid)
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
BY_TUNNEL = {b.tunnel_ip: b.name for b in BACKENDS}


def probed_core(vips=(PROBED_VIP,), gateway=GATEWAY, connect=True):
    core = new_core(gateway, vips, rng=random.Random(5))
    if connect:
        core.on_connect(0.0)
        core.on_ports(PORTS, 0.0)
    return core


def probes_by_backend(messages):
    """Backend name -> (packet-out, the SYN it carries), told apart by the tunnel target."""
    probes = {}
    for message in decode_all(messages):
        assert isinstance(message, parser.OFPPacketOut)
        tunnel_ip = tunnel_target(message.actions)[0]
        probes[BY_TUNNEL[tunnel_ip]] = (message, parse_segment(message.data))
    return probes


def reply_frame(syn, flags, seq=9000, ack=None, src=None):
    """The backend's answer as the router delivers it to the gateway's uplink."""
    return tcp_frame(
        bytes.fromhex("02000000fe01"),  # the router
        mac_bytes(GATEWAY_MAC),
        src or syn.dst,
        syn.src,
        syn.dst_port,
        syn.src_port,
        seq,
        (syn.seq + 1) & 0xFFFFFFFF if ack is None else ack,
        flags,
    )


def test_health_tick_probes_only_once_the_ports_are_known():
    core = probed_core(connect=False)
    assert not core.health_tick(1.0)
    assert core.prober.sent == 0  # nothing was started to time out later
    core.on_connect(1.0)
    core.on_ports(PORTS, 1.0)
    probes = probes_by_backend(core.health_tick(1.0))
    assert set(probes) == {"vm1", "vm2", "vm3"}
    for name, (out, syn) in probes.items():
        backend = PROBED_VIP.backend(name)
        assert out.in_port == ofp.OFPP_CONTROLLER and out.buffer_id == ofp.OFP_NO_BUFFER
        assert tunnel_target(out.actions) == (backend.tunnel_ip, backend.mac, 100, [TUNNEL])
        assert (syn.src, syn.dst, syn.dst_port, syn.flags) == (
            ipaddress.ip_address("10.0.1.1").packed,
            ipaddress.ip_address("10.0.0.100").packed,
            80,
            TCP_SYN,
        )
    assert not core.health_tick(1.1)  # all three in flight


def test_a_probe_answer_on_the_uplink_completes_the_tcp_check():
    core = probed_core()
    _, syn = probes_by_backend(core.health_tick(1.0))["vm2"]
    messages = packet_in(core, UPLINK, ofp.OFP_NO_BUFFER, reply_frame(syn, TCP_SYN | TCP_ACK), 1.1)
    (out,) = messages
    assert out.in_port == ofp.OFPP_CONTROLLER
    assert tunnel_target(out.actions)[0] == PROBED_VIP.backend("vm2").tunnel_ip
    reset = parse_segment(out.data)
    assert reset.flags == TCP_RST and reset.seq == syn.seq + 1
    assert core.prober.results == {True: 1, False: 0}
    assert core.counters.probe_replies == 1 and core.counters.flows_installed == 0
    assert len(core.balancer.flows) == 0  # an answer to the gateway is not a client flow


def test_a_probe_answer_on_another_port_is_not_believed():
    core = probed_core()
    _, syn = probes_by_backend(core.health_tick(1.0))["vm1"]
    assert packet_in(core, 3, ofp.OFP_NO_BUFFER, reply_frame(syn, TCP_SYN | TCP_ACK), 1.1) == []
    assert core.counters.foreign_port == 1 and core.prober.results[True] == 0


def test_refused_probes_take_the_backend_down_and_delete_its_flows():
    core = probed_core()
    client = frame(sport=41000)
    rule, _ = packet_in(core, UPLINK, ofp.OFP_NO_BUFFER, client, 0.5)
    victim = core.balancer.predict(flow_from_removed_match(rule.match))
    for now in (1.0, 2.0):
        _, syn = probes_by_backend(core.health_tick(now))[victim]
        refused = reply_frame(syn, TCP_RST | TCP_ACK, seq=0)
        effects = core.on_messages([raw_packet_in(UPLINK, refused)], now + 0.1)
    (delete,) = decode_all(effects)
    assert delete.command == ofp.OFPFC_DELETE and delete.table_id == ofp.OFPTT_ALL
    assert delete.cookie == rule.cookie and delete.cookie_mask == pipeline.COOKIE_BACKEND_MASK
    assert effects.notices == [f"backend {victim} of VIP web is DOWN (connection refused)"]
    assert victim not in core.balancer.vips["web"].healthy
    # Behaviour: once the rebuilt table is in, the same client goes to a live backend.
    core.balancer.rebuild_now(effects.tables)
    rule, out = packet_in(core, UPLINK, ofp.OFP_NO_BUFFER, client, 3.0)
    assert BY_TUNNEL[tunnel_target(actions_of(rule))[0]] != victim


def test_unanswered_probes_time_out_on_the_tick():
    """No answers at all: every backend goes down within interval * fall + timeout."""
    core = probed_core()
    ids = dict(core.balancer.vips["web"].backend_ids)  # a backend that goes down gets a new id
    deleted_at = {}
    notices = []
    for step in range(40):
        now = step / 10
        effects = core.health_tick(now)
        notices += effects.notices
        for message in decode_all(effects):
            if isinstance(message, parser.OFPFlowMod):
                assert message.command == ofp.OFPFC_DELETE
                deleted_at[pipeline.backend_of_cookie(message.cookie)] = now
    assert sorted(deleted_at) == sorted(ids.values())
    assert all(
        1.5 <= t <= CHECK.interval * CHECK.fall + CHECK.timeout + 0.1 for t in deleted_at.values()
    )
    assert core.balancer.vips["web"].healthy == set()
    assert sum("is DOWN (no answer)" in n for n in notices) == 3


def test_ipv6_vip_probes_leave_from_the_gateways_ipv6_address():
    vip6 = Vip("web6", "fd00:100::80", 80, health=CHECK, table_size=SMALL_TABLE, backends=BACKENDS)
    core = probed_core(vips=(vip6,), gateway=GATEWAY6)
    probes = probes_by_backend(core.health_tick(1.0))
    _, syn = probes["vm1"]
    assert syn.src == ipaddress.ip_address("fd00:1::1").packed
    answer = reply_frame(syn, TCP_SYN | TCP_ACK)
    (out,) = packet_in(core, UPLINK, ofp.OFP_NO_BUFFER, answer, 1.1)
    assert parse_segment(out.data).flags == TCP_RST and core.prober.results[True] == 1


# ---- IPv6 neighbour discovery ----------------------------------------------------------------


def solicitation(target="fd00:1::1", src="fd00:1::fe", router_mac="02:00:00:00:fe:01"):
    """A neighbour solicitation as a router sends it, built and checksummed by os-ken."""
    solicited = ipaddress.ip_address(
        int(ipaddress.ip_address("ff02::1:ff00:0")) | int(ipaddress.ip_address(target)) & 0xFFFFFF
    )
    built = packet.Packet()
    built.add_protocol(
        ethernet.ethernet("33:33:" + solicited.packed[12:].hex(":"), router_mac, 0x86DD)
    )
    built.add_protocol(ipv6.ipv6(nxt=58, hop_limit=255, src=src, dst=str(solicited)))
    option = icmpv6.nd_option_sla(hw_src=router_mac)
    built.add_protocol(
        icmpv6.icmpv6(
            type_=icmpv6.ND_NEIGHBOR_SOLICIT, data=icmpv6.nd_neighbor(dst=target, option=option)
        )
    )
    built.serialize()
    return bytes(built.data)


def test_pipeline_punts_solicitations_and_probe_answers_for_each_address():
    web6 = Vip("web6", "fd00::100", 80, table_size=SMALL_TABLE, backends=BACKENDS)
    core = new_core(GATEWAY6, [dataclasses.replace(VIP, table_size=SMALL_TABLE), web6])
    messages = decode_all(core.on_ports(PORTS, 0.0))
    solicit = [
        m for m in messages if m.priority == pipeline.PRIORITY_ARP and "ipv6_nd_target" in m.match
    ]
    (rule,) = solicit
    assert dict(rule.match.items())["ipv6_nd_target"] == "fd00:1::1"
    assert dict(rule.match.items())["in_port"] == UPLINK
    # Only answers to probes: from the VIP's check port to a probe port of the gateway.
    local = [dict(m.match.items()) for m in messages if m.priority == pipeline.PRIORITY_LOCAL]
    probe_ports = (0xC000, 0xC000)
    assert sorted(
        (m.get("ipv4_src") or m["ipv6_src"], m.get("ipv4_dst") or m["ipv6_dst"], m["tcp_src"])
        for m in local
        if m["ip_proto"] == 6 and m["tcp_dst"] == probe_ports and m["in_port"] == UPLINK
    ) == [("10.0.0.100", "10.0.1.1", 80), ("fd00::100", "fd00:1::1", 80)]
    assert len(local) == 2


def test_solicitation_for_the_gateway_is_answered_out_of_the_in_port():
    core = probed_core(vips=(), gateway=GATEWAY6)
    (out,) = packet_in(core, UPLINK, ofp.OFP_NO_BUFFER, solicitation(), 1.0)
    assert out.in_port == ofp.OFPP_CONTROLLER and out.buffer_id == ofp.OFP_NO_BUFFER
    (output,) = out.actions
    assert isinstance(output, parser.OFPActionOutput) and output.port == UPLINK
    parsed = packet.Packet(out.data)
    eth = parsed.get_protocol(ethernet.ethernet)
    assert (eth.src, eth.dst) == (GATEWAY_MAC, "02:00:00:00:fe:01")
    ip = parsed.get_protocol(ipv6.ipv6)
    assert (ip.src, ip.dst, ip.hop_limit) == ("fd00:1::1", "fd00:1::fe", 255)
    advert = parsed.get_protocol(icmpv6.icmpv6)
    assert advert.type_ == icmpv6.ND_NEIGHBOR_ADVERT and advert.data.dst == "fd00:1::1"
    assert advert.data.option.hw_src == GATEWAY_MAC
    assert packet_utils.checksum_ip(ip, len(out.data) - 54, out.data[54:]) == 0
    assert core.counters.neighbour_answers == 1 and not core.counters.malformed


@pytest.mark.parametrize(
    ("gateway", "target", "in_port"),
    [
        (GATEWAY6, "fd00:1::99", UPLINK),  # someone else's address
        (GATEWAY6, "fd00:1::1", 3),  # not from the router's side
        (GATEWAY, "fd00:1::1", UPLINK),  # this gateway has no IPv6 address
    ],
    ids=["other-target", "other-port", "ipv4-only-gateway"],
)
def test_other_solicitations_are_counted_as_not_tcp_udp(gateway, target, in_port):
    core = probed_core(vips=(), gateway=gateway)
    assert packet_in(core, in_port, ofp.OFP_NO_BUFFER, solicitation(target), 1.0) == []
    assert core.counters.malformed == {"not-tcp-udp": 1}
    assert core.counters.neighbour_answers == 0


# ---- VIP changes -----------------------------------------------------------------------------


def punts(messages, command=ofp.OFPFC_ADD):
    return [
        dict(m.match.items())
        for m in decode_all(messages)
        if isinstance(m, parser.OFPFlowMod)
        and m.priority == pipeline.PRIORITY_VIP
        and m.command == command
    ]


def backend_deletes(messages):
    return sorted(
        pipeline.backend_of_cookie(m.cookie)
        for m in decode_all(messages)
        if m.command == ofp.OFPFC_DELETE and m.cookie_mask == pipeline.COOKIE_BACKEND_MASK
    )


def test_new_vip_gets_its_punt_rule():
    core = probed_core()
    api = Vip("api", "10.0.0.101", 443, table_size=SMALL_TABLE, backends=BACKENDS)
    messages = core.set_vip(api, 1.0)
    assert punts(messages) == [
        {
            "in_port": UPLINK,
            "eth_type": 0x0800,
            "ipv4_dst": "10.0.0.101",
            "ip_proto": 6,
            "tcp_dst": 443,
        }
    ]
    assert backend_deletes(messages) == [] and len(messages.messages) == 2  # punt, probe answers
    assert messages.notices[-1].startswith("VIP api added")


def test_replacing_a_vip_deletes_only_the_flows_of_backends_that_went():
    core = probed_core()
    ids = dict(core.balancer.vips["web"].backend_ids)
    before = {}
    for sport in range(40000, 40030):
        rule, _ = packet_in(core, UPLINK, ofp.OFP_NO_BUFFER, frame(sport=sport), 1.0)
        before[sport] = tunnel_target(actions_of(rule))[0]
    assert set(before.values()) == {b.tunnel_ip for b in BACKENDS}
    moved = Backend("vm2", "10.99.0.99", "02:00:00:00:01:02")  # same name, new tunnel
    messages = core.set_vip(
        Vip("web", "10.0.0.100", 80, table_size=SMALL_TABLE, backends=(BACKENDS[0], moved)), 2.0
    )
    assert backend_deletes(messages) == sorted([ids["vm2"], ids["vm3"]])
    assert len(punts(messages)) == 1 and punts(messages, ofp.OFPFC_DELETE_STRICT) == []
    assert core.balancer.vips["web"].backend_ids["vm1"] == ids["vm1"]
    core.balancer.rebuild_now(messages.tables)
    for sport, tunnel_ip in before.items():
        *_, out = packet_in(core, UPLINK, ofp.OFP_NO_BUFFER, frame(sport=sport, flags=TCP_ACK), 5.0)
        now_at = tunnel_target(out.actions)[0]
        if tunnel_ip == "10.99.0.11":
            assert now_at == tunnel_ip  # vm1 stayed: its connections stay with it
        else:
            assert now_at in ("10.99.0.11", "10.99.0.99")  # never the old vm2 or vm3


def test_moving_a_vip_to_another_port_removes_the_old_punt():
    core = probed_core()
    messages = core.set_vip(
        Vip("web", "10.0.0.100", 8080, table_size=SMALL_TABLE, backends=BACKENDS), 1.0
    )
    (old,) = punts(messages, ofp.OFPFC_DELETE_STRICT)
    assert old["tcp_dst"] == 80 and old["ipv4_dst"] == "10.0.0.100"
    (new,) = punts(messages)
    assert new["tcp_dst"] == 8080
    assert backend_deletes(messages) == []


def test_same_service_replaced_keeps_its_punt():
    core = probed_core()
    messages = core.set_vip(
        Vip("web", "10.0.0.100", 80, idle_timeout=30, table_size=SMALL_TABLE, backends=BACKENDS),
        1.0,
    )
    assert punts(messages, ofp.OFPFC_DELETE_STRICT) == [] and len(punts(messages)) == 1


def test_removing_a_vip_removes_its_punt_and_every_backends_flows():
    core = probed_core()
    ids = core.balancer.vips["web"].backend_ids.values()
    messages = core.remove_vip("web", 1.0)
    (removed,) = punts(messages, ofp.OFPFC_DELETE_STRICT)
    assert removed["tcp_dst"] == 80
    assert backend_deletes(messages) == sorted(ids)
    assert packet_in(core, UPLINK, ofp.OFP_NO_BUFFER, frame(), 2.0) == []  # not a VIP now
    assert core.prober.states == {}
    with pytest.raises(KeyError):
        core.remove_vip("web", 2.0)


def test_vip_changes_before_the_switch_is_known_send_nothing_but_apply():
    core = new_core(GATEWAY, [PROBED_VIP])
    api = Vip("api", "10.0.0.101", 443, table_size=SMALL_TABLE, backends=BACKENDS)
    assert core.set_vip(api, 1.0).messages == [] and core.remove_vip("web", 1.0).messages == []
    assert set(core.balancer.vips) == {"api"}
    punted = punts(core.on_ports(PORTS, 2.0))
    assert [p["ipv4_dst"] for p in punted] == ["10.0.0.101"]


def test_probes_answers_and_vip_changes_are_what_os_ken_would_write():
    core = probed_core(gateway=GATEWAY6)
    effects = core.health_tick(1.0)
    effects += core.on_messages([raw_packet_in(UPLINK, solicitation())], 1.0)
    effects += core.set_vip(
        Vip("web", "10.0.0.100", 8080, table_size=SMALL_TABLE, backends=BACKENDS[:1]), 1.0
    )
    effects += core.remove_vip("web", 1.0)
    assert len(effects.messages) >= 3 + 1 + 4
    assert_os_ken_writes_the_same(effects.messages)


# ---- the prober and the balancer stay in step ---------------------------------------------------


def run_probes(core, start: float, seconds: float, answer=None) -> float:
    """Tick for ``seconds``; probes get no answer (or ``answer(syn)`` frames)."""
    now = start
    while now < start + seconds:
        for message in decode_all(core.health_tick(now)):
            if answer and isinstance(message, parser.OFPPacketOut):
                for frame in answer(parse_segment(message.data)):
                    packet_in(core, UPLINK, ofp.OFP_NO_BUFFER, frame, now)
        now += 0.05
    return now


def test_a_backend_whose_tunnel_changed_while_down_is_probed_from_the_balancers_view():
    core = probed_core()
    now = run_probes(core, 0.0, 10 * PROBED_VIP.health.interval)  # no answers: all down
    assert core.prober.states[("web", "vm1")].state == "down"
    moved = dataclasses.replace(BACKENDS[0], tunnel_ip="10.99.0.99")
    changed = core.set_vip(dataclasses.replace(PROBED_VIP, backends=(moved, *BACKENDS[1:])), now)
    core.balancer.rebuild_now(changed.tables)
    assert "vm1" in core.balancer.vips["web"].healthy  # a new endpoint starts up ...
    assert core.prober.states[("web", "vm1")].state == "up"  # ... for the prober too
    run_probes(core, now, 10 * PROBED_VIP.health.interval)
    assert "vm1" not in core.balancer.vips["web"].healthy  # and silence takes it down again


def test_a_disconnected_switch_takes_no_backend_down():
    core = probed_core()
    core.health_tick(0.0)
    core.health_tick(PROBED_VIP.health.interval)  # probes in flight
    core.on_disconnect(PROBED_VIP.health.interval)
    assert core.ports is None
    run_probes(core, PROBED_VIP.health.interval, 20 * PROBED_VIP.health.interval)
    assert core.balancer.vips["web"].healthy == {b.name for b in BACKENDS}
    assert core.prober.results == {True: 0, False: 0}


def test_probes_in_flight_survive_a_policy_change_and_a_removal():
    core = probed_core()
    now = 0.0
    while ("web", "vm1") not in core.prober._active:  # until vm1's probe is out
        core.health_tick(now)
        now += 0.01
    slower = dataclasses.replace(
        PROBED_VIP, health=dataclasses.replace(PROBED_VIP.health, interval=5.0, timeout=1.0)
    )
    core.set_vip(slower, now)
    core.set_vip(dataclasses.replace(slower, backends=BACKENDS[1:]), now)
    run_probes(core, now, 20.0)  # no KeyError from expiring or answering
    core.remove_vip("web", now + 20)
    assert not core.health_tick(now + 40) and core.prober.states == {}
