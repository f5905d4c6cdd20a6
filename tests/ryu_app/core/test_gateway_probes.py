"""GatewayCore's health probes and IPv6 neighbour answers, through a fake flow table: probes
leave through the tunnel to their backend, the answers come back through the table's punts,
and a backend that goes down loses its rules."""

import dataclasses
import ipaddress

import pytest
from os_ken.lib.packet import ethernet, icmpv6, ipv6, packet, packet_utils

from ryu_app.core import pipeline
from ryu_app.core.flowkey import TCP_ACK, TCP_SYN, parse_frame
from ryu_app.core.model import Vip
from ryu_app.core.packets import TCP_RST, mac_bytes, parse_segment, tcp_frame
from ryu_app.core.serving import retire_grace
from ryu_app.shell.compat import ofproto_v1_3 as ofp
from tests.ryu_app.core.rig import (
    BACKENDS,
    BY_TUNNEL,
    CHECK,
    GATEWAY,
    GATEWAY6,
    GATEWAY_MAC,
    OTHER,
    PROBED_VIP,
    ROUTER_MAC,
    SMALL_TABLE,
    TUNNEL,
    UPLINK,
    VIP,
    GatewayRig,
    frame,
    reply_frame,
)
from tests.ryu_app.fake_oftable import packet_fields


def probed(vips=(PROBED_VIP,), gateway=GATEWAY, connect=True) -> GatewayRig:
    return GatewayRig(gateway, vips, connect=connect)


def probes_by_backend(outs):
    """Backend name -> (packet-out, the SYN it carries), told apart by where it goes."""
    probes = {}
    for out in outs:
        tunnel_ip = out.forwarding.tunnel[0]
        probes[BY_TUNNEL[tunnel_ip]] = (out, parse_segment(out.data))
    assert len(probes) == len(outs)
    return probes


def test_health_tick_probes_only_once_the_ports_are_known():
    rig = probed(connect=False)
    assert rig.tick(1.0) == []
    assert rig.core.prober.sent == 0  # nothing was started to time out later
    rig.connect(1.0)
    probes = probes_by_backend(rig.tick(1.0))
    assert set(probes) == {"vm1", "vm2", "vm3"}
    for name, (out, syn) in probes.items():
        backend = PROBED_VIP.backend(name)
        assert out.message.in_port == ofp.OFPP_CONTROLLER
        assert out.forwarding.tunnel == (backend.tunnel_ip, backend.mac, 100, [TUNNEL])
        assert (syn.src, syn.dst, syn.dst_port, syn.flags) == (
            ipaddress.ip_address("10.0.1.1").packed,
            ipaddress.ip_address("10.0.0.100").packed,
            80,
            TCP_SYN,
        )
    assert rig.tick(1.1) == []  # all three in flight


def test_a_probe_answer_on_the_uplink_completes_the_tcp_check():
    rig = probed()
    _, syn = probes_by_backend(rig.tick(1.0))["vm2"]
    answer = reply_frame(syn, TCP_SYN | TCP_ACK)
    assert rig.table.forward(packet_fields(UPLINK, answer)).to_controller  # punted
    (reset,) = rig.packet_in(UPLINK, answer, 1.1)
    assert reset.forwarding.tunnel[0] == PROBED_VIP.backend("vm2").tunnel_ip
    segment = parse_segment(reset.data)
    assert segment.flags == TCP_RST and segment.seq == syn.seq + 1
    assert rig.core.prober.results == {True: 1, False: 0}
    assert rig.core.counters.probe_replies == 1 and rig.core.counters.flows_installed == 0
    assert len(rig.core.balancer.flows) == 0  # an answer to the gateway is not a client flow


def test_only_answers_to_probes_reach_the_controller():
    rig = probed()
    _, syn = probes_by_backend(rig.tick(1.0))["vm1"]
    answer = reply_frame(syn, TCP_SYN | TCP_ACK)
    assert rig.table.forward(packet_fields(OTHER, answer)).dropped  # not from the router
    not_the_check_port = reply_frame(syn, TCP_SYN | TCP_ACK, src_port=81)
    assert rig.table.forward(packet_fields(UPLINK, not_the_check_port)).dropped
    # Should the switch hand one over anyway, the controller does not believe it.
    assert rig.packet_in(OTHER, answer, 1.1) == []
    assert rig.core.counters.foreign_port == 1 and rig.core.prober.results[True] == 0


