"""A Lockstep gateway's flow table: which rules it holds, what each matches and does.

The rules are encoded by ``openflow`` (the one encoder); this module decides them.  Table 0 of
a gateway bridge:

    priority 300  ARP request for a gateway address on the uplink -> answered in the switch;
                  IPv6 neighbour solicitation for one -> controller (answered by packet-out)
    priority 200  one rule per placed flow -> set inner dst MAC, tun_dst, tunnel key; tunnel port
    priority 150  health probe answers (TCP from a VIP's check port to a gateway address and a
                  probe port, 49152-65535) on the uplink -> probe meter -> controller
    priority 100  VIP service (address, protocol, port) on the uplink -> the VIP's meter (the
                  gateway's, or its own) -> controller
    priority  10  other IPv4, IPv6 and ARP -> drop (counted by the rule's statistics)
    priority   0  table miss -> the gateway's meter -> controller, unbuffered (counted and
                  dropped there)

The meters are the flood guard's (``floodguard``); on a switch without meters the same rules
carry none.

Every rule carries a cookie in Lockstep's space (top 16 bits ``0x4C53``, "LS"), then a kind
(bits 40..47), so that a restarted controller deletes exactly its own rules of the kinds it
writes again (``delete_rewritten_flows``); per-flow rules (the FLOW kind: controller mode's and
switch mode's learned pins) also carry the backend id, so all flows of one backend are deleted
with one message.  Per-flow rules are kept over a reconnection: they send their flows on to the
same VM and idle out by themselves (``stale_flow_deletes`` for when the ports moved meanwhile).
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass

from ryu_app.core import openflow as of
from ryu_app.core.flowkey import ETH_IPV4, ETH_IPV6, Flow
from ryu_app.core.model import HASH_SRC_IP, PROTO_TCP, Vip, service_key

ETH_ARP = 0x0806
PROTO_ICMPV6 = 58
ND_SOLICITATION = 135
ARP_REQUEST, ARP_REPLY = 1, 2

COOKIE_TAG = 0x4C53 << 48
COOKIE_TAG_MASK = 0xFFFF << 48
COOKIE_KIND_SHIFT = 40
KIND_BASE = 1  # the gateway's and VIPs' own rules (this module)
KIND_FLOW = 2  # one flow's rule: controller mode's installed rules, switch mode's pins
KIND_SLOT = 3  # switch mode's slot rules (``switchrules``)
# What a (re)connected controller deletes and writes again; FLOW-kind rules are kept.
REWRITTEN_KINDS = (KIND_BASE, KIND_SLOT)
COOKIE_ALL_FLOWS_MASK = COOKIE_TAG_MASK | 0xFF << COOKIE_KIND_SHIFT
COOKIE_BACKEND_MASK = COOKIE_ALL_FLOWS_MASK | 0xFFFFFFFF
BASE_COOKIE = COOKIE_TAG | KIND_BASE << COOKIE_KIND_SHIFT

PRIORITY_ARP = 300
PRIORITY_FLOW = 200
PRIORITY_LOCAL = 150
PRIORITY_VIP = 100
PRIORITY_DROP = 10
PRIORITY_MISS = 0

SEND_FLOW_REM = of.OFPFF_SEND_FLOW_REM
PROBE_PORTS = (0xC000, 0xC000)  # tcp_dst value/mask: 49152-65535, the prober's source ports


def kind_cookie(kind: int) -> int:
    """The cookie of a rule kind with no backend: with ``COOKIE_ALL_FLOWS_MASK``, every rule
    of that kind."""
    return COOKIE_TAG | kind << COOKIE_KIND_SHIFT


def flow_cookie(backend_id: int) -> int:
    return COOKIE_TAG | KIND_FLOW << COOKIE_KIND_SHIFT | backend_id


def backend_of_cookie(cookie: int) -> int | None:
    if cookie & COOKIE_ALL_FLOWS_MASK != COOKIE_TAG | KIND_FLOW << COOKIE_KIND_SHIFT:
        return None
    return cookie & 0xFFFFFFFF


@dataclass(frozen=True)
class Ports:
    """The gateway bridge's port numbers, resolved from the configured names."""

    uplink: int
    tunnel: int


def _rule(match: bytes, actions: bytes, priority: int, meter_id: int = 0) -> bytes:
    """One of the gateway's own rules (not a flow's): base cookie, no timeout; its packets
    through meter ``meter_id`` first, if any (the flood guard's)."""
    return of.flow_mod(match, actions, priority=priority, cookie=BASE_COOKIE, meter_id=meter_id)


def _delete(
    cookie: int, cookie_mask: int, match: bytes | None = None, out_port: int = of.OFPP_ANY
) -> bytes:
    return of.flow_mod(
        of.match() if match is None else match,
        cookie=cookie,
        cookie_mask=cookie_mask,
        command=of.OFPFC_DELETE,
        table_id=of.OFPTT_ALL,
        out_port=out_port,
        out_group=of.OFPG_ANY,
    )


