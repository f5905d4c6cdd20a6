"""The new-flow benchmark's fake switch speaks OpenFlow 1.3 as os-ken reads and writes it.

Every message the switch writes is parsed back with os-ken's own parser, and every message it
reads is one os-ken (through ``ryu_app.ofmsg``, or a plain app's way) serialised.
"""

from __future__ import annotations

import socket
import threading
import time
from types import SimpleNamespace

import pytest
from os_ken.lib.packet import ipv4, packet, packet_utils, tcp
from os_ken.ofproto import ofproto_parser, ofproto_v1_3
from os_ken.ofproto import ofproto_v1_3_parser as parser

from bench import fakeswitch
from ryu_app import ofmsg
from ryu_app.core.flowkey import parse_frame
from topology.deployment import Backend, Vip

DATAPATH = SimpleNamespace(ofproto=ofproto_v1_3, ofproto_parser=parser, id=1)
VIP = Vip(
    name="web",
    address="10.0.0.100",
    port=80,
    backends=(Backend("vm1", "192.168.100.11", "02:00:00:00:01:01"),),
)
# First flow, last port of the first client, first of the second, and one far away.
INDICES = [0, fakeswitch.PORTS_PER_CLIENT - 1, fakeswitch.PORTS_PER_CLIENT, 1_000_003]


def parse(data: bytes):
    version, kind, length, xid = ofproto_parser.header(data)
    assert length == len(data)
    return ofproto_parser.msg(DATAPATH, version, kind, length, xid, bytearray(data))


def serialise(message) -> bytes:
    message.datapath = DATAPATH
    message.set_xid(7)
    message.serialize()
    return bytes(message.buf)


def expected_client(index: int) -> tuple[str, int]:
    client, port = divmod(index, fakeswitch.PORTS_PER_CLIENT)
    address = socket.inet_ntoa((fakeswitch.CLIENT_NET + client).to_bytes(4, "big"))
    return address, fakeswitch.FIRST_PORT + port


@pytest.mark.parametrize("index", INDICES)
def test_packet_in_is_an_unbuffered_syn_with_valid_checksums(index):
    message = parse(fakeswitch.SynFactory().packet_in(index))
    assert isinstance(message, parser.OFPPacketIn)
    assert message.xid == index
    assert message.buffer_id == ofproto_v1_3.OFP_NO_BUFFER
    assert message.reason == ofproto_v1_3.OFPR_ACTION
    assert message.match["in_port"] == fakeswitch.UPLINK[0]
    assert message.total_len == len(message.data) == fakeswitch.FRAME_LEN

    frame = packet.Packet(message.data)
    ip, segment = frame.get_protocol(ipv4.ipv4), frame.get_protocol(tcp.tcp)
    assert (ip.src, segment.src_port) == expected_client(index)
    assert (ip.dst, segment.dst_port) == fakeswitch.VIP
    assert segment.has_flags(tcp.TCP_SYN) and not segment.has_flags(tcp.TCP_ACK)
    header = message.data[14:34]
    assert packet_utils.checksum(header) == 0
    assert packet_utils.checksum_ip(ip, len(message.data) - 34, message.data[34:]) == 0
    assert parse_frame(message.data).src_port == segment.src_port  # Lockstep's parser agrees


def test_consecutive_packet_ins_are_distinct_flows():
    syns = fakeswitch.SynFactory()
    frames = {syns.packet_in(index)[-fakeswitch.FRAME_LEN :] for index in range(70_000)}
    assert len(frames) == 70_000


@pytest.mark.parametrize("index", INDICES)
def test_lockstep_flow_rule_and_packet_out_name_their_flow(index):
    frame = fakeswitch.SynFactory().packet_in(index)[-fakeswitch.FRAME_LEN :]
    flow = parse_frame(frame)
    ports = ofmsg.Ports(1, 2)
    rule = serialise(ofmsg.flow_rule(flow, VIP, VIP.backends[0], 3, ports))
    actions = ofmsg.backend_actions(VIP, VIP.backends[0], ports.tunnel)
    out = serialise(ofmsg.packet_out(1, actions, ofproto_v1_3.OFP_NO_BUFFER, frame))
    assert fakeswitch.flow_mod_index(rule, 0, len(rule)) == index
    assert fakeswitch.packet_out_index(out, 0, len(out)) == index


