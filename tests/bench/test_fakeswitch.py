"""The new-flow benchmark's fake switch speaks OpenFlow 1.3 as os-ken reads and writes it.

Every message the switch writes is parsed back with os-ken's own parser, and every message it
reads is one os-ken serialised (a plain app's way), or one of Lockstep's (``ryu_app.core.openflow``,
byte for byte what os-ken writes).  Health probes are Lockstep's prober's own, and
the switch's answers go back into it.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from types import SimpleNamespace

import pytest
from os_ken.lib.packet import ipv4, packet, packet_utils, tcp
from os_ken.ofproto import ofproto_parser, ofproto_v1_3
from os_ken.ofproto import ofproto_v1_3_parser as parser

from bench import fakeswitch, nullcontroller, switchwire
from ryu_app.core import openflow, pipeline
from ryu_app.core.flowkey import parse_frame
from ryu_app.core.model import Backend, HealthCheck, Vip
from ryu_app.core.packets import TCP_ACK, TCP_RST, TCP_SYN, parse_segment
from ryu_app.core.prober import Prober

DATAPATH = SimpleNamespace(ofproto=ofproto_v1_3, ofproto_parser=parser, id=1)
VIP = Vip(
    name="web",
    address="10.0.0.100",
    port=80,
    backends=(Backend("vm1", "192.168.100.11", "02:00:00:00:01:01"),),
)
# First flow, last port of the first client, first of the second, and one far away.
INDICES = [0, switchwire.PORTS_PER_CLIENT - 1, switchwire.PORTS_PER_CLIENT, 1_000_003]


def parse(data: bytes):
    version, kind, length, xid = ofproto_parser.header(data)
    assert length == len(data)
    return ofproto_parser.msg(DATAPATH, version, kind, length, xid, bytearray(data))


def serialise(message) -> bytes:
    message.datapath = DATAPATH
    message.set_xid(7)
    message.serialize()
    return bytes(message.buf)


def backend_actions(vip: Vip, backend: Backend, tunnel_port: int) -> bytes:
    return pipeline.backend_actions(backend.mac, backend.tunnel_ip, vip.vni, tunnel_port)


def expected_client(index: int) -> tuple[str, int]:
    client, port = divmod(index, switchwire.PORTS_PER_CLIENT)
    address = socket.inet_ntoa((switchwire.CLIENT_NET + client).to_bytes(4, "big"))
    return address, switchwire.FIRST_PORT + port


@pytest.mark.parametrize("index", INDICES)
def test_packet_in_is_an_unbuffered_syn_with_valid_checksums(index):
    message = parse(switchwire.SynFactory().packet_in(index))
    assert isinstance(message, parser.OFPPacketIn)
    assert message.xid == index
    assert message.buffer_id == ofproto_v1_3.OFP_NO_BUFFER
    assert message.reason == ofproto_v1_3.OFPR_ACTION
    assert message.match["in_port"] == switchwire.UPLINK[0]
    assert message.total_len == len(message.data) == switchwire.FRAME_LEN

    frame = packet.Packet(message.data)
    ip, segment = frame.get_protocol(ipv4.ipv4), frame.get_protocol(tcp.tcp)
    assert (ip.src, segment.src_port) == expected_client(index)
    assert (ip.dst, segment.dst_port) == switchwire.VIP
    assert segment.has_flags(tcp.TCP_SYN) and not segment.has_flags(tcp.TCP_ACK)
    header = message.data[14:34]
    assert packet_utils.checksum(header) == 0
    assert packet_utils.checksum_ip(ip, len(message.data) - 34, message.data[34:]) == 0
    assert parse_frame(message.data).src_port == segment.src_port  # Lockstep's parser agrees


def test_consecutive_packet_ins_are_distinct_flows():
    syns = switchwire.SynFactory()
    frames = {syns.packet_in(index)[-switchwire.FRAME_LEN :] for index in range(70_000)}
    assert len(frames) == 70_000


@pytest.mark.parametrize("index", INDICES)
def test_lockstep_flow_rule_and_packet_out_name_their_flow(index):
    frame = switchwire.SynFactory().packet_in(index)[-switchwire.FRAME_LEN :]
    flow = parse_frame(frame)
    actions = backend_actions(VIP, VIP.backends[0], 2)
    rule = pipeline.flow_rule(flow, VIP, 3, actions, 1)
    out = openflow.packet_out(1, openflow.OFP_NO_BUFFER, actions, frame)
    assert switchwire.flow_mod_index(rule, 0, len(rule)) == index
    assert switchwire.packet_out_index(out, 0, len(out)) == index


def test_a_plain_apps_flow_mod_in_another_field_order_names_its_flow():
    address, port = expected_client(123_456)
    match = parser.OFPMatch(
        tcp_src=port, in_port=1, ipv4_src=address, eth_type=0x0800, ip_proto=6, tcp_dst=80
    )
    rule = serialise(parser.OFPFlowMod(DATAPATH, match=match, priority=200))
    assert switchwire.flow_mod_index(rule, 0, len(rule)) == 123_456


def test_other_flow_mods_and_packet_outs_name_no_flow():
    punt, _ = pipeline.vip_flows(VIP, ("10.0.1.1",), 1)  # the VIP's punt, its probes' answers
    delete = pipeline.delete_own_flows()
    arp = bytes.fromhex("ffffffffffff0200000000010806") + bytes(28)
    probe = serialise(parser.OFPPacketOut(DATAPATH, ofproto_v1_3.OFP_NO_BUFFER, 2, [], data=arp))
    assert switchwire.flow_mod_index(punt, 0, len(punt)) == -1
    assert switchwire.flow_mod_index(delete, 0, len(delete)) == -1
    assert switchwire.packet_out_index(probe, 0, len(probe)) == -1


def test_handshake_replies_parse_with_os_ken():
    features = parse(switchwire.features_reply(9, 0xABC))
    assert isinstance(features, parser.OFPSwitchFeatures)
    assert (features.xid, features.datapath_id) == (9, 0xABC)

    ports = parse(switchwire.port_desc_reply(10, [(1, "gw1-eth0"), (2, "gw1-vxlan")]))
    assert isinstance(ports, parser.OFPPortDescStatsReply)
    assert ports.xid == 10
    assert [(p.port_no, p.name) for p in ports.body] == [(1, b"gw1-eth0"), (2, b"gw1-vxlan")]

    echo = parse(switchwire.reply(switchwire.OFPT_ECHO_REPLY, 11, b"ping"))
    assert isinstance(echo, parser.OFPEchoReply)
    assert (echo.xid, echo.data) == (11, b"ping")


def test_null_controllers_flow_mod_parses_with_os_ken():
    oxms = switchwire.oxm(0, (1).to_bytes(4, "big")) + switchwire.oxm(5, b"\x08\x00")
    message = switchwire.flow_mod(5, 200, switchwire.match(oxms), switchwire.output(2), cookie=9)
    rule = parse(message)
    assert isinstance(rule, parser.OFPFlowMod)
    assert (rule.xid, rule.priority, rule.cookie, rule.command) == (5, 200, 9, 0)
    assert dict(rule.match.items()) == {"in_port": 1, "eth_type": 0x0800}
    [instruction] = rule.instructions
    assert [action.port for action in instruction.actions] == [2]


def test_switch_counts_flows_against_the_null_controller():
    server = socket.create_server(("127.0.0.1", 0))
    controller = threading.Thread(
        target=nullcontroller.null_controller, args=(server,), daemon=True
    )
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


# ---- several VIPs, health probes, tunnels (the rebuild phase) ----------------------------------

SERVICES = [(f"10.0.0.{i}", 80) for i in range(1, 4)]
GATEWAY = "10.0.1.1"
HEALTH = HealthCheck(type="tcp", interval=1.0, timeout=0.5, rise=1, fall=1)
VIP3 = Vip(name="vip3", address="10.0.0.3", port=80, health=HEALTH, backends=VIP.backends)


@pytest.mark.parametrize("index", [0, 1, 2, 1_000_003])
def test_flows_go_round_the_vips_with_valid_checksums(index):
    message = parse(switchwire.SynFactory(SERVICES).packet_in(index))
    frame = packet.Packet(message.data)
    ip, segment = frame.get_protocol(ipv4.ipv4), frame.get_protocol(tcp.tcp)
    assert (ip.dst, segment.dst_port) == SERVICES[switchwire.vip_of(index, len(SERVICES))]
    assert (ip.src, segment.src_port) == expected_client(index) == switchwire.flow_source(index)
    assert packet_utils.checksum(message.data[14:34]) == 0
    assert packet_utils.checksum_ip(ip, len(message.data) - 34, message.data[34:]) == 0


def probe_syn() -> tuple[Prober, bytes, bytes]:
    """Lockstep's prober starts a probe of vm1: (prober, the SYN frame, its packet-out)."""
    prober = Prober([socket.inet_aton(GATEWAY)], switchwire.GATEWAY_MAC, random.Random(3))
    prober.set_vip(VIP3, {"vm1"}, 0.0)
    [send] = prober.due(1.0)
    actions = backend_actions(VIP3, VIP3.backends[0], 2)
    return prober, send.frame, openflow.controller_packet_out(actions, send.frame)


