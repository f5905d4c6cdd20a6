"""A switch-mode VIP's slot rules, applied to the fake switch: SYNs and other packets go to
the slot's backend, the first non-SYN packet learns a pin identical to controller mode's flow
rule, and a table change rewrites only the changed slots.  Plus Open vSwitch's own reading of
the bytes against the prototype's (bench/switchmode_proto.py) text."""

from __future__ import annotations

import dataclasses
import subprocess

import pytest
from fake_oftable import FakeOFTable

from ryu_app.core import switchrules as sr
from ryu_app.core.flowkey import Flow
from ryu_app.core.model import DEFAULT_MAX_PINS_PER_BACKEND, Backend, Vip
from ryu_app.core.pipeline import (
    Ports,
    backend_actions,
    delete_backend_flows,
    flow_cookie,
    flow_rule,
)
from ryu_app.core.slots import port_slot

PORTS = Ports(uplink=1, tunnel=2)
BACKENDS = tuple(
    Backend(f"vm{i}", f"10.99.0.{10 + i}", f"02:00:00:00:01:{i:02x}") for i in (1, 2, 3)
)
VIP = Vip("web", "10.0.0.100", 80, table_size=16, placement="port-bits", backends=BACKENDS)
TARGETS = sr.targets_of(VIP, {"vm1": 1, "vm2": 2, "vm3": 3})
OWNERS = tuple(f"vm{1 + slot % 3}" for slot in range(16))
CLIENT = "192.0.2.7"


def packet(src_port: int, flags: int) -> dict:
    return {
        "in_port": PORTS.uplink, "eth_type": 0x0800, "ip_proto": 6,
        "ipv4_src": 0xC0000207, "ipv4_dst": 0x0A000064,
        "tcp_src": src_port, "tcp_dst": 80, "tcp_flags": flags,
    }  # fmt: skip


def switch(owners=OWNERS) -> FakeOFTable:
    table = FakeOFTable()
    table.apply(sr.vip_slot_rules(VIP, owners, TARGETS, PORTS))
    return table


def test_every_slot_has_a_syn_rule_and_a_learning_rule():
    table = switch()
    assert len(table.rules_at(sr.PRIORITY_SYN_SLOT)) == len(table.rules_at(sr.PRIORITY_SLOT)) == 16
    for rule in table.rules:
        assert rule.cookie == sr.slot_cookie(
            TARGETS[OWNERS[port_slot(rule.match["tcp_src"][0], 16)]].backend_id
        )


@pytest.mark.parametrize("src_port", [1024, 1026, 33333, 40000, 60998, 65535])
def test_a_syn_goes_to_its_slots_backend_and_learns_nothing(src_port):
    table = switch()
    owner = TARGETS[OWNERS[port_slot(src_port, 16)]]
    forwarding = table.forward(packet(src_port, sr.TCP_SYN))
    assert forwarding.rule.priority == sr.PRIORITY_SYN_SLOT
    assert forwarding.tunnel == (owner.tunnel_ip, owner.mac, VIP.vni, [PORTS.tunnel])
    assert forwarding.learned == []
    assert table.rules_at(200) == []


@pytest.mark.parametrize("src_port", [1024, 1026, 33333, 60998])
def test_a_non_syn_packet_learns_the_controller_modes_pin(src_port):
    table = switch()
    owner = TARGETS[OWNERS[port_slot(src_port, 16)]]
    forwarding = table.forward(packet(src_port, sr.TCP_ACK))
    assert forwarding.rule.priority == sr.PRIORITY_SLOT
    assert forwarding.tunnel == (owner.tunnel_ip, owner.mac, VIP.vni, [PORTS.tunnel])
    (pin,) = table.rules_at(200)
    assert (pin.cookie, pin.idle_timeout) == (flow_cookie(owner.backend_id), VIP.idle_timeout)
    # controller mode's rule for the same flow: same match, same sending
    reference = FakeOFTable()
    flow = Flow(4, bytes([192, 0, 2, 7]), bytes([10, 0, 0, 100]), 6, src_port, 80)
    actions = backend_actions(owner.mac, owner.tunnel_ip, VIP.vni, PORTS.tunnel)
    reference.apply([flow_rule(flow, VIP, owner.backend_id, actions, PORTS.uplink)])
    (controller_pin,) = reference.rules
    assert pin.match == controller_pin.match
    later = packet(src_port, 0x018)
    assert table.forward(later).rule is pin
    assert table.forward(later).tunnel == reference.forward(later).tunnel
    # one masked delete takes the learned pin, not the slot rules
    table.apply([delete_backend_flows(owner.backend_id)])
    assert table.rules_at(200) == [] and len(table.rules) == 32


