"""GatewayCore: the switch's pipeline and the life of a flow, checked by where packets go in a
fake flow table fed the core's messages (``rig.GatewayRig``).  Health probes and neighbour
discovery: test_gateway_probes.py; VIP changes: test_gateway_vips.py."""

import pytest

from ryu_app.core import openflow, pipeline
from ryu_app.core.balancer import SavedIds
from ryu_app.core.flowkey import TCP_ACK, parse_frame
from ryu_app.core.gateway import default_mac
from ryu_app.core.model import Vip
from ryu_app.core.recentinstalls import RECENT_INSTALL_SECONDS, RecentInstalls
from ryu_app.core.serving import retire_grace
from ryu_app.shell.compat import ofproto_v1_3 as ofp
from tests.ryu_app.core.rig import (
    BACKENDS,
    BY_TUNNEL,
    GATEWAY,
    GATEWAY_MAC,
    OTHER,
    PORTS,
    ROUTER_MAC,
    TUNNEL,
    UPLINK,
    VIP,
    GatewayRig,
    arp_request,
    frame,
)
from tests.ryu_app.fake_oftable import packet_fields, raw_flow_removed, raw_packet_in, run_actions


def where(rig, data, in_port=UPLINK):
    """Where the switch's table alone sends ``data`` (no controller)."""
    return rig.table.forward(packet_fields(in_port, data))


def backend_of(rig, data) -> str:
    """The backend Maglev picks for ``data``'s flow (the oracle: the balancer's own hash)."""
    return rig.core.balancer.predict(parse_frame(data))


def tunnel_of(name: str) -> tuple:
    backend = VIP.backend(name)
    return backend.tunnel_ip, backend.mac, 100, [TUNNEL]


# ---- the pipeline ------------------------------------------------------------------------------


def test_connect_deletes_only_lockstep_rules_it_writes_again_and_asks_for_ports():
    rig = GatewayRig(connect=False, saved_ids=SavedIds({}, 10))  # a restart with saved ids
    foreign = openflow.flow_mod(openflow.match(in_port=7), openflow.output(8), 5, 0x1234)
    base = openflow.flow_mod(openflow.match(in_port=9), b"", 5, pipeline.BASE_COOKIE)
    kept = openflow.flow_mod(openflow.match(in_port=9), b"", 6, pipeline.flow_cookie(4))
    rig.table.apply([foreign, base, kept])
    rig.run(rig.core.on_connect(0.0))
    # an earlier run's own rule is gone; its per-flow rule stays (it idles out by itself)
    assert [r.cookie for r in rig.table.rules] == [0x1234, pipeline.flow_cookie(4)]
    assert rig.table.port_desc_requests == 1


def test_the_pipeline_punts_new_connections_to_the_vip_whole():
    rig = GatewayRig()
    punted = where(rig, frame())
    assert punted.to_controller and punted.rule.priority == pipeline.PRIORITY_VIP
    (output,) = punted.rule.actions
    assert output.max_len == ofp.OFPCML_NO_BUFFER  # unbuffered: the packet rides along
    assert where(rig, frame(), in_port=OTHER).dropped  # only from the router's side


def test_the_switch_answers_arp_for_the_gateway_by_itself():
    rig = GatewayRig()
    asker = "192.168.7.254"  # unlike the gateway's address in every byte: every bit is moved
    reply = where(rig, arp_request("10.0.1.1", sender=asker))
    assert reply.outputs == [UPLINK]  # back where it came from
    assert reply.fields["eth_src"] == GATEWAY_MAC and reply.fields["eth_dst"] == ROUTER_MAC
    assert reply.fields["arp_op"] == 2
    assert (reply.fields["arp_sha"], reply.fields["arp_spa"]) == (GATEWAY_MAC, "10.0.1.1")
    assert (reply.fields["arp_tha"], reply.fields["arp_tpa"]) == (ROUTER_MAC, asker)
    assert where(rig, arp_request("10.0.1.2")).dropped  # someone else's address


def test_other_traffic_is_dropped_in_the_switch_and_the_unknown_punted():
    rig = GatewayRig()
    assert where(rig, frame(dport=22)).dropped  # the VIP's address, not its port
    assert where(rig, frame(dst="10.0.1.1", dport=5000)).dropped  # the gateway, not a probe
    lldp = bytes.fromhex("0180c200000e 020000000001 88cc") + bytes(46)
    miss = where(rig, lldp)
    assert miss.to_controller and miss.rule.priority == pipeline.PRIORITY_MISS