def delete_own_flows() -> bytes:
    """Delete every rule an earlier run of a Lockstep controller installed (all its cookies)."""
    return _delete(COOKIE_TAG, COOKIE_TAG_MASK)


def delete_rewritten_flows() -> list[bytes]:
    """Delete the rules of every kind a (re)connected controller writes again, one message per
    kind (``REWRITTEN_KINDS``); per-flow rules and pins stay and go on forwarding."""
    return [_delete(kind_cookie(kind), COOKIE_ALL_FLOWS_MASK) for kind in REWRITTEN_KINDS]


def stale_flow_deletes(ports: Ports, stale_uplinks, stale_tunnels) -> list[bytes]:
    """Delete the per-flow rules (and pins) that name a port number the pipeline no longer
    uses: those matching a stale uplink (``in_port``) or sending to a stale tunnel port
    (OpenFlow's ``out_port`` filter).  The current ports are never in either set."""
    flow_kind = kind_cookie(KIND_FLOW)
    uplinks = sorted(set(stale_uplinks) - {ports.uplink})
    tunnels = sorted(set(stale_tunnels) - {ports.tunnel})
    return [
        *(_delete(flow_kind, COOKIE_ALL_FLOWS_MASK, of.match(in_port=p)) for p in uplinks),
        *(_delete(flow_kind, COOKIE_ALL_FLOWS_MASK, out_port=p) for p in tunnels),
    ]


def delete_backend_flows(backend_id: int) -> bytes:
    """Delete every per-flow rule that sends to one backend."""
    return _delete(flow_cookie(backend_id), COOKIE_BACKEND_MASK)


def base_flows(
    addresses: tuple[str, ...], mac: str, ports: Ports, miss_meter: int = 0, probe_meter: int = 0
) -> list[bytes]:
    """Table miss, default drops, and the neighbour responder for each gateway address.  The
    miss goes through the clients' meter, neighbour solicitations through the probes'."""
    messages = [
        _rule(of.match(), of.to_controller(), PRIORITY_MISS, miss_meter),
        _rule(of.match(eth_type=ETH_IPV4), b"", PRIORITY_DROP),
        _rule(of.match(eth_type=ETH_IPV6), b"", PRIORITY_DROP),
        _rule(of.match(eth_type=ETH_ARP), b"", PRIORITY_DROP),
    ]
    for address in addresses:
        if ipaddress.ip_address(address).version == 4:
            messages.append(arp_responder(address, mac, ports.uplink))
        else:
            solicitation = of.match(
                in_port=ports.uplink,
                eth_type=ETH_IPV6,
                ip_proto=PROTO_ICMPV6,
                icmpv6_type=ND_SOLICITATION,
                ipv6_nd_target=address,
            )
            messages.append(_rule(solicitation, of.to_controller(), PRIORITY_ARP, probe_meter))
    return messages


def arp_responder(address: str, mac: str, uplink: int) -> bytes:
    """Turn an ARP request for ``address`` into the reply, in the switch (works while the
    controller is away, so the router keeps reaching a gateway whose controller restarts)."""
    request = of.match(in_port=uplink, eth_type=ETH_ARP, arp_op=ARP_REQUEST, arp_tpa=address)
    reply = (
        of.reg_move("eth_src", "eth_dst", 48)
        + of.set_field("eth_src", mac)
        + of.set_field("arp_op", ARP_REPLY)
        + of.reg_move("arp_sha", "arp_tha", 48)
        + of.reg_move("arp_spa", "arp_tpa", 32)
        + of.set_field("arp_sha", mac)
        + of.set_field("arp_spa", address)
        + of.output(of.OFPP_IN_PORT)
    )
    return _rule(request, reply, PRIORITY_ARP)


def _l3_fields(version: int, src: str | None, dst: str) -> dict:
    if version == 4:
        fields = {"eth_type": ETH_IPV4, "ipv4_dst": dst}
        if src is not None:
            fields["ipv4_src"] = src
    else:
        fields = {"eth_type": ETH_IPV6, "ipv6_dst": dst}
        if src is not None:
            fields["ipv6_src"] = src
    return fields


def _vip_match(vip: Vip, uplink: int) -> bytes:
    service = service_key(vip)
    proto = service.protocol
    version = ipaddress.ip_address(vip.address).version
    fields = {"in_port": uplink, **_l3_fields(version, None, vip.address), "ip_proto": proto}
    fields["tcp_dst" if proto == PROTO_TCP else "udp_dst"] = service.port
    return of.match(**fields)


def _probe_answer_matches(vip: Vip, addresses: tuple[str, ...], uplink: int) -> list[bytes]:
    """What an answer to one of this VIP's health probes looks like, per gateway address of
    the VIP's IP version (none for static backends: nothing probes them); nothing else
    addressed to the gateway reaches the controller."""
    check_port = service_key(vip).check_port
    if check_port is None:
        return []
    version = ipaddress.ip_address(vip.address).version
    return [
        of.match(
            in_port=uplink,
            **_l3_fields(version, vip.address, address),
            ip_proto=PROTO_TCP,
            tcp_src=check_port,
            tcp_dst=PROBE_PORTS,
        )
        for address in addresses
        if ipaddress.ip_address(address).version == version
    ]