def test_a_probe_answer_is_the_syn_ack_locksteps_prober_waits_for():
    prober, syn_frame, _ = probe_syn()
    syn = parse_segment(syn_frame)
    message = parse(switchwire.probe_answer(syn_frame))
    assert isinstance(message, parser.OFPPacketIn)
    assert message.match["in_port"] == switchwire.UPLINK[0]
    answer = parse_segment(message.data)
    assert (answer.src, answer.src_port) == (syn.dst, syn.dst_port)  # from the VIP's service
    assert (answer.dst, answer.dst_port) == (syn.src, syn.src_port)  # to the probe's port
    assert answer.ack == syn.seq + 1 and answer.flags == TCP_SYN | TCP_ACK
    assert message.data[:6] == switchwire.GATEWAY_MAC  # to the gateway, from the router
    ip = packet.Packet(message.data).get_protocol(ipv4.ipv4)
    assert packet_utils.checksum(message.data[14:34]) == 0
    assert packet_utils.checksum_ip(ip, len(message.data) - 34, message.data[34:]) == 0
    sends, _ = prober.on_segment(answer, 1.1)
    assert prober.results[True] == 1  # a success; the prober closes with a reset
    assert [parse_segment(send.frame).flags for send in sends] == [TCP_RST]
    assert switchwire.probe_answer(sends[0].frame) is None  # no answer to the reset
    assert (
        switchwire.probe_answer(bytes.fromhex("ffffffffffff0200000000010806") + bytes(28)) is None
    )