def test_missing_port_names_install_nothing():
    rig = GatewayRig(connect=False)
    rig.connect(0.0, ports={"up0": 1})
    assert rig.table.rules == []
    assert rig.core.missing_ports == ["vx0"] and rig.core.ports is None
    assert rig.errors == ["switch lacks port(s) ['vx0']; has ['up0']"]


def test_the_pipeline_installed_is_logged():
    rig = GatewayRig()
    assert rig.notices[-1] == "pipeline installed (uplink 1, tunnel 2)"


# ---- a new flow --------------------------------------------------------------------------------


def test_a_new_flow_goes_to_its_backend_and_its_next_packets_follow_a_rule():
    rig = GatewayRig()
    syn = frame()
    name = backend_of(rig, syn)
    first = rig.send(UPLINK, syn, 1.0)
    assert first.rule is None and first.tunnel == tunnel_of(name)  # through the controller
    ack = frame(flags=TCP_ACK)
    then = rig.send(UPLINK, ack, 1.1)
    assert then.rule.priority == pipeline.PRIORITY_FLOW and then.tunnel == tunnel_of(name)
    assert then.rule.idle_timeout == 60 and then.rule.flags & ofp.OFPFF_SEND_FLOW_REM
    backend_ids = rig.core.balancer.vips["web"].backend_ids
    assert pipeline.backend_of_cookie(then.rule.cookie) == backend_ids[name]
    # The rule is this flow's: the client's next connection is the controller's to place.
    assert where(rig, frame(sport=40001)).to_controller
    assert rig.core.counters.flows_installed == 1 and rig.core.counters.packet_outs == 1


def test_buffered_packet_in_is_released_by_buffer_id():
    rig = GatewayRig()
    (out,) = rig.packet_in(UPLINK, frame(), 1.0, buffer_id=77)
    assert out.message.buffer_id == 77 and out.data is None
    assert out.forwarding.outputs == [TUNNEL]


def test_repeated_packet_ins_reuse_the_entry_and_install_once():
    # Packets of a new connection that reach the controller before its rule is in.
    rig = GatewayRig()
    (first,) = rig.packet_in(UPLINK, frame(), 1.0)
    (again,) = rig.packet_in(UPLINK, frame(flags=TCP_ACK), 1.1)
    assert again.forwarding.tunnel == first.forwarding.tunnel
    assert rig.core.counters.flows_installed == 1 and len(rig.table.rules_at(200)) == 1


def test_a_packet_in_long_after_install_reinstalls_the_lost_rule():
    rig = GatewayRig()
    name = backend_of(rig, frame())
    rig.send(UPLINK, frame(), 1.0)
    rig.table.rules.remove(rig.flow_rule(frame()))  # the switch lost it
    later = 2.0 + RECENT_INSTALL_SECONDS
    assert rig.send(UPLINK, frame(flags=TCP_ACK), later).tunnel == tunnel_of(name)
    assert rig.flow_rule(frame()) is not None and rig.core.counters.reinstalls == 1


def test_malformed_and_foreign_packets_are_counted_and_dropped():
    rig = GatewayRig()
    assert rig.packet_in(UPLINK, b"\x00" * 26, 1.0) == []
    assert rig.packet_in(UPLINK, frame()[:30], 1.0) == []
    assert rig.packet_in(OTHER, frame(), 1.0) == []
    assert rig.core.counters.malformed == {"not-ip": 1, "truncated": 1}
    assert rig.core.counters.foreign_port == 1
    assert rig.table.rules_at(pipeline.PRIORITY_FLOW) == []


def test_non_vip_traffic_that_reaches_the_controller_is_ignored():
    rig = GatewayRig()
    assert rig.packet_in(UPLINK, frame(dport=22), 1.0) == []


