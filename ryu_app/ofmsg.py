"""OpenFlow 1.3 messages for a Lockstep gateway, built with ``datapath=None``.

Pure: nothing here sends; the app sets ``msg.datapath`` and sends.  Only this module (through
``compat``) touches the framework's message classes.

Table 0 of a gateway bridge:

    priority 300  ARP request for a gateway address on the uplink -> answered in the switch;
                  IPv6 neighbour solicitation for one -> controller (answered by packet-out)
    priority 200  one rule per placed flow -> set inner dst MAC, tun_dst, tunnel key; tunnel port
    priority 150  health probe answers (TCP from a VIP's check port to a gateway address and a
                  probe port, 49152-65535) on the uplink -> controller
    priority 100  VIP service (address, protocol, port) on the uplink -> controller
    priority  10  other IPv4, IPv6 and ARP -> drop (counted by the rule's statistics)
    priority   0  table miss -> controller, unbuffered (counted and dropped there)

Every rule carries a cookie in Lockstep's space (top 16 bits ``0x4C53``, "LS") so that a
restarted controller deletes exactly its own rules; per-flow rules also carry the backend id, so
all flows of one backend are deleted with one message.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ryu_app.compat import ofproto_v1_3 as ofp
from ryu_app.compat import ofproto_v1_3_parser as parser
from ryu_app.core.flowkey import ETH_IPV4, ETH_IPV6, Flow
from ryu_app.core.model import HASH_SRC_IP, PROTO_TCP, Backend, Vip, service_key

ETH_ARP = 0x0806
PROTO_ICMPV6 = 58
ND_SOLICITATION = 135

COOKIE_TAG = 0x4C53 << 48
COOKIE_TAG_MASK = 0xFFFF << 48
COOKIE_KIND_SHIFT = 40
KIND_BASE = 1
KIND_FLOW = 2
COOKIE_ALL_FLOWS_MASK = COOKIE_TAG_MASK | 0xFF << COOKIE_KIND_SHIFT
COOKIE_BACKEND_MASK = COOKIE_ALL_FLOWS_MASK | 0xFFFFFFFF

PRIORITY_ARP = 300
PRIORITY_FLOW = 200
PRIORITY_LOCAL = 150
PRIORITY_VIP = 100
PRIORITY_DROP = 10
PRIORITY_MISS = 0

BASE_COOKIE = COOKIE_TAG | KIND_BASE << COOKIE_KIND_SHIFT

# Why the switch removed a rule (flow-removed ``reason``).
REMOVED_IDLE = ofp.OFPRR_IDLE_TIMEOUT
REMOVED_HARD = ofp.OFPRR_HARD_TIMEOUT
REMOVED_DELETE = ofp.OFPRR_DELETE


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


def _flow_mod(match, actions=(), priority=0, cookie=BASE_COOKIE, idle=0, flags=0):
    instructions = []
    if actions:
        instructions = [parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, list(actions))]
    return parser.OFPFlowMod(
        datapath=None,
        cookie=cookie,
        command=ofp.OFPFC_ADD,
        idle_timeout=idle,
        priority=priority,
        buffer_id=ofp.OFP_NO_BUFFER,
        flags=flags,
        match=match,
        instructions=instructions,
    )


def delete_own_flows():
    """Delete every rule an earlier run of a Lockstep controller installed (all its cookies)."""
    return parser.OFPFlowMod(
        datapath=None,
        cookie=COOKIE_TAG,
        cookie_mask=COOKIE_TAG_MASK,
        table_id=ofp.OFPTT_ALL,
        command=ofp.OFPFC_DELETE,
        out_port=ofp.OFPP_ANY,
        out_group=ofp.OFPG_ANY,
    )


def delete_backend_flows(backend_id: int):
    """Delete every per-flow rule that sends to one backend."""
    return parser.OFPFlowMod(
        datapath=None,
        cookie=flow_cookie(backend_id),
        cookie_mask=COOKIE_BACKEND_MASK,
        table_id=ofp.OFPTT_ALL,
        command=ofp.OFPFC_DELETE,
        out_port=ofp.OFPP_ANY,
        out_group=ofp.OFPG_ANY,
    )


def port_desc_request():
    return parser.OFPPortDescStatsRequest(None, 0)


def to_controller():
    return parser.OFPActionOutput(ofp.OFPP_CONTROLLER, ofp.OFPCML_NO_BUFFER)


def base_flows(addresses: tuple[str, ...], mac: str, ports: Ports) -> list:
    """Table miss, default drops, and the neighbour responder for each gateway address."""
    messages = [
        _flow_mod(parser.OFPMatch(), [to_controller()], PRIORITY_MISS),
        _flow_mod(parser.OFPMatch(eth_type=ETH_IPV4), [], PRIORITY_DROP),
        _flow_mod(parser.OFPMatch(eth_type=ETH_IPV6), [], PRIORITY_DROP),
        _flow_mod(parser.OFPMatch(eth_type=ETH_ARP), [], PRIORITY_DROP),
    ]
    for address in addresses:
        version = ipaddress.ip_address(address).version
        if version == 4:
            messages.append(arp_responder(address, mac, ports.uplink))
        else:
            match = parser.OFPMatch(
                in_port=ports.uplink,
                eth_type=ETH_IPV6,
                ip_proto=PROTO_ICMPV6,
                icmpv6_type=ND_SOLICITATION,
                ipv6_nd_target=address,
            )
            messages.append(_flow_mod(match, [to_controller()], PRIORITY_ARP))
    return messages


def arp_responder(address: str, mac: str, uplink: int):
    """Turn an ARP request for ``address`` into the reply, in the switch (works while the
    controller is away, so the router keeps reaching a gateway whose controller restarts)."""
    match = parser.OFPMatch(in_port=uplink, eth_type=ETH_ARP, arp_op=1, arp_tpa=address)
    actions = [
        parser.NXActionRegMove(src_field="eth_src", dst_field="eth_dst", n_bits=48),
        parser.OFPActionSetField(eth_src=mac),
        parser.OFPActionSetField(arp_op=2),
        parser.NXActionRegMove(src_field="arp_sha", dst_field="arp_tha", n_bits=48),
        parser.NXActionRegMove(src_field="arp_spa", dst_field="arp_tpa", n_bits=32),
        parser.OFPActionSetField(arp_sha=mac),
        parser.OFPActionSetField(arp_spa=address),
        parser.OFPActionOutput(ofp.OFPP_IN_PORT),
    ]
    return _flow_mod(match, actions, PRIORITY_ARP)


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


def _vip_match(vip: Vip, uplink: int):
    service = service_key(vip)
    proto = service.protocol
    version = ipaddress.ip_address(vip.address).version
    fields = {"in_port": uplink, **_l3_fields(version, None, vip.address), "ip_proto": proto}
    fields["tcp_dst" if proto == PROTO_TCP else "udp_dst"] = service.port
    return parser.OFPMatch(**fields)


def vip_punt(vip: Vip, uplink: int):
    """New connections to a VIP go to the controller (unbuffered: the packet rides along)."""
    return _flow_mod(_vip_match(vip, uplink), [to_controller()], PRIORITY_VIP)


PROBE_PORTS = (0xC000, 0xC000)  # tcp_dst value/mask: 49152-65535, the prober's source ports


def _probe_answer_matches(vip: Vip, addresses: tuple[str, ...], uplink: int) -> list:
    """What an answer to one of this VIP's health probes looks like, per gateway address of
    the VIP's IP version (none for static backends: nothing probes them); nothing else
    addressed to the gateway reaches the controller."""
    check_port = service_key(vip).check_port
    if check_port is None:
        return []
    version = ipaddress.ip_address(vip.address).version
    matches = []
    for address in addresses:
        if ipaddress.ip_address(address).version != version:
            continue
        matches.append(
            parser.OFPMatch(
                in_port=uplink,
                **_l3_fields(version, vip.address, address),
                ip_proto=PROTO_TCP,
                tcp_src=check_port,
                tcp_dst=PROBE_PORTS,
            )
        )
    return matches


def vip_flows(vip: Vip, addresses: tuple[str, ...], uplink: int) -> list:
    """A VIP's rules: the punt of new connections and the return of its probes' answers."""
    return [vip_punt(vip, uplink)] + [
        _flow_mod(match, [to_controller()], PRIORITY_LOCAL)
        for match in _probe_answer_matches(vip, addresses, uplink)
    ]


def remove_vip_flows(vip: Vip, addresses: tuple[str, ...], uplink: int) -> list:
    rules = [(PRIORITY_VIP, _vip_match(vip, uplink))]
    rules += [(PRIORITY_LOCAL, m) for m in _probe_answer_matches(vip, addresses, uplink)]
    return [
        parser.OFPFlowMod(
            datapath=None,
            cookie=BASE_COOKIE,
            cookie_mask=COOKIE_ALL_FLOWS_MASK,
            command=ofp.OFPFC_DELETE_STRICT,
            priority=priority,
            out_port=ofp.OFPP_ANY,
            out_group=ofp.OFPG_ANY,
            match=match,
        )
        for priority, match in rules
    ]


def backend_actions(vip: Vip, backend: Backend, tunnel_port: int) -> list:
    return [
        parser.OFPActionSetField(eth_dst=backend.mac),
        parser.OFPActionSetField(tun_ipv4_dst=backend.tunnel_ip),
        parser.OFPActionSetField(tunnel_id=vip.vni),
        parser.OFPActionOutput(tunnel_port),
    ]


def flow_match(flow: Flow, vip: Vip, uplink: int):
    """The rule's match: the whole 5-tuple, or the client-affinity key (src, dst, VIP port)."""
    src = str(ipaddress.ip_address(flow.src))
    dst = str(ipaddress.ip_address(flow.dst))
    fields = {"in_port": uplink, **_l3_fields(flow.version, src, dst), "ip_proto": flow.proto}
    tcp = flow.proto == PROTO_TCP
    fields["tcp_dst" if tcp else "udp_dst"] = flow.dst_port
    if vip.hash != HASH_SRC_IP:
        fields["tcp_src" if tcp else "udp_src"] = flow.src_port
    return parser.OFPMatch(**fields)


def flow_rule(flow: Flow, vip: Vip, backend: Backend, backend_id: int, ports: Ports):
    return _flow_mod(
        flow_match(flow, vip, ports.uplink),
        backend_actions(vip, backend, ports.tunnel),
        PRIORITY_FLOW,
        cookie=flow_cookie(backend_id),
        idle=vip.idle_timeout,
        flags=ofp.OFPFF_SEND_FLOW_REM,
    )


def packet_out(in_port: int, actions: list, buffer_id: int, data: bytes):
    """Send the packet that caused a packet-in on with ``actions`` (buffered or not)."""
    buffered = buffer_id != ofp.OFP_NO_BUFFER
    return parser.OFPPacketOut(
        datapath=None,
        buffer_id=buffer_id,
        in_port=in_port,
        actions=actions,
        data=None if buffered else data,
    )


def controller_packet_out(actions: list, data: bytes):
    """A frame the controller wrote itself (health probe, neighbour advertisement)."""
    return packet_out(ofp.OFPP_CONTROLLER, actions, ofp.OFP_NO_BUFFER, data)


def output(port: int):
    return parser.OFPActionOutput(port)