def test_refused_probes_take_the_backend_down_and_delete_its_flows_after_its_grace():
    rig = probed()
    client = frame(sport=41000)
    rig.send(UPLINK, client, 0.5)
    victim = rig.core.balancer.predict(parse_frame(client))
    assert rig.flow_rule(client) is not None
    for now in (1.0, 2.0):
        for backend, (_, syn) in probes_by_backend(rig.tick(now)).items():
            # The victim refuses; the others answer (silent, they would go down too).
            flags, seq = (TCP_RST | TCP_ACK, 0) if backend == victim else (TCP_SYN | TCP_ACK, 9000)
            rig.send(UPLINK, reply_frame(syn, flags, seq=seq), now + 0.1)
    assert f"backend {victim} of VIP web is DOWN (connection refused)" in rig.notices
    assert victim not in rig.core.balancer.vips["web"].healthy
    assert rig.flow_rule(client) is not None  # kept for its grace
    rig.tick(2.1 + retire_grace(CHECK))
    assert rig.flow_rule(client) is None  # its rules went from the switch
    # The same client's next packet goes to a live backend (the rebuilt table is in).
    moved = rig.send(UPLINK, frame(sport=41000, flags=TCP_ACK), 3.0 + retire_grace(CHECK))
    assert moved.outputs == [TUNNEL] and BY_TUNNEL[moved.tunnel[0]] != victim


def test_unanswered_probes_time_out_on_the_tick():
    """vm1 gets no answer, the others do: vm1 goes down within interval * fall + timeout."""
    rig = probed()
    down_at = {}
    for step in range(40):
        now = step / 10
        rig.notices.clear()
        for out in rig.tick(now):
            syn = parse_segment(out.data)
            if BY_TUNNEL[out.forwarding.tunnel[0]] != "vm1" and syn.flags == TCP_SYN:
                rig.send(UPLINK, reply_frame(syn, TCP_SYN | TCP_ACK), now)
        for notice in rig.notices:
            if notice.startswith("backend "):
                assert notice.endswith("is DOWN (no answer)"), notice
                down_at[notice.split()[1]] = now
    assert list(down_at) == ["vm1"]
    assert 1.5 <= down_at["vm1"] <= CHECK.interval * CHECK.fall + CHECK.timeout + 0.1
    assert rig.core.balancer.vips["web"].healthy == {"vm2", "vm3"}
    placed = {BY_TUNNEL[rig.send(UPLINK, frame(sport=p), 4.0).tunnel[0]] for p in range(50)}
    assert placed == {"vm2", "vm3"}


def test_ipv6_vip_probes_leave_from_the_gateways_ipv6_address():
    vip6 = Vip("web6", "fd00:100::80", 80, health=CHECK, table_size=SMALL_TABLE, backends=BACKENDS)
    rig = probed(vips=(vip6,), gateway=GATEWAY6)
    _, syn = probes_by_backend(rig.tick(1.0))["vm1"]
    assert syn.src == ipaddress.ip_address("fd00:1::1").packed
    reset = rig.send(UPLINK, reply_frame(syn, TCP_SYN | TCP_ACK), 1.1)
    assert reset.dropped  # the answer itself goes nowhere ...
    (out,) = rig.table.packet_outs[-1:]  # ... the controller closes with a reset
    assert parse_segment(out.data).flags == TCP_RST and rig.core.prober.results[True] == 1


# ---- IPv6 neighbour discovery ----------------------------------------------------------------


def solicitation(target="fd00:1::1", src="fd00:1::fe", router_mac=ROUTER_MAC):
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


def test_the_pipeline_punts_solicitations_and_probe_answers_for_each_address():
    web6 = Vip("web6", "fd00::100", 80, table_size=SMALL_TABLE, backends=BACKENDS)
    rig = GatewayRig(GATEWAY6, [dataclasses.replace(VIP, table_size=SMALL_TABLE), web6])

    def punted(data, in_port=UPLINK):
        return rig.table.forward(packet_fields(in_port, data)).to_controller

    assert punted(solicitation("fd00:1::1"))
    assert not punted(solicitation("fd00:1::99")) and not punted(solicitation(), OTHER)
    # Answers to probes: from each VIP's check port to a probe port of the gateway's address
    # of the VIP's IP version (49152-65535); nothing else addressed to the gateway.
    for vip, gateway in (("10.0.0.100", "10.0.1.1"), ("fd00::100", "fd00:1::1")):

        def answer(sport=80, dport=50000, vip=vip, gateway=gateway):
            src, dst = ipaddress.ip_address(vip).packed, ipaddress.ip_address(gateway).packed
            mac = mac_bytes(ROUTER_MAC), mac_bytes(GATEWAY_MAC)
            return tcp_frame(*mac, src, dst, sport, dport, 9000, 1, TCP_SYN | TCP_ACK)

        assert punted(answer())
        assert not punted(answer(dport=1000))  # not a probe's port
        assert not punted(answer(sport=443))  # not the check port
    assert len(rig.table.rules_at(pipeline.PRIORITY_LOCAL)) == 2


def test_solicitation_for_the_gateway_is_answered_out_of_the_in_port():
    rig = probed(vips=(), gateway=GATEWAY6)
    (out,) = rig.packet_in(UPLINK, solicitation(), 1.0)
    assert out.message.in_port == ofp.OFPP_CONTROLLER
    assert out.forwarding.outputs == [UPLINK]
    parsed = packet.Packet(out.data)
    eth = parsed.get_protocol(ethernet.ethernet)
    assert (eth.src, eth.dst) == (GATEWAY_MAC, ROUTER_MAC)
    ip = parsed.get_protocol(ipv6.ipv6)
    assert (ip.src, ip.dst, ip.hop_limit) == ("fd00:1::1", "fd00:1::fe", 255)
    advert = parsed.get_protocol(icmpv6.icmpv6)
    assert advert.type_ == icmpv6.ND_NEIGHBOR_ADVERT and advert.data.dst == "fd00:1::1"
    assert advert.data.option.hw_src == GATEWAY_MAC
    assert packet_utils.checksum_ip(ip, len(out.data) - 54, out.data[54:]) == 0
    assert rig.core.counters.neighbour_answers == 1 and not rig.core.counters.malformed


