"""A switch-mode VIP (issue 14, docs/switch-mode.md) through the rig: the gateway writes its
table's slot rules into the switch, which places SYNs and learns pins with no packet-in, to
the backend the controller would pick; health changes rewrite only the slots that moved."""

from __future__ import annotations

import dataclasses
import random

from ryu_app.core import pipeline
from ryu_app.core.flowkey import TCP_SYN, parse_frame
from ryu_app.core.pipeline import PRIORITY_FLOW, flow_cookie
from ryu_app.core.serving import retire_grace
from ryu_app.core.slots import changed_slots
from ryu_app.core.switchrules import PRIORITY_SLOT, PRIORITY_SYN_SLOT, slot_cookie
from tests.ryu_app.core.rig import BACKENDS, BY_TUNNEL, GATEWAY, UPLINK, VIP, GatewayRig, frame
from tests.ryu_app.fake_oftable import packet_fields

TCP_ACK = 0x10
SLOTS = 256
PORT_BITS_VIP = dataclasses.replace(VIP, placement="port-bits", table_size=SLOTS)
SWITCH_VIP = dataclasses.replace(PORT_BITS_VIP, mode="switch")


def slot_rules(rig) -> list:
    return rig.table.rules_at(PRIORITY_SYN_SLOT) + rig.table.rules_at(PRIORITY_SLOT)


def predicted(rig, data) -> str:
    """The controller's choice for ``data``'s flow (what ``GET /v1/lookup`` answers)."""
    return rig.core.balancer.predict(parse_frame(data))


def backend_at(forwarding) -> str:
    return BY_TUNNEL[forwarding.tunnel[0]]


def recording(rig) -> list[bytes]:
    """Every message the core sends to the rig's switch from now on."""
    sent, apply = [], rig.table.apply

    def record(messages):
        sent.extend(messages)
        return apply(messages)

    rig.table.apply = record
    return sent


def test_the_switch_places_a_syn_with_no_packet_in_where_the_controller_would():
    rig = GatewayRig(vips=(SWITCH_VIP,))
    assert len(slot_rules(rig)) == 2 * SLOTS
    packet_ins = rig.core.counters.packet_ins
    rng = random.Random(3)
    for _ in range(300):
        data = frame(
            src=f"10.1.{rng.randrange(256)}.{rng.randrange(1, 255)}",
            sport=rng.randrange(1024, 65536),
        )
        forwarding = rig.send(UPLINK, data, 1.0)
        assert forwarding.rule.priority == PRIORITY_SYN_SLOT
        assert backend_at(forwarding) == predicted(rig, data)
        assert not forwarding.learned  # a SYN makes no state
    assert rig.core.counters.packet_ins == packet_ins


def test_the_first_non_syn_learns_a_pin_that_carries_the_rest():
    rig = GatewayRig(vips=(SWITCH_VIP,))
    syn, ack = frame(sport=40002), frame(sport=40002, flags=TCP_ACK)
    backend = backend_at(rig.send(UPLINK, syn, 1.0))
    first = rig.send(UPLINK, ack, 1.1)
    assert first.rule.priority == PRIORITY_SLOT and backend_at(first) == backend
    (pin,) = first.learned
    backend_id = rig.core.balancer.vips["web"].backend_ids[backend]
    assert pin.priority == PRIORITY_FLOW and pin.cookie == flow_cookie(backend_id)
    later = rig.send(UPLINK, ack, 1.2)
    assert later.rule is pin and backend_at(later) == backend
    assert rig.core.counters.packet_ins == 0


def test_a_health_change_rewrites_only_the_slots_that_moved():
    rig = GatewayRig(vips=(SWITCH_VIP,))
    before = rig.core.balancer.vips["web"].table.owners()
    old_rules = slot_rules(rig)  # (kept alive: their ids are not reused)
    kept = {id(rule) for rule in old_rules}
    sent = recording(rig)
    rig.run(rig.core.set_health("web", "vm1", False, 1.0))
    after = rig.core.balancer.vips["web"].table.owners()
    moved = changed_slots(before, after)
    assert moved and len(moved) < SLOTS // 2  # vm1's slots only (Maglev's minimal disruption)
    assert len(sent) == 2 * len(moved)  # two rules per moved slot, nothing else
    assert len(slot_rules(rig)) == 2 * SLOTS
    owner_ids = {rule.cookie for rule in slot_rules(rig)}
    vm1 = rig.core.balancer.vips["web"].backend_ids["vm1"]
    assert slot_cookie(vm1) not in owner_ids
    untouched = [rule for rule in slot_rules(rig) if id(rule) in kept]
    assert len(untouched) == 2 * (SLOTS - len(moved))
    sent.clear()
    rig.run(rig.core.set_health("web", "vm1", True, 2.0))  # back: its table from the cache
    assert rig.core.balancer.vips["web"].table.owners() == before
    assert len(sent) == 2 * len(moved)


def pinned_flows(rig, count=40) -> list[bytes]:
    acks = [frame(sport=41000 + 2 * n, flags=TCP_ACK) for n in range(count)]
    for data in acks:
        rig.send(UPLINK, frame(sport=parse_frame(data).src_port), 1.0)
        rig.send(UPLINK, data, 1.0)
    return acks