def test_the_tunnel_endpoint_of_flow_mods_and_packet_outs():
    vm1 = switchwire.address_int(VIP3.backends[0].tunnel_ip)
    _, _, probe = probe_syn()
    assert switchwire.packet_out_tunnel(probe, 0) == vm1
    frame = switchwire.SynFactory().packet_in(5)[-switchwire.FRAME_LEN :]
    actions = backend_actions(VIP3, VIP3.backends[0], 2)
    rule = pipeline.flow_rule(parse_frame(frame), VIP3, 3, actions, 1)
    assert switchwire.flow_mod_tunnel(rule, 0, len(rule)) == vm1
    out = openflow.packet_out(1, openflow.OFP_NO_BUFFER, actions, frame)
    assert switchwire.packet_out_tunnel(out, 0) == vm1
    plain = switchwire.flow_mod(1, 200, switchwire.match(b""), switchwire.output(2))
    delete = pipeline.delete_own_flows()
    assert switchwire.flow_mod_tunnel(plain, 0, len(plain)) == -1
    assert switchwire.flow_mod_tunnel(delete, 0, len(delete)) == -1


def test_switch_answers_probes_unless_silenced_and_watches_where_flows_go():
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    theirs.settimeout(2)
    switch = fakeswitch.FakeSwitch(ours, vips=[("10.0.0.3", 80)])
    switch.answer_probes = True
    _, _, probe = probe_syn()

    def deliver(*messages: bytes) -> None:
        theirs.sendall(b"".join(messages))
        deadline = time.monotonic() + 0.3  # local: everything is read well before
        while time.monotonic() < deadline:
            switch.pump(0.02)

    deliver(probe)
    assert isinstance(parse(theirs.recv(4096)), parser.OFPPacketIn)
    switch.silence(VIP3.backends[0].tunnel_ip)
    deliver(probe)
    assert (switch.counters.probes_answered, switch.counters.probes_silenced) == (1, 1)

    switch.watch_tunnel = switchwire.address_int(VIP3.backends[0].tunnel_ip)
    sent = time.perf_counter()
    switch._send_syns(3, sent)  # flows 0, 1 and 2 are out
    actions = backend_actions(VIP3, VIP3.backends[0], 2)

    def rule(index: int, backend_id: int) -> bytes:
        frame = switchwire.SynFactory().packet_in(index)[-switchwire.FRAME_LEN :]
        return pipeline.flow_rule(parse_frame(frame), VIP3, backend_id, actions, 1)

    deliver(rule(0, 7), pipeline.delete_backend_flows(7), rule(1, 7), rule(2, 8))
    # Every flow placed on the watched endpoint, with its backend id and when it was sent.
    assert switch.watched == [(0, 7, sent), (1, 7, sent), (2, 8, sent)]
    assert list(switch.backend_deletes) == [7]  # backend 7's rules were deleted (retired)
    assert switch.backend_deletes[7] > sent
    ours.close()
    theirs.close()
