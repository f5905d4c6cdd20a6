"""What a gateway counts on its packet path and of its switch's reports: plain integers,
cheap on the hot path, read by the API's snapshots (``/metrics``, ``/v1/status``)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class GatewayCounters:
    packet_ins: int = 0
    malformed: Counter = field(default_factory=Counter)  # by FrameError reason
    foreign_port: int = 0  # VIP-looking traffic that did not come from the uplink
    flows_installed: int = 0
    packet_outs: int = 0
    flows_removed: int = 0
    reinstalls: int = 0
    probe_replies: int = 0  # TCP segments addressed to the gateway (answers to probes)
    neighbour_answers: int = 0
    table_build_failures: int = 0  # Maglev tables whose build raised (each is retried)
    switch_errors: Counter = field(default_factory=Counter)  # (type, code) -> errors received
