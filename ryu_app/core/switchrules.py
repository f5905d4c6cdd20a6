"""A switch-mode VIP's slot rules: the switch places and pins new flows itself
(docs/switch-mode.md, "Rules").  Pure: flow-mod bytes from a VIP's ``port-bits`` table.

Per slot of the VIP's ``2**k`` table (``slots.slot_match``: masked source-port bits), two rules
with the slot's backend in their cookie (``slot_cookie``):

    priority 210  pure SYN (``tcp_flags=+syn-ack``) -> the backend's sending actions.  Above the
                  pins, so a SYN never looks at the exact-match pins: one datapath flow per
                  slot carries a SYN flood, and a spoofed SYN creates no state.
    priority 200  the pins (``pipeline.PRIORITY_FLOW``), learned by the rule below with the
                  backend's per-flow cookie: same match, actions and cookie as a controller
                  mode flow rule, so ``pipeline.delete_backend_flows`` takes both.
    priority 190  any other packet of the slot -> reg1 := tunnel port, ``learn`` the flow's pin,
                  then the same sending actions.  Below the pins: only a flow without a pin
                  learns one.

Health changes rewrite only the slots whose owner changed (``slot_rule_changes``): an ADD
replaces a rule of the same match and priority and sets its cookie (an OpenFlow 1.3 MODIFY
would keep the old cookie).  A slot left without an owner loses its rules, so its packets fall
to the VIP's punt (priority 100).  IPv4 TCP VIPs only.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from ryu_app.core import oflearn
from ryu_app.core import openflow as of
from ryu_app.core.flowkey import ETH_IPV4
from ryu_app.core.model import PROTO_TCP, Vip, service_key, switch_mode_problem
from ryu_app.core.pipeline import (
    COOKIE_ALL_FLOWS_MASK,
    KIND_SLOT,
    PRIORITY_FLOW,
    Ports,
    backend_actions,
    flow_cookie,
    kind_cookie,
)
from ryu_app.core.slots import changed_slots, slot_match

PRIORITY_SYN_SLOT = 210
PRIORITY_SLOT = 190
TCP_SYN, TCP_ACK = 0x002, 0x010
PURE_SYN = (TCP_SYN, TCP_SYN | TCP_ACK)  # tcp_flags value/mask: +syn-ack
PIN_FIN_IDLE = 2  # seconds a pin outlives its flow's FIN (learn's fin_idle_timeout)
TUNNEL_REGISTER = "reg1"  # where the non-SYN rule puts the tunnel port for the pin's output


class Target(NamedTuple):
    """Where a slot's backend is: its id (cookies) and tunnel endpoint."""

    backend_id: int
    mac: str
    tunnel_ip: str


def targets_of(vip: Vip, backend_ids: Mapping[str, int]) -> dict[str, Target]:
    """The targets of a VIP's backends that have an id (``balancer``'s ``backend_ids``)."""
    return {
        b.name: Target(backend_ids[b.name], b.mac, b.tunnel_ip)
        for b in vip.backends
        if b.name in backend_ids
    }


def slot_cookie(backend_id: int) -> int:
    """A slot rule's cookie: Lockstep's tag, the slot kind, the backend it sends to."""
    return kind_cookie(KIND_SLOT) | backend_id


def slot_fields(vip: Vip, slot: int, uplink: int) -> dict:
    """The match of both rules of ``slot`` (the SYN rule adds ``tcp_flags``)."""
    problem = switch_mode_problem(vip)
    if problem:
        raise ValueError(f"VIP {vip.name}: {problem}")
    return {
        "in_port": uplink,
        "eth_type": ETH_IPV4,
        "ip_proto": PROTO_TCP,
        "ipv4_dst": vip.address,
        "tcp_src": slot_match(slot, vip.table_size),
        "tcp_dst": service_key(vip).port,
    }


