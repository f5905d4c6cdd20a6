"""bench_scale's pure parts: the deployment it measures, and the arithmetic of its figures.

The deployment: ``vips`` TCP VIPs, each over the same ``backends`` VMs (so one VM, ``DEAD``, is
a backend of every VIP), each VIP with its own weights (VIP i gives backend i % backends a
weight of 2 + i // backends, the others 1), so that no two tables are alike and the balancer's
table cache shares none: a health change of ``DEAD`` asks for ``vips`` distinct builds.  VIP
addresses run 10.0.0.1, 10.0.0.2, ... 10.0.0.254, 10.0.1.1, ... (no .0 or .255).

No module here imports the code measured: ``bench_scale`` runs two revisions' code, each in a
process of its own, and reads this from the working tree.
"""

from __future__ import annotations

import math
import statistics

TABLE_SIZE = 65537
SERVICE_PORT = 80
GATEWAY_ADDRESS = "10.255.255.1"
HOSTS_PER_SUBNET = 254


def vip_address(index: int) -> str:
    """VIP number ``index`` (from 0): 254 per /24, from 10.0.0.1 on."""
    subnet, host = divmod(index, HOSTS_PER_SUBNET)
    if subnet >= 256 * 255:
        raise ValueError(f"VIP number {index}: out of 10.0.0.0/8")
    return f"10.{subnet // 256}.{subnet % 256}.{host + 1}"


def backend(index: int) -> dict:
    """VM number ``index`` (from 0): its name, tunnel endpoint and MAC."""
    return {
        "name": f"vm{index + 1}",
        "tunnel_ip": f"172.16.{index // 250}.{index % 250 + 1}",
        "mac": f"02:00:00:01:{index >> 8:02x}:{index & 0xFF:02x}",
    }


DEAD = backend(0)["name"]  # the VM that fails: a backend of every VIP


def weights(vip_index: int, backends: int) -> list[int]:
    """VIP ``vip_index``'s weights: backend ``vip_index % backends`` weighs
    ``2 + vip_index // backends``, the others 1 (distinct tables, up to 32,767 VIPs)."""
    extra, heavier = divmod(vip_index, backends)
    return [2 + extra if number == heavier else 1 for number in range(backends)]


def vips_data(vips: int, backends: int, interval: float = 60.0) -> list[dict]:
    """The VIPs as the configuration file has them (TCP health checks every ``interval``)."""
    health = {"type": "tcp", "interval": interval, "timeout": 1.0, "rise": 1, "fall": 1}
    return [
        {
            "name": f"vip{index + 1}",
            "address": vip_address(index),
            "port": SERVICE_PORT,
            "protocol": "tcp",
            "table_size": TABLE_SIZE,
            "vni": 100,
            "health": health,
            "backends": [
                {**backend(number), "weight": weight}
                for number, weight in enumerate(weights(index, backends))
            ],
        }
        for index in range(vips)
    ]


def deployment(vips: int, backends: int, openflow: str, rest: str, state_file: str) -> dict:
    """One gateway (the fake switch's port names), ``vips`` x ``backends``, no flood guard."""
    gateway = {
        "name": "gw1",
        "dpid": 1,
        "addresses": [GATEWAY_ADDRESS],
        "mac": "02:00:00:00:00:01",
        "uplink_port": "uplink",
        "tunnel_port": "tunnel",
        "tunnel_ip": "192.168.100.1",
        "openflow": openflow,
        "rest": rest,
        "state_file": state_file,
        "flood_guard": {"rate": 0},
    }
    return {"version": 1, "vips": vips_data(vips, backends), "gateways": [gateway]}


# ---- figures ------------------------------------------------------------------------------------


def percentile(sorted_values: list[float], share: float) -> float | None:
    """The ``share`` quantile (0..1) of already sorted values, nearest rank; None if empty."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(share * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def per_unit(small: tuple[int, float], large: tuple[int, float]) -> float | None:
    """Bytes per unit from two (units, bytes) measurements: the slope between them; None if
    the sizes are the same."""
    (units_a, bytes_a), (units_b, bytes_b) = small, large
    if units_a == units_b:
        return None
    return (bytes_b - bytes_a) / (units_b - units_a)


def tick_counts(send_times: list[float], start: float, end: float, tick: float) -> list[int]:
    """How many sends fell in each ``tick`` from ``start`` to ``end`` (empty ticks too)."""
    ticks = max(1, math.ceil((end - start) / tick - 1e-9))
    counts = [0] * ticks
    for at in send_times:
        if start <= at < end:
            counts[min(int((at - start) / tick), ticks - 1)] += 1
    return counts


def burstiness(counts: list[int]) -> dict:
    """Max sends in one tick against the mean: 1 is perfectly even; a burst is many times it."""
    mean = statistics.fmean(counts) if counts else 0.0
    peak = max(counts, default=0)
    return {
        "max_per_tick": peak,
        "mean_per_tick": mean,
        "peak_over_mean": peak / mean if mean else None,
    }


def series_count(metrics_text: str) -> int:
    """Samples in a Prometheus text exposition: lines that are not comments or blank."""
    return sum(1 for line in metrics_text.splitlines() if line and not line.startswith("#"))
