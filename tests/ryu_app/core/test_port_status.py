"""GatewayCore.on_port_status: ports added, deleted, renamed or renumbered after the switch
connected.  The pipeline follows the uplink and tunnel ports; other ports change nothing.
Checked in a fake flow table: where packets go after each change."""

from __future__ import annotations

from ryu_app.core import openflow, pipeline
from tests.ryu_app.core.rig import (
    PROBED_VIP,
    TUNNEL,
    UPLINK,
    GatewayRig,
    arp_request,
    frame,
)
from tests.ryu_app.core.test_gateway_probes import probes_by_backend
from tests.ryu_app.fake_oftable import packet_fields


def port_status(rig, reason, name, number, now):
    return rig.run(rig.core.on_port_status(reason, name, number, now))


def where(rig, data, in_port=UPLINK):
    return rig.table.forward(packet_fields(in_port, data))


def connected_without_tunnel():
    rig = GatewayRig(vips=(PROBED_VIP,), connect=False)
    rig.connect(0.0, ports={"up0": UPLINK, "other": 3})
    assert rig.table.rules == [] and rig.core.missing_ports == ["vx0"]
    return rig


def test_a_tunnel_port_added_after_connect_installs_the_pipeline_and_flows_work():
    rig = connected_without_tunnel()
    assert rig.packet_in(UPLINK, frame(), 0.1) == []  # nowhere to send
    effects = port_status(rig, openflow.OFPPR_ADD, "vx0", 7, 0.2)
    assert effects.notices == ["port vx0 (7) added: pipeline installed (uplink 1, tunnel 7)"]
    assert rig.core.ports == pipeline.Ports(UPLINK, 7) and rig.core.missing_ports == []
    assert where(rig, arp_request("10.0.1.1")).outputs == [UPLINK]  # ARP answered again
    assert rig.send(UPLINK, frame(), 0.3).outputs == [7]
    assert where(rig, frame()).outputs == [7]  # and its rule sends there too


def test_a_renumbered_tunnel_port_replaces_every_rule_and_reinstalls_flows_on_their_next_packet():
    rig = GatewayRig(vips=(PROBED_VIP,))
    first = rig.send(UPLINK, frame(sport=41000), 0.1)
    assert first.outputs == [TUNNEL]
    cookie = rig.flow_rule(frame(sport=41000)).cookie
    rig.notices.clear()
    port_status(rig, openflow.OFPPR_DELETE, "vx0", TUNNEL, 0.2)
    assert rig.table.rules == []  # a gateway that cannot forward stops answering ARP too
    port_status(rig, openflow.OFPPR_ADD, "vx0", 9, 0.3)
    assert rig.notices == [
        "port vx0 (2) deleted: the switch lacks vx0: pipeline removed, probing paused",
        "port vx0 (9) added: pipeline installed (uplink 1, tunnel 9)",
    ]
    # The same flow keeps its backend (its entry stays) and gets its rule again, via port 9,
    # at once: the rule the switch had is gone, so the "installed recently" memory went too.
    again = rig.send(UPLINK, frame(sport=41000), 0.4)
    assert again.rule is None and again.tunnel[:3] == first.tunnel[:3]
    assert again.outputs == [9] and rig.flow_rule(frame(sport=41000)).cookie == cookie
    assert rig.core.counters.reinstalls == 1


def test_a_renamed_uplink_takes_the_pipeline_down_and_back_up_when_the_name_returns():
    rig = GatewayRig(vips=(PROBED_VIP,))
    port_status(rig, openflow.OFPPR_MODIFY, "eth9", UPLINK, 0.1)  # up0 is now called eth9
    assert rig.table.rules == []
    assert rig.core.ports is None and rig.core.missing_ports == ["up0"]
    assert rig.packet_in(UPLINK, frame(), 0.2) == []
    port_status(rig, openflow.OFPPR_MODIFY, "up0", UPLINK, 0.3)
    assert rig.core.ports == pipeline.Ports(UPLINK, TUNNEL)
    assert rig.send(UPLINK, frame(), 0.4).outputs == [TUNNEL]


def test_a_moved_uplink_number_moves_the_rules_that_match_it():
    rig = GatewayRig(vips=(PROBED_VIP,))
    rig.send(UPLINK, frame(), 0.05)
    port_status(rig, openflow.OFPPR_ADD, "up0", 5, 0.1)  # same name, new number
    assert rig.core.ports == pipeline.Ports(5, TUNNEL)
    assert where(rig, frame(), in_port=UPLINK).dropped  # nothing matches the old number now
    assert where(rig, frame(), in_port=5).to_controller
    assert where(rig, arp_request("10.0.1.1"), in_port=5).outputs == [5]
    in_ports = {r.match.get("in_port") for r in rig.table.rules}
    assert in_ports == {None, 5}  # the drops and the table miss match no port; the rest: 5


def test_other_ports_change_nothing():
    rig = GatewayRig(vips=(PROBED_VIP,))
    rules = list(rig.table.rules)
    assert not port_status(rig, openflow.OFPPR_ADD, "tap7", 7, 0.1)  # no message, no notice
    assert not port_status(rig, openflow.OFPPR_MODIFY, "other", 3, 0.2)  # link state
    assert not port_status(rig, openflow.OFPPR_DELETE, "other", 3, 0.3)
    assert rig.core.ports == pipeline.Ports(UPLINK, TUNNEL) and rig.table.rules == rules


def test_port_status_before_the_port_description_waits_for_it():
    rig = GatewayRig(vips=(PROBED_VIP,), connect=False)
    rig.run(rig.core.on_connect(0.0))
    assert not port_status(rig, openflow.OFPPR_ADD, "vx0", 2, 0.1)
    assert rig.core.ports is None
    rig.run(rig.core.on_ports({"up0": UPLINK, "vx0": TUNNEL}, 0.2))
    assert rig.core.ports == pipeline.Ports(UPLINK, TUNNEL)
    assert rig.send(UPLINK, frame(), 0.3).outputs == [TUNNEL]


def test_probing_pauses_while_the_tunnel_port_is_gone_and_no_backend_goes_down():
    rig = GatewayRig(vips=(PROBED_VIP,))
    interval = PROBED_VIP.health.interval
    assert probes_by_backend(rig.tick(interval))  # probes in flight ...
    port_status(rig, openflow.OFPPR_DELETE, "vx0", TUNNEL, interval)  # ... lost with the port
    now = interval
    while now < 20 * interval:
        assert not rig.core.health_tick(now)  # nothing is sent, nothing times out
        now += 0.05
    assert rig.core.balancer.vips["web"].healthy == {"vm1", "vm2", "vm3"}
    assert rig.core.prober.results == {True: 0, False: 0}
    port_status(rig, openflow.OFPPR_ADD, "vx0", TUNNEL, now)
    assert set(probes_by_backend(rig.tick(now))) == {"vm1", "vm2", "vm3"}
