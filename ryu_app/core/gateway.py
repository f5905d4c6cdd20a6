"""One gateway switch's controller logic, free of the framework's event loop.

Each method takes ``now`` and the event's data and returns the OpenFlow messages to send; the
os-ken app (``ryu_app.app``) only decodes events and sends what comes back.  Faucet's valve is
the model: the app is a shim, this is where decisions live and where unit tests drive them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from ryu_app import ofmsg
from ryu_app.core.balancer import Balancer, TableRequest
from ryu_app.core.flowkey import FrameError, parse_frame, table_key
from topology.deployment import Gateway, Vip

# A per-flow rule installed less than this long ago is taken to be in the switch: repeated
# packet-ins of a new connection (2-5 are normal) only get a packet-out.  A packet-in for a
# known flow after that means the rule is gone (switch reconnected, rule lost): install again.
RECENT_INSTALL_SECONDS = 2.0


def default_mac(dpid: int) -> str:
    """A locally administered MAC derived from the datapath id."""
    low = dpid & 0xFFFFFFFFFF
    return "02:" + ":".join(f"{(low >> shift) & 0xFF:02x}" for shift in range(32, -1, -8))


@dataclass
class GatewayCounters:
    packet_ins: int = 0
    malformed: Counter = field(default_factory=Counter)  # by FrameError reason
    foreign_port: int = 0  # VIP-looking traffic that did not come from the uplink
    flows_installed: int = 0
    packet_outs: int = 0
    flows_removed: int = 0
    reinstalls: int = 0


class GatewayCore:
    def __init__(self, gateway: Gateway, vips: list[Vip], balancer: Balancer | None = None):
        self.gateway = gateway
        self.mac = gateway.mac or default_mac(gateway.dpid)
        self.balancer = balancer or Balancer()
        self.counters = GatewayCounters()
        self.ports: ofmsg.Ports | None = None
        self.missing_ports: list[str] = []
        self._recent: dict[bytes, float] = {}
        self.pending: list[TableRequest] = []
        for vip in vips:
            self.pending += self.balancer.set_vip(vip)

    # ---- switch life cycle ---------------------------------------------------------------

    def on_connect(self, now: float) -> list:
        """A switch connected: forget what it had, ask for its ports."""
        self.ports = None
        self._recent.clear()
        return [ofmsg.delete_own_flows(), ofmsg.port_desc_request()]

    def on_ports(self, port_numbers: dict[str, int], now: float) -> list:
        """Port names -> numbers arrived: install the base pipeline and one punt per VIP."""
        wanted = {"uplink": self.gateway.uplink_port, "tunnel": self.gateway.tunnel_port}
        self.missing_ports = [name for name in wanted.values() if name not in port_numbers]
        if self.missing_ports:
            return []
        self.ports = ofmsg.Ports(port_numbers[wanted["uplink"]], port_numbers[wanted["tunnel"]])
        messages = ofmsg.base_flows(self.gateway.addresses, self.mac, self.ports)
        for state in self.balancer.vips.values():
            messages.append(ofmsg.vip_punt(state.vip, self.ports.uplink))
        return messages

    # ---- the packet path -----------------------------------------------------------------

    def on_packet_in(self, in_port: int, buffer_id: int, data: bytes, now: float) -> list:
        self.counters.packet_ins += 1
        ports = self.ports
        if ports is None:
            return []
        try:
            flow = parse_frame(data)
        except FrameError as error:
            self.counters.malformed[error.reason] += 1
            return []
        if in_port != ports.uplink:
            self.counters.foreign_port += 1
            return []
        decision = self.balancer.pick(flow, now)
        if decision is None:
            return []
        vip, backend = decision.vip, decision.backend
        messages = []
        key = table_key(flow, vip.hash)
        installed_at = self._recent.get(key)
        if installed_at is None or now - installed_at > RECENT_INSTALL_SECONDS:
            if decision.from_table:
                self.counters.reinstalls += 1
            messages.append(ofmsg.flow_rule(flow, vip, backend, decision.backend_id, ports))
            self.counters.flows_installed += 1
            self._remember(key, now)
        actions = ofmsg.backend_actions(vip, backend, ports.tunnel)
        messages.append(ofmsg.packet_out(in_port, actions, buffer_id, data))
        self.counters.packet_outs += 1
        return messages

    def _remember(self, key: bytes, now: float) -> None:
        recent = self._recent
        recent.pop(key, None)
        recent[key] = now
        # Oldest first (insertion order): drop what is no longer recent, a few at a time.
        for _ in range(4):
            oldest = next(iter(recent))
            if now - recent[oldest] <= RECENT_INSTALL_SECONDS:
                break
            del recent[oldest]

    def on_flow_removed(self, cookie: int, match, now: float) -> list:
        """The switch expired a per-flow rule: forget the flow here too."""
        if ofmsg.backend_of_cookie(cookie) is None:
            return []
        flow = ofmsg.flow_from_removed_match(match)
        state = self.balancer.match(flow) if flow else None
        if state is None:
            return []
        key = table_key(flow, state.vip.hash)
        self.balancer.flows.remove(key)
        self._recent.pop(key, None)
        self.counters.flows_removed += 1
        return []

    # ---- health --------------------------------------------------------------------------

    def set_health(self, vip_name: str, backend_name: str, healthy: bool) -> list:
        """This gateway's own verdict on a backend.  Down: its rules go from the switch now,
        its entries from the table; the rebuilt Maglev table is requested in ``pending``."""
        state = self.balancer.vips[vip_name]
        self.pending += self.balancer.set_health(vip_name, backend_name, healthy)
        if healthy or self.ports is None:
            return []
        return [ofmsg.delete_backend_flows(state.backend_ids[backend_name])]

    def take_pending(self) -> list[TableRequest]:
        pending, self.pending = self.pending, []
        return pending