def test_a_plain_apps_flow_mod_in_another_field_order_names_its_flow():
    address, port = expected_client(123_456)
    match = parser.OFPMatch(
        tcp_src=port, in_port=1, ipv4_src=address, eth_type=0x0800, ip_proto=6, tcp_dst=80
    )
    rule = serialise(parser.OFPFlowMod(DATAPATH, match=match, priority=200))
    assert fakeswitch.flow_mod_index(rule, 0, len(rule)) == 123_456


def test_other_flow_mods_and_packet_outs_name_no_flow():
    punt = serialise(ofmsg.vip_punt(VIP, 1))
    delete = serialise(ofmsg.delete_own_flows())
    arp = bytes.fromhex("ffffffffffff0200000000010806") + bytes(28)
    probe = serialise(parser.OFPPacketOut(DATAPATH, ofproto_v1_3.OFP_NO_BUFFER, 2, [], data=arp))
    assert fakeswitch.flow_mod_index(punt, 0, len(punt)) == -1
    assert fakeswitch.flow_mod_index(delete, 0, len(delete)) == -1
    assert fakeswitch.packet_out_index(probe, 0, len(probe)) == -1


def test_handshake_replies_parse_with_os_ken():
    features = parse(fakeswitch.features_reply(9, 0xABC))
    assert isinstance(features, parser.OFPSwitchFeatures)
    assert (features.xid, features.datapath_id) == (9, 0xABC)

    ports = parse(fakeswitch.port_desc_reply(10, [(1, "gw1-eth0"), (2, "gw1-vxlan")]))
    assert isinstance(ports, parser.OFPPortDescStatsReply)
    assert ports.xid == 10
    assert [(p.port_no, p.name) for p in ports.body] == [(1, b"gw1-eth0"), (2, b"gw1-vxlan")]

    echo = parse(fakeswitch.reply(fakeswitch.OFPT_ECHO_REPLY, 11, b"ping"))
    assert isinstance(echo, parser.OFPEchoReply)
    assert (echo.xid, echo.data) == (11, b"ping")


def test_null_controllers_flow_mod_parses_with_os_ken():
    oxms = fakeswitch.oxm(0, (1).to_bytes(4, "big")) + fakeswitch.oxm(5, b"\x08\x00")
    message = fakeswitch.flow_mod(5, 200, fakeswitch.match(oxms), fakeswitch.output(2), cookie=9)
    rule = parse(message)
    assert isinstance(rule, parser.OFPFlowMod)
    assert (rule.xid, rule.priority, rule.cookie, rule.command) == (5, 200, 9, 0)
    assert dict(rule.match.items()) == {"in_port": 1, "eth_type": 0x0800}
    [instruction] = rule.instructions
    assert [action.port for action in instruction.actions] == [2]


def test_switch_counts_flows_against_the_null_controller():
    server = socket.create_server(("127.0.0.1", 0))
    controller = threading.Thread(target=fakeswitch.null_controller, args=(server,), daemon=True)
    controller.start()
    switch = fakeswitch.FakeSwitch.connect(server.getsockname(), time.monotonic() + 5)
    try:
        switch.wait_ready(0, timeout=5, settle=0)
        sustained = switch.run(window=16, duration=0.2)
        latency = switch.run(rate=2000, duration=0.2)
    finally:
        switch.close()
    controller.join(5)
    assert sustained.flows_per_s > 500 and latency.flows_per_s > 1000
    assert len(latency.latencies_ms) == pytest.approx(400, abs=10)
    for phase in (sustained, latency):
        assert phase.incomplete == phase.no_flow_mod == phase.not_offered == 0
    counters = switch.counters
    assert counters.duplicates == counters.foreign_packet_outs == 0
    assert counters.flow_mods == counters.packet_outs + 1  # the table miss
    assert counters.packet_outs == switch.next_index == switch.done