def test_a_change_rewrites_only_the_changed_slots():
    after = tuple("vm1" if o == "vm3" else o for o in OWNERS)
    after = (None,) + after[1:]
    table = switch()
    table.forward(packet(1030, sr.TCP_ACK))  # a pin (slot 3: vm1), kept through the change
    changes = sr.slot_rule_changes(VIP, OWNERS, after, TARGETS, PORTS)
    changed = [s for s in range(16) if OWNERS[s] != after[s]]
    assert len(changes) == 2 * len(changed) == 2 * 6
    table.apply(changes)
    assert len(table.rules_at(200)) == 1
    fresh = switch(after)
    for src_port in range(1024, 1024 + 64, 2):
        for flags in (sr.TCP_SYN, sr.TCP_ACK):
            here, there = (
                table.forward(packet(src_port, flags)),
                fresh.forward(packet(src_port, flags)),
            )
            assert here.tunnel == there.tunnel
    assert table.forward(packet(1024, sr.TCP_SYN)).rule is None  # slot 0 empty: falls through


def test_ipv6_and_udp_vips_are_refused():
    with pytest.raises(ValueError, match="IPv4-only"):
        sr.slot_fields(Vip("v6", "2001:db8::1", 80, table_size=16, placement="port-bits"), 0, 1)
    assert "TCP" in sr.switch_mode_problem(Vip("u", "10.0.0.1", 53, protocol="udp"))


PROTOTYPE_LEARN = (
    "learn(table=0,idle_timeout={idle},fin_idle_timeout=2,priority=200,cookie=0x4c53020000000001,"
    "NXM_OF_IN_PORT[],eth_type=0x800,nw_proto=6,NXM_OF_IP_SRC[],NXM_OF_IP_DST[],"
    "NXM_OF_TCP_SRC[],NXM_OF_TCP_DST[],load:0x20000000101->NXM_OF_ETH_DST[],"
    "load:0xa63000b->NXM_NX_TUN_IPV4_DST[],load:0x64->NXM_NX_TUN_ID[],output:NXM_NX_REG1[])"
)


def ofp_print(message: bytes) -> str:
    return subprocess.run(
        ["ovs-ofctl", "ofp-print", message.hex()], capture_output=True, text=True, check=True
    ).stdout


def test_open_vswitch_reads_the_slot_rules_as_the_prototype_writes_them():
    """ovs-ofctl decodes the bytes (no switch needed): the SYN rule's match and the learn
    the prototype installs, verbatim (its ``load:`` of reg1 is this ``set_field``), with no
    pin limit (plain ``NXAST_LEARN``, for switches before OVS 2.12)."""
    unbounded = dataclasses.replace(VIP, max_pins_per_backend=0)
    text = [ofp_print(m) for m in sr.slot_rules(unbounded, 5, TARGETS["vm1"], PORTS)]
    match = "tcp,in_port=1,nw_dst=10.0.0.100,tp_src=0xa/0x1e,tp_dst=80"
    assert f"priority=210,{match},tcp_flags=+syn-ack cookie:0x4c53030000000001" in text[0]
    assert f"priority=190,{match} cookie:0x4c53030000000001" in text[1]
    assert "actions=set_field:0x2->reg1," + PROTOTYPE_LEARN.format(idle=VIP.idle_timeout) in text[1]
    assert text[1].rstrip().endswith("set_field:0x64->tun_id,output:2")


def test_open_vswitch_reads_the_pin_limit_as_learns_limit():
    """A VIP's ``max_pins_per_backend`` is the learn's ``limit=`` (``NXAST_LEARN2``): the same
    learn as the prototype's, ``limit`` after the cookie as ovs-ofctl writes it."""
    bounded = dataclasses.replace(VIP, max_pins_per_backend=1234)
    _, learning = sr.slot_rules(bounded, 5, TARGETS["vm1"], PORTS)
    limited = PROTOTYPE_LEARN.replace(",NXM_OF_IN_PORT[]", ",limit=1234,NXM_OF_IN_PORT[]")
    assert "set_field:0x2->reg1," + limited.format(idle=VIP.idle_timeout) in ofp_print(learning)
    assert f"limit={DEFAULT_MAX_PINS_PER_BACKEND}," in ofp_print(
        sr.slot_rules(VIP, 5, TARGETS["vm1"], PORTS)[1]
    )


def test_a_slot_learns_no_pin_once_its_backend_has_the_limit_and_still_forwards():
    """Open vSwitch counts the limit over every rule with the learned cookie (the backend's,
    across all its slots): the fake switch does the same."""
    bounded = dataclasses.replace(VIP, max_pins_per_backend=3)
    table = FakeOFTable()
    table.apply(sr.vip_slot_rules(bounded, ("vm1",) * 16, TARGETS, PORTS))
    forwarded = [table.forward(packet(40000 + 2 * n, sr.TCP_ACK)) for n in range(5)]
    assert [len(f.learned) for f in forwarded] == [1, 1, 1, 0, 0]
    assert len(table.rules_at(200)) == 3
    assert all(f.outputs == [PORTS.tunnel] for f in forwarded)  # sent on all the same