def vip_flows(
    vip: Vip, addresses: tuple[str, ...], uplink: int, meter: int = 0, probe_meter: int = 0
) -> list[bytes]:
    """A VIP's rules: the punt of new connections (unbuffered: the packet rides along) through
    the flood guard's ``meter``, and the return of its probes' answers through the probes'
    own (``floodguard``: a client flood cannot starve them)."""
    punt = _rule(_vip_match(vip, uplink), of.to_controller(), PRIORITY_VIP, meter)
    return [punt] + [
        _rule(match, of.to_controller(), PRIORITY_LOCAL, probe_meter)
        for match in _probe_answer_matches(vip, addresses, uplink)
    ]


def remove_vip_flows(vip: Vip, addresses: tuple[str, ...], uplink: int) -> list[bytes]:
    """Delete exactly the rules ``vip_flows`` installed (strict: priority and match)."""
    rules = [(PRIORITY_VIP, _vip_match(vip, uplink))]
    rules += [(PRIORITY_LOCAL, m) for m in _probe_answer_matches(vip, addresses, uplink)]
    return [
        of.flow_mod(
            match,
            priority=priority,
            cookie=BASE_COOKIE,
            cookie_mask=COOKIE_ALL_FLOWS_MASK,
            command=of.OFPFC_DELETE_STRICT,
            out_port=of.OFPP_ANY,
            out_group=of.OFPG_ANY,
        )
        for priority, match in rules
    ]


@functools.lru_cache(maxsize=4096)
def backend_actions(mac: str, tunnel_ip: str, vni: int, tunnel_port: int) -> bytes:
    """The actions that send a packet to one backend: set the inner destination MAC, the
    tunnel destination and key, output to the tunnel port.  Encoded once per backend (cached):
    every new flow and every probe to it uses them."""
    return (
        of.set_field("eth_dst", mac)
        + of.set_field("tun_ipv4_dst", tunnel_ip)
        + of.set_field("tunnel_id", vni)
        + of.output(tunnel_port)
    )


def flow_rule(flow: Flow, vip: Vip, backend_id: int, actions: bytes, uplink: int) -> bytes:
    """A placed flow's rule: its whole 5-tuple, or the client-affinity key (src, dst, VIP
    port) of a ``src-ip`` VIP, sent to its backend (``actions``); it expires after the VIP's
    idle timeout and then tells the controller (flow-removed)."""
    match = of.flow_match(flow, uplink, vip.hash != HASH_SRC_IP)
    cookie = flow_cookie(backend_id)  # (by position: priority, cookie, idle timeout, flags)
    return of.flow_mod(match, actions, PRIORITY_FLOW, cookie, vip.idle_timeout, SEND_FLOW_REM)


TCP_SYN_FLAG = 0x002
NOT_SYN = (0, TCP_SYN_FLAG)  # tcp_flags value/mask: SYN clear


def duplicating_match(flow: Flow, uplink: int) -> bytes:
    """The match of a flow's duplicating rule (second chance, ``core.secondchance``): its
    5-tuple, TCP segments without SYN only, so that a new connection on the same 5-tuple (its
    SYN) comes to the controller instead of reaching two VMs."""
    version = 4 if flow.version == 4 else 6
    return of.match(
        in_port=uplink,
        eth_type=ETH_IPV4 if version == 4 else ETH_IPV6,
        ip_proto=PROTO_TCP,
        **{f"ipv{version}_src": flow.src, f"ipv{version}_dst": flow.dst},
        tcp_src=flow.src_port,
        tcp_dst=flow.dst_port,
        tcp_flags=NOT_SYN,
    )


def duplicating_rule(flow: Flow, vip: Vip, backend_id: int, actions: bytes, uplink: int) -> bytes:
    """A moved flow's rule under second chance's ``duplicate``: ``actions`` send each packet to
    the current owner and the earlier owners in turn; the cookie names the current owner (the
    flow's entry), the idle timeout and flow-removed are a flow rule's."""
    match = duplicating_match(flow, uplink)
    cookie = flow_cookie(backend_id)
    return of.flow_mod(match, actions, PRIORITY_FLOW, cookie, vip.idle_timeout, SEND_FLOW_REM)


def delete_duplicating_rule(flow: Flow, uplink: int) -> bytes:
    """Delete exactly one flow's duplicating rule (its flow now has a rule of one backend)."""
    return of.flow_mod(
        duplicating_match(flow, uplink),
        priority=PRIORITY_FLOW,
        command=of.OFPFC_DELETE_STRICT,
        out_port=of.OFPP_ANY,
        out_group=of.OFPG_ANY,
    )
