"""The packets the gateway sends in its own name, as packet-outs: its health probes (through
the tunnel, as a client's packet to the backend would go) and its answers to IPv6 neighbour
solicitations for its own addresses (IPv4 ARP is answered by the switch).  Pure.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING

from ryu_app.core import openflow as of
from ryu_app.core.packets import mac_bytes, neighbour_advertisement, parse_solicitation
from ryu_app.core.pipeline import backend_actions

if TYPE_CHECKING:
    from ryu_app.core.balancer import VipState
    from ryu_app.core.prober import Send


def neighbour_answer(in_port: int, data: bytes, own: Collection[bytes], mac: str) -> bytes | None:
    """The packet-out answering ``data`` if it is a neighbour solicitation for one of the
    gateway's addresses (``own``, packed), else None."""
    solicitation = parse_solicitation(data)
    if solicitation is None or solicitation.target not in own:
        return None
    frame = neighbour_advertisement(solicitation, mac_bytes(mac))
    return of.controller_packet_out(of.output(in_port), frame)


def probe_packets(sends: list[Send], vips: Mapping[str, VipState], tunnel: int) -> list[bytes]:
    """The packet-outs of the prober's ``sends``, each to its backend through the tunnel port;
    a probe of a VIP or backend that is gone meanwhile is left out."""
    messages = []
    for send in sends:
        state = vips.get(send.vip)
        backend = state.vip.backend(send.backend) if state else None
        if backend is None:
            continue
        actions = backend_actions(backend.mac, backend.tunnel_ip, state.vip.vni, tunnel)
        messages.append(of.controller_packet_out(actions, send.frame))
    return messages
