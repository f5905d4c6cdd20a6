"""The rebuild phase's set-up (``rebuild.py`` runs it): one gateway and ``vips`` TCP VIPs
(10.0.0.1, 10.0.0.2, ..., port 80), each with the same ``backends`` VMs (distinct tunnel
endpoints and MACs, table size 65537) checked by TCP health probes; ``DEAD`` is the VM that dies,
a backend of every VIP.

VIPs with the same healthy set and weights share one Maglev table (``balancer.TableCache``),
so 100 identical VIPs would cost a single build.  To rebuild 100 tables, as the target says,
VIP number i gives backend number i a weight of 2 (``--shared-tables``: all weights 1; with
more VIPs than backends, 3, 4, ... on the next rounds).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.switchwire import DPID, GATEWAY_MAC, TUNNEL, UPLINK

GATEWAY_ADDRESS = "10.0.1.1"
SERVICE_PORT = 80
VNI = 100
TABLE_SIZE = 65537
MAX_VIPS, MAX_BACKENDS = 250, 1000
RISE = 1  # the health check's rise
RETIRE_GRACE_MAX = 30.0


@dataclass(frozen=True)
class RebuildPlan:
    vips: int = 100
    backends: int = 100
    interval: float = 10.0  # health check: seconds between probes of one backend of one VIP
    timeout: float = 1.0
    fall: int = 2
    # New flows per second, spread over the VIPs; None: half the sustained rate measured on
    # this controller (100 VIPs, probes running) just before, at most ``rebuild.rate_cap``.
    rate: float | None = None
    shared_tables: bool = False
    baseline: float = 3.0  # seconds of measured load before the kill

    @property
    def probes_per_s(self) -> float:
        return self.vips * self.backends / self.interval

    @property
    def detection_s(self) -> float:
        """Longest time from the kill to a VIP marking the VM down."""
        return self.interval * self.fall + self.timeout

    @property
    def grace_s(self) -> float:
        """How long a VIP keeps the rules of the flows it placed on the VM after marking it
        down: rise x interval + timeout, at most 30 s (the controller's rule,
        ``serving.retire_grace``, restated here so that the phase checks the controller
        against it)."""
        return min(RISE * self.interval + self.timeout, RETIRE_GRACE_MAX)

    def services(self) -> list[tuple[str, int]]:
        return [(vip_address(index), SERVICE_PORT) for index in range(self.vips)]


def vip_address(index: int) -> str:
    return f"10.0.0.{index + 1}"


def vip_name(index: int) -> str:
    return f"vip{index + 1}"


def backend(index: int) -> dict:
    """VM number ``index`` (from 0): its name, tunnel endpoint and MAC."""
    return {
        "name": f"vm{index + 1}",
        "tunnel_ip": f"172.16.{index // 250}.{index % 250 + 1}",
        "mac": f"02:00:00:01:{index >> 8:02x}:{index & 0xFF:02x}",
    }


DEAD = backend(0)  # the VM that dies: a backend of every VIP


def deployment(plan: RebuildPlan, openflow_port: int, rest_port: int, workdir: Path) -> dict:
    """One gateway (the fake switch's dpid and port names) and ``plan.vips`` VIPs."""
    health = {
        "type": "tcp",
        "interval": plan.interval,
        "timeout": plan.timeout,
        "rise": RISE,
        "fall": plan.fall,
    }
    vips = []
    for index in range(plan.vips):
        # VIP i: backend i % backends weighs 2 + i // backends, the others 1 (distinct tables).
        extra, heavier = divmod(index, plan.backends)
        backends = [
            {**backend(number), "weight": 2 + extra if number == heavier else 1}
            for number in range(plan.backends)
        ]
        if plan.shared_tables:
            backends = [{**each, "weight": 1} for each in backends]
        vips.append(
            {
                "name": vip_name(index),
                "address": vip_address(index),
                "port": SERVICE_PORT,
                "protocol": "tcp",
                "table_size": TABLE_SIZE,
                "vni": VNI,
                "health": health,
                "backends": backends,
            }
        )
    gateway = {
        "name": "gw1",
        "dpid": DPID,
        "addresses": [GATEWAY_ADDRESS],
        "mac": ":".join(f"{byte:02x}" for byte in GATEWAY_MAC),
        "uplink_port": UPLINK[1],
        "tunnel_port": TUNNEL[1],
        "tunnel_ip": "192.168.100.1",
        "openflow": f"127.0.0.1:{openflow_port}",
        "rest": f"127.0.0.1:{rest_port}",
        "state_file": str(workdir / "lockstep-rebuild-state.json"),
        # No flood guard: the phase measures rebuilds, and the guard's default budget (3,000
        # new connections/s) would drop part of the load and stall the closed loop that sets it.
        "flood_guard": {"rate": 0},
    }
    return {"version": 1, "vips": vips, "gateways": [gateway]}