def pin_learn(vip: Vip, target: Target) -> bytes:
    """The learn that installs a flow's pin: its 5-tuple and in_port matched, the backend's
    MAC, tunnel endpoint and VNI loaded, output to the port in ``TUNNEL_REGISTER``."""
    mac = int(target.mac.replace(":", ""), 16)
    specs = [
        oflearn.match_field("in_port_nxm"),
        oflearn.match_value("eth_type_nxm", ETH_IPV4),
        oflearn.match_value("ip_proto_nxm", PROTO_TCP),
        oflearn.match_field("ipv4_src_nxm"),
        oflearn.match_field("ipv4_dst_nxm"),
        oflearn.match_field("tcp_src_nxm"),
        oflearn.match_field("tcp_dst_nxm"),
        oflearn.load_value(mac, "eth_dst_nxm"),
        oflearn.load_value(int(ipaddress.ip_address(target.tunnel_ip)), "tun_ipv4_dst"),
        oflearn.load_value(vip.vni, "tunnel_id_nxm"),
        oflearn.output_field(TUNNEL_REGISTER),
    ]
    return oflearn.learn(
        specs,
        idle_timeout=vip.idle_timeout,
        priority=PRIORITY_FLOW,
        cookie=flow_cookie(target.backend_id),
        fin_idle_timeout=PIN_FIN_IDLE,
        limit=vip.max_pins_per_backend,
    )


def slot_rules(vip: Vip, slot: int, target: Target, ports: Ports) -> list[bytes]:
    """The two rules of one slot owned by ``target``: SYN (210) and learning (190)."""
    fields = slot_fields(vip, slot, ports.uplink)
    send = backend_actions(target.mac, target.tunnel_ip, vip.vni, ports.tunnel)
    cookie = slot_cookie(target.backend_id)
    syn = of.flow_mod(of.match(**fields, tcp_flags=PURE_SYN), send, PRIORITY_SYN_SLOT, cookie)
    learning = of.set_field(TUNNEL_REGISTER, ports.tunnel) + pin_learn(vip, target) + send
    return [syn, of.flow_mod(of.match(**fields), learning, PRIORITY_SLOT, cookie)]


def remove_slot_rules(vip: Vip, slot: int, uplink: int) -> list[bytes]:
    """Delete both rules of ``slot`` (strict: priority and match; any slot cookie)."""
    fields = slot_fields(vip, slot, uplink)
    matches = [
        (PRIORITY_SYN_SLOT, of.match(**fields, tcp_flags=PURE_SYN)),
        (PRIORITY_SLOT, of.match(**fields)),
    ]
    return [
        of.flow_mod(
            match,
            priority=priority,
            cookie=slot_cookie(0),
            cookie_mask=COOKIE_ALL_FLOWS_MASK,  # any backend's slot rule
            command=of.OFPFC_DELETE_STRICT,
            out_port=of.OFPP_ANY,
            out_group=of.OFPG_ANY,
        )
        for priority, match in matches
    ]


def _rules_of(
    vip: Vip, slots: Sequence[int], owners: Sequence[str | None], targets, ports
) -> list[bytes]:
    messages = []
    for slot in slots:
        owner = owners[slot]
        if owner is None:
            messages += remove_slot_rules(vip, slot, ports.uplink)
        else:
            messages += slot_rules(vip, slot, targets[owner], ports)
    return messages


def vip_slot_rules(
    vip: Vip, owners: Sequence[str | None], targets: Mapping[str, Target], ports: Ports
) -> list[bytes]:
    """Every slot's rules of a VIP whose table is ``owners`` (``MaglevTable.owners``, of
    ``vip.table_size`` slots); an empty slot gets none."""
    if len(owners) != vip.table_size:
        raise ValueError(f"VIP {vip.name}: {len(owners)} owners for {vip.table_size} slots")
    return [
        message
        for slot, owner in enumerate(owners)
        if owner is not None
        for message in slot_rules(vip, slot, targets[owner], ports)
    ]


def slot_rule_changes(
    vip: Vip,
    before_owners: Sequence[str | None],
    after_owners: Sequence[str | None],
    targets: Mapping[str, Target],
    ports: Ports,
) -> list[bytes]:
    """The flow-mods that turn the slot rules of ``before_owners`` into those of
    ``after_owners``, touching only the slots whose owner changed (pins are left alone: a
    down backend's go with ``pipeline.delete_backend_flows``, a draining one's stay)."""
    changed = changed_slots(before_owners, after_owners)
    return _rules_of(vip, changed, after_owners, targets, ports)
