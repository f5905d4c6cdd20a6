"""GatewayCore.on_port_status: ports added, deleted, renamed or renumbered after the switch
connected.  The pipeline follows the uplink and tunnel ports; other ports change nothing."""

from __future__ import annotations

from ryu_app.compat import ofproto_v1_3 as ofp
from ryu_app.compat import ofproto_v1_3_parser as parser
from ryu_app.core import openflow, pipeline
from tests.ryu_app.core.test_gateway import (
    GATEWAY,
    PROBED_VIP,
    TUNNEL,
    UPLINK,
    frame,
    new_core,
    packet_in,
    probed_core,
    probes_by_backend,
    tunnel_target,
)
from tests.ryu_app.wire import decode_all


def rules(messages):
    """(command, priority, in_port of the match) of each flow-mod, in order."""
    return [
        (m.command, m.priority, dict(m.match.items()).get("in_port"))
        for m in messages
        if isinstance(m, parser.OFPFlowMod)
    ]


def deletes_everything(message) -> bool:
    return (
        isinstance(message, parser.OFPFlowMod)
        and message.command == ofp.OFPFC_DELETE
        and message.cookie == pipeline.COOKIE_TAG
        and message.cookie_mask == pipeline.COOKIE_TAG_MASK
    )


def connected_without_tunnel():
    core = new_core(GATEWAY, [PROBED_VIP])
    core.on_connect(0.0)
    assert core.on_ports({"up0": UPLINK, "other": 3}, 0.0).messages == []
    assert core.missing_ports == ["vx0"]
    return core


def test_a_tunnel_port_added_after_connect_installs_the_pipeline_and_flows_work():
    core = connected_without_tunnel()
    assert packet_in(core, UPLINK, ofp.OFP_NO_BUFFER, frame(), 0.1) == []  # nowhere to send
    effects = core.on_port_status(openflow.OFPPR_ADD, "vx0", 7, 0.2)
    messages = decode_all(effects)
    assert not any(deletes_everything(m) for m in messages)  # nothing of ours was there
    assert (ofp.OFPFC_ADD, pipeline.PRIORITY_VIP, UPLINK) in rules(messages)
    assert core.ports == pipeline.Ports(UPLINK, 7) and core.missing_ports == []
    assert effects.notices == ["port vx0 (7) added: pipeline installed (uplink 1, tunnel 7)"]
    rule, out = packet_in(core, UPLINK, ofp.OFP_NO_BUFFER, frame(), 0.3)
    assert tunnel_target(rule.instructions[0].actions)[3] == [7]
    assert tunnel_target(out.actions)[3] == [7]


def test_a_renumbered_tunnel_port_replaces_every_rule_and_reinstalls_flows_on_their_next_packet():
    core = probed_core()
    first, _ = packet_in(core, UPLINK, ofp.OFP_NO_BUFFER, frame(sport=41000), 0.1)
    assert tunnel_target(first.instructions[0].actions)[3] == [TUNNEL]
    effects = core.on_port_status(openflow.OFPPR_DELETE, "vx0", TUNNEL, 0.2)
    effects += core.on_port_status(openflow.OFPPR_ADD, "vx0", 9, 0.3)
    messages = decode_all(effects)
    assert deletes_everything(messages[0])  # the rules that named the old tunnel number went
    assert [deletes_everything(m) for m in messages].count(True) == 1
    assert (ofp.OFPFC_ADD, pipeline.PRIORITY_MISS, None) in rules(messages[1:])
    assert effects.notices == [
        "port vx0 (2) deleted: the switch lacks vx0: pipeline removed, probing paused",
        "port vx0 (9) added: pipeline installed (uplink 1, tunnel 9)",
    ]
    # The same flow keeps its backend (its entry stays) and gets its rule again, via port 9,
    # at once: the rule the switch had is gone, so the "installed recently" memory went too.
    again, out = packet_in(core, UPLINK, ofp.OFP_NO_BUFFER, frame(sport=41000), 0.4)
    assert again.cookie == first.cookie
    assert tunnel_target(again.instructions[0].actions)[3] == [9]
    assert tunnel_target(out.actions)[3] == [9] and core.counters.reinstalls == 1


def test_a_renamed_uplink_takes_the_pipeline_down_and_back_up_when_the_name_returns():
    core = probed_core()
    gone = decode_all(core.on_port_status(openflow.OFPPR_MODIFY, "eth9", UPLINK, 0.1))  # eth9: up0
    assert [deletes_everything(m) for m in gone] == [True]
    assert core.ports is None and core.missing_ports == ["up0"]
    assert packet_in(core, UPLINK, ofp.OFP_NO_BUFFER, frame(), 0.2) == []
    back = core.on_port_status(openflow.OFPPR_MODIFY, "up0", UPLINK, 0.3)
    assert core.ports == pipeline.Ports(UPLINK, TUNNEL)
    assert (ofp.OFPFC_ADD, pipeline.PRIORITY_VIP, UPLINK) in rules(decode_all(back))


def test_a_moved_uplink_number_moves_the_rules_that_match_it():
    core = probed_core()
    messages = decode_all(core.on_port_status(openflow.OFPPR_ADD, "up0", 5, 0.1))  # new number
    assert deletes_everything(messages[0])
    in_ports = {in_port for command, priority, in_port in rules(messages[1:])}
    assert in_ports == {None, 5}  # the drops and the table miss match no port; the rest: 5
    assert core.ports == pipeline.Ports(5, TUNNEL)


def test_other_ports_change_nothing():
    core = probed_core()
    assert not core.on_port_status(openflow.OFPPR_ADD, "tap7", 7, 0.1)  # no message, no notice
    assert not core.on_port_status(openflow.OFPPR_MODIFY, "other", 3, 0.2)  # link state
    assert not core.on_port_status(openflow.OFPPR_DELETE, "other", 3, 0.3)
    assert core.ports == pipeline.Ports(UPLINK, TUNNEL)


def test_port_status_before_the_port_description_waits_for_it():
    core = new_core(GATEWAY, [PROBED_VIP])
    core.on_connect(0.0)
    assert not core.on_port_status(openflow.OFPPR_ADD, "vx0", 2, 0.1)
    assert core.ports is None
    assert core.on_ports({"up0": UPLINK, "vx0": TUNNEL}, 0.2).messages != []
    assert core.ports == pipeline.Ports(UPLINK, TUNNEL)


def test_probing_pauses_while_the_tunnel_port_is_gone_and_no_backend_goes_down():
    core = probed_core()
    interval = PROBED_VIP.health.interval
    assert probes_by_backend(core.health_tick(interval))  # probes in flight ...
    core.on_port_status(openflow.OFPPR_DELETE, "vx0", TUNNEL, interval)  # ... lost with the port
    now = interval
    while now < 20 * interval:
        assert not core.health_tick(now)  # nothing is sent, nothing times out
        now += 0.05
    assert core.balancer.vips["web"].healthy == {"vm1", "vm2", "vm3"}
    assert core.prober.results == {True: 0, False: 0}
    core.on_port_status(openflow.OFPPR_ADD, "vx0", TUNNEL, now)
    assert set(probes_by_backend(core.health_tick(now))) == {"vm1", "vm2", "vm3"}