def test_a_src_ip_vips_rule_takes_every_connection_of_the_client():
    vip = Vip("web", "10.0.0.100", 80, hash="src-ip", backends=BACKENDS)
    rig = GatewayRig(vips=(vip,))
    first = rig.send(UPLINK, frame(sport=40000), 1.0)
    other_port = rig.send(UPLINK, frame(sport=40001), 1.1)
    assert other_port.rule.priority == pipeline.PRIORITY_FLOW  # no controller this time
    assert other_port.tunnel == first.tunnel
    assert rig.send(UPLINK, frame(src="10.1.0.12"), 1.2).rule is None  # another client


# ---- bursts, as the fast lane hands them over ------------------------------------------------


def ready_core():
    return GatewayRig().core


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
    assert len(answers.messages) == 2  # the good one's rule and packet-out
    assert core.counters.malformed == {"bad-packet-in": 2}
    assert core.counters.packet_ins == 3


# ---- the end of a flow -------------------------------------------------------------------------


def test_an_expired_rule_ends_the_flow_and_the_next_connection_is_placed_afresh():
    rig = GatewayRig()
    rig.send(UPLINK, frame(), 1.0)
    assert len(rig.core.balancer.flows) == 1
    rig.expire(rig.flow_rule(frame()), 70.0)
    assert len(rig.core.balancer.flows) == 0 and rig.core.counters.flows_removed == 1
    assert rig.send(UPLINK, frame(), 71.0).rule is None  # through the controller again
    assert rig.core.counters.flows_installed == 2


def test_a_rule_of_someone_else_that_expires_is_not_a_flows_end():
    rig = GatewayRig()
    rig.send(UPLINK, frame(), 1.0)
    ours = rig.flow_rule(frame())
    rig.table.rules.remove(ours)  # replaced by another controller's rule, cookie 7
    flags = openflow.OFPFF_SEND_FLOW_REM
    rig.table.apply([openflow.flow_mod(_match_of(ours), b"", 200, 7, 60, flags)])
    (theirs,) = rig.table.rules_at(200)
    rig.expire(theirs, 70.0)
    assert len(rig.core.balancer.flows) == 1 and rig.core.counters.flows_removed == 0


def _match_of(rule) -> bytes:
    buf = bytearray()
    rule.flow_mod.match.serialize(buf, 0)
    return bytes(buf)


def test_a_reconnection_keeps_the_flows_rules_and_they_carry_the_flow_on():
    rig = GatewayRig()
    first = rig.send(UPLINK, frame(), 1.0)
    rig.connect(2.0)  # a reconnection keeps per-flow rules: nothing ends, nothing to redo
    assert rig.table.flow_removed == [] and len(rig.core.balancer.flows) == 1
    packet_ins = rig.core.counters.packet_ins
    again = rig.send(UPLINK, frame(flags=TCP_ACK), 3.0)
    assert again.rule.priority == pipeline.PRIORITY_FLOW and again.tunnel == first.tunnel
    assert rig.core.counters.packet_ins == packet_ins and rig.core.counters.reinstalls == 0


def test_rules_we_deleted_ourselves_do_not_end_the_flow():
    rig = GatewayRig()
    first = rig.send(UPLINK, frame(), 1.0)
    rig.run(rig.core.on_port_status(ofp.OFPPR_ADD, "vx0", 7, 2.0))  # the tunnel moved
    (removed,) = rig.table.flow_removed  # its rule went with the old pipeline, and said so ...
    rig.run(rig.core.on_messages([removed], 2.0))
    assert len(rig.core.balancer.flows) == 1  # ... but the flow keeps its backend here
    again = rig.send(UPLINK, frame(flags=TCP_ACK), 3.0)
    assert again.rule is None and again.tunnel[:3] == first.tunnel[:3]  # placed as before
    assert rig.flow_rule(frame()) is not None and rig.core.counters.reinstalls == 1


def test_a_raw_flow_removed_in_a_burst_ends_the_flow():
    rig = GatewayRig()
    rig.send(UPLINK, frame(), 1.0)
    rule = rig.flow_rule(frame())
    deleted_by_us = raw_flow_removed(rule, ofp.OFPRR_DELETE)
    assert not rig.core.on_messages([deleted_by_us, raw_flow_removed(rule)], 70.0)
    assert len(rig.core.balancer.flows) == 0 and rig.core.counters.flows_removed == 1