def test_a_down_backends_pins_go_at_the_end_of_its_grace():
    rig = GatewayRig(vips=(SWITCH_VIP,))
    acks = pinned_flows(rig)
    victim = backend_at(rig.send(UPLINK, acks[0], 1.0))
    rig.run(rig.core.set_health("web", victim, False, 2.0))
    assert backend_at(rig.send(UPLINK, acks[0], 2.1)) == victim  # its pin holds for now
    rig.tick(2.0 + retire_grace(SWITCH_VIP.health))
    pins = rig.table.rules_at(PRIORITY_FLOW)
    assert pins and all(
        backend_at(rig.table.forward(packet_fields(UPLINK, a))) != victim for a in acks
    )
    assert len(pins) < len(acks)


def test_a_drained_backend_keeps_its_pins_and_gets_no_new_flow():
    rig = GatewayRig(vips=(SWITCH_VIP,))
    acks = pinned_flows(rig)
    owners = {a: backend_at(rig.send(UPLINK, a, 1.0)) for a in acks}
    drained = dataclasses.replace(
        SWITCH_VIP,
        backends=tuple(
            dataclasses.replace(b, weight=0) if b.name == "vm2" else b for b in BACKENDS
        ),
    )
    pins = len(rig.table.rules_at(PRIORITY_FLOW))
    rig.run(rig.core.set_vip(drained, 2.0))
    assert len(rig.table.rules_at(PRIORITY_FLOW)) == pins
    assert all(backend_at(rig.send(UPLINK, a, 2.1)) == owners[a] for a in acks)
    assert "vm2" in owners.values()
    vm2 = rig.core.balancer.vips["web"].backend_ids["vm2"]
    assert slot_cookie(vm2) not in {rule.cookie for rule in slot_rules(rig)}
    fresh = [frame(sport=50000 + 2 * n) for n in range(SLOTS)]
    assert all(backend_at(rig.send(UPLINK, data, 2.2)) != "vm2" for data in fresh)


def test_leaving_switch_mode_removes_the_slot_rules_and_packets_fall_to_the_punt():
    rig = GatewayRig(vips=(SWITCH_VIP,))
    rig.run(rig.core.set_vip(PORT_BITS_VIP, 1.0))
    assert slot_rules(rig) == []
    data = frame(sport=40002)
    assert rig.table.forward(packet_fields(UPLINK, data)).to_controller
    forwarding = rig.send(UPLINK, data, 1.1)
    assert forwarding.rule is None and backend_at(forwarding) == predicted(rig, data)
    assert rig.core.counters.packet_ins == 1
    rig.run(rig.core.set_vip(SWITCH_VIP, 2.0))  # and back
    assert len(slot_rules(rig)) == 2 * SLOTS


def test_a_reconnected_switch_gets_the_slot_rules_again():
    rig = GatewayRig(vips=(SWITCH_VIP,))
    rig.run(rig.core.on_disconnect(1.0))
    rig.connect(2.0)
    assert len(slot_rules(rig)) == 2 * SLOTS
    assert len(rig.table.rules_at(pipeline.PRIORITY_VIP)) == 1  # the punt, the fallback


def test_a_controller_mode_and_a_switch_mode_gateway_agree_on_1000_flows():
    in_controller = GatewayRig(vips=(PORT_BITS_VIP,))
    in_switch = GatewayRig(vips=(SWITCH_VIP,))
    rng = random.Random(7)
    for _ in range(1000):
        src = f"10.{rng.randrange(1, 250)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        data = frame(src=src, sport=rng.randrange(1024, 65536), flags=TCP_SYN)
        by_switch = in_switch.send(UPLINK, data, 1.0)
        assert by_switch.rule.priority == PRIORITY_SYN_SLOT
        assert backend_at(in_controller.send(UPLINK, data, 1.0)) == backend_at(by_switch)
    assert in_switch.core.counters.packet_ins == 0
    assert in_controller.core.counters.packet_ins == 1000


def test_a_gateways_vip_mode_overrides_the_vips_own_even_on_a_change():
    switch_gateway = dataclasses.replace(GATEWAY, vip_mode="switch")
    rig = GatewayRig(gateway=switch_gateway, vips=(PORT_BITS_VIP,))  # the VIP says controller
    assert rig.core.balancer.vips["web"].vip.mode == "switch"
    assert len(slot_rules(rig)) == 2 * SLOTS
    rig.run(rig.core.set_vip(dataclasses.replace(PORT_BITS_VIP, idle_timeout=30), 1.0))
    assert len(slot_rules(rig)) == 2 * SLOTS  # a fleet-wide body's mode does not flatten it
    hashed = dataclasses.replace(VIP, name="other", address="10.0.0.101")
    rig.run(rig.core.set_vip(hashed, 1.0))  # cannot run in switch mode: keeps its own
    assert rig.core.balancer.vips["other"].vip.mode == "controller"
    controller_gateway = dataclasses.replace(GATEWAY, vip_mode="controller")
    rig = GatewayRig(gateway=controller_gateway, vips=(SWITCH_VIP,))
    assert rig.core.balancer.vips["web"].vip.mode == "controller" and slot_rules(rig) == []