@pytest.mark.parametrize(
    ("gateway", "target", "in_port"),
    [
        (GATEWAY6, "fd00:1::99", UPLINK),  # someone else's address
        (GATEWAY6, "fd00:1::1", OTHER),  # not from the router's side
        (GATEWAY, "fd00:1::1", UPLINK),  # this gateway has no IPv6 address
    ],
    ids=["other-target", "other-port", "ipv4-only-gateway"],
)
def test_other_solicitations_are_counted_as_not_tcp_udp(gateway, target, in_port):
    rig = probed(vips=(), gateway=gateway)
    assert rig.packet_in(in_port, solicitation(target), 1.0) == []
    assert rig.core.counters.malformed == {"not-tcp-udp": 1}
    assert rig.core.counters.neighbour_answers == 0


# ---- the prober and the balancer stay in step ---------------------------------------------------


def run_probes(rig, start: float, seconds: float, answer=None) -> float:
    """Tick for ``seconds``; probes get no answer (or ``answer(syn)`` frames)."""
    now = start
    while now < start + seconds:
        for out in rig.tick(now):
            for data in answer(parse_segment(out.data)) if answer else ():
                rig.send(UPLINK, data, now)
        now += 0.05
    return now


def test_probes_answered_keep_every_backend_up():
    rig = probed()

    def accept(syn):
        return [reply_frame(syn, TCP_SYN | TCP_ACK)] if syn.flags == TCP_SYN else []

    run_probes(rig, 0.0, 10 * CHECK.interval, answer=accept)
    assert rig.core.prober.results[True] >= 3 * 9 and rig.core.prober.results[False] == 0
    assert rig.core.balancer.vips["web"].healthy == {b.name for b in BACKENDS}


def answering(rig, names):
    """An ``answer`` for ``run_probes``: only the backends ``names`` answer."""

    def answer(syn):
        probe = rig.core.prober._probes.get(syn.src_port)
        if syn.flags != TCP_SYN or probe is None or probe.backend not in names:
            return []
        return [reply_frame(syn, TCP_SYN | TCP_ACK)]

    return answer


def test_a_backend_whose_tunnel_changed_while_down_is_probed_from_the_balancers_view():
    rig = probed()
    others = answering(rig, {"vm2", "vm3"})
    now = run_probes(rig, 0.0, 10 * CHECK.interval, answer=others)  # vm1 silent: down
    assert rig.core.prober.states[("web", "vm1")].state == "down"
    moved = dataclasses.replace(BACKENDS[0], tunnel_ip="10.99.0.99")
    rig.run(rig.core.set_vip(dataclasses.replace(PROBED_VIP, backends=(moved, *BACKENDS[1:])), now))
    assert "vm1" in rig.core.balancer.vips["web"].healthy  # a new endpoint starts up ...
    assert rig.core.prober.states[("web", "vm1")].state == "up"  # ... for the prober too
    run_probes(rig, now, 10 * CHECK.interval, answer=others)
    assert "vm1" not in rig.core.balancer.vips["web"].healthy  # and silence takes it down again


def test_a_disconnected_switch_takes_no_backend_down():
    rig = probed()
    rig.tick(0.0)
    rig.tick(CHECK.interval)  # probes in flight
    rig.run(rig.core.on_disconnect(CHECK.interval))
    assert rig.core.ports is None
    assert rig.notices[-1] == "switch disconnected: probing paused until it is back"
    run_probes(rig, CHECK.interval, 20 * CHECK.interval)
    assert rig.core.balancer.vips["web"].healthy == {b.name for b in BACKENDS}
    assert rig.core.prober.results == {True: 0, False: 0}


def test_probes_in_flight_survive_a_policy_change_and_a_removal():
    rig = probed()
    now = 0.0
    while ("web", "vm1") not in rig.core.prober._active:  # until vm1's probe is out
        rig.tick(now)
        now += 0.01
    slower = dataclasses.replace(
        PROBED_VIP, health=dataclasses.replace(PROBED_VIP.health, interval=5.0, timeout=1.0)
    )
    rig.run(rig.core.set_vip(slower, now))
    rig.run(rig.core.set_vip(dataclasses.replace(slower, backends=BACKENDS[1:]), now))
    run_probes(rig, now, 20.0)  # no KeyError from expiring or answering
    rig.run(rig.core.remove_vip("web", now + 20))
    assert rig.tick(now + 40) == [] and rig.core.prober.states == {}  # nothing probed
    assert rig.send(UPLINK, frame(flags=TCP_ACK), now + 41).dropped