def test_an_entry_outlives_the_vips_idle_timeout_while_its_rule_carries_the_flow():
    # The switch rule forwards the flow's packets without the controller seeing them; only its
    # flow-removed message (idle timeout in the switch) ends the entry.
    rig = GatewayRig()
    rig.send(UPLINK, frame(), 1.0)
    rig.tick(1.0 + 10 * VIP.idle_timeout)  # sweeps expired entries
    assert len(rig.core.balancer.flows) == 1


def test_a_backend_down_keeps_its_rules_for_its_grace_then_they_go_and_its_flows_move():
    rig = GatewayRig()
    flows = [frame(sport=40000 + n) for n in range(30)]
    for data in flows:
        rig.send(UPLINK, data, 1.0)
    victim = backend_of(rig, flows[0])
    down = rig.run(rig.core.set_health("web", victim, False, 2.0))
    assert down.tables and down.messages == []  # a table without it; no rule deleted
    assert where(rig, flows[0]).tunnel == tunnel_of(victim)  # its flows keep their rules
    fresh = [frame(sport=50000 + n) for n in range(60)]
    assert all(rig.send(UPLINK, data, 2.5).tunnel != tunnel_of(victim) for data in fresh)
    grace = retire_grace(VIP.health)
    rig.tick(2.0 + grace - 0.05)
    assert where(rig, flows[0]).tunnel == tunnel_of(victim)
    rig.tick(2.0 + grace)  # still down when its grace ended: its rules go, in one message
    assert rig.notices[-1] == (
        f"backend {victim} of VIP web still down after its grace: "
        "its flows' rules deleted, its flows re-hashed"
    )
    left = {BY_TUNNEL[run_actions(r.actions, {}).tunnel[0]] for r in rig.table.rules_at(200)}
    assert victim not in left and left  # only its rules went
    rig.tick(2.0 + grace + 0.02)  # sweeps the backend's entries
    moved = rig.send(UPLINK, flows[0], 3.0 + grace)
    assert moved.rule is None and moved.tunnel != tunnel_of(victim)
    assert rig.core.set_health("web", victim, True, 3.0 + grace).messages == []


def test_a_backend_back_within_its_grace_moved_no_established_flow():
    """A flap (down, then up again before its grace ends): every established flow goes where
    it went before, by its rule or, once its rule is lost, by its entry; nothing was deleted."""
    rig = GatewayRig()
    flows = [frame(sport=40000 + n) for n in range(30)]
    acks = {data: frame(sport=40000 + n, flags=TCP_ACK) for n, data in enumerate(flows)}
    before = {data: rig.send(UPLINK, data, 1.0).tunnel for data in flows}
    victim = backend_of(rig, flows[0])
    rules = len(rig.table.rules_at(pipeline.PRIORITY_FLOW))
    rig.run(rig.core.set_health("web", victim, False, 2.0))
    rig.tick(3.0)
    rig.connect(3.5)  # the switch reconnects meanwhile: every rule is gone, the entries stay
    assert all(rig.send(UPLINK, acks[d], 4.0).tunnel == before[d] for d in flows)
    up = rig.run(rig.core.set_health("web", victim, True, 5.0))
    assert up.notices == [
        f"backend {victim} of VIP web is back within its "
        f"{retire_grace(VIP.health):g} s grace: its flows kept their rules"
    ]
    rig.tick(2.0 + retire_grace(VIP.health) + 1.0)  # the grace would have ended by now
    assert len(rig.table.rules_at(pipeline.PRIORITY_FLOW)) == rules  # reinstalled, none lost
    assert all(where(rig, acks[d]).tunnel == before[d] for d in flows)


# ---- small pieces ------------------------------------------------------------------------------


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


def test_default_mac_is_locally_administered_and_from_the_dpid():
    assert default_mac(0x1) == "02:00:00:00:00:01"
    assert default_mac(0xABCDEF) == "02:00:00:ab:cd:ef"
    assert GATEWAY.mac is None and default_mac(GATEWAY.dpid) == GATEWAY_MAC


@pytest.mark.parametrize("ports", [PORTS, {"vx0": 9, "up0": 4}])
def test_the_rules_name_the_ports_the_switch_has(ports):
    rig = GatewayRig(connect=False)
    rig.connect(0.0, ports=ports)
    uplink, tunnel = ports["up0"], ports["vx0"]
    assert rig.send(uplink, frame(), 1.0).outputs == [tunnel]
