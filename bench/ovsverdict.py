"""A step of ``bench/bench_ovs.py`` in figures (``step_figures``: flat, for the table and the
JSON line, from the counters at both ends) and the verdict that names its bottleneck
(``verdict``).  Pure: tested on made-up figures.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from bench.ovscounters import COVERAGE

# Verdict thresholds.
LOSS_OK_PCT = 2.0  # less lost than this, after the queues drained, is keeping up
KEPT_UP_RATIO = 0.9  # ... if this share also arrived while offering (no growing backlog)
SATURATED_CORES = 0.85  # a single-threaded component wanting this much CPU is saturated
OFFERED_SHORT = 0.9  # hping3 offered less than this share of the target
OTHER_LOAD_WARNING = 0.15  # cores busy outside this benchmark's processes
QUEUE_BACKLOG_BYTES = 256 * 1024  # unread at the controller: ~2,000 packet-ins waiting
REVALIDATORS_BUSY = 0.3  # cores: every new rule makes them re-check every datapath flow
FULL_BATCH = 28  # packets per receive call (NETDEV_MAX_BURST is 32): the loop is the limit
LABELS = {
    "none": "none",
    "generator": "generator",
    "controller": "controller",
    "ovs": "OVS upcalls",
    "machine": "machine",
    "unclear": "unclear",
}


@dataclass
class Window:
    """What a step measured while it offered its rate, besides the two snapshots."""

    seconds: float
    delivered: int  # SYNs OVS sent to the VMs meanwhile
    drain_s: float  # how long its queues took to drain afterwards
    queue_max_bytes: int  # the controller's largest backlog
    cpu: dict[str, float]  # cores per role


def step_figures(rate, lanes, interval, before: dict, after: dict, window: Window) -> dict:
    """The step's figures (flat, for the table and the JSON) from its two snapshots."""
    seconds, cpu = window.seconds, window.cpu

    def delta(section: str, key: str) -> int:
        return round(after[section].get(key, 0) - before[section].get(key, 0))

    offered = after["offered"] - before["offered"]
    delivered = sum(after["vm"][vm] - before["vm"][vm] for vm in after["vm"])
    ovs_received = delta("pmd", "packets received")
    packet_ins = delta("metrics", "packet_ins_total")
    packet_outs = delta("metrics", "packet_outs_total")
    figures = {
        "target_per_s": rate or None,
        "lanes": lanes,
        "interval_us": interval,
        "seconds": round(seconds, 2),
        "offered": offered,
        "offered_per_s": round(offered / seconds),
        "veth_dropped": after["veth_dropped"] - before["veth_dropped"],
        "ovs_received": ovs_received,
        "upcalls": delta("pmd", "miss with success upcall"),
        "upcalls_failed": delta("pmd", "miss with failed upcall"),
        "packet_ins": packet_ins,
        "packet_ins_per_s": round(packet_ins / seconds),
        "flows_installed": delta("metrics", "flows_installed_total"),
        "packet_outs": packet_outs,
        "rules_added": after["rules"] - before["rules"],
        "rules_total": after["all_rules"],
        # Packets OVS credits to per-flow rules: its revalidators re-translate the datapath
        # flow a SYN left and credit its stats to the new rule; not repeated SYNs.
        "rule_packets": after["rule_packets"] - before["rule_packets"],
        # Packet-ins of flows the controller had already placed: 0 when every SYN is a new flow.
        "flow_table_hits": delta("metrics", "flow_table_hits_total"),
        "delivered_in_window": window.delivered,
        "conn_per_s": round(window.delivered / seconds),
        "delivered": delivered,
        "per_vm": {vm: after["vm"][vm] - before["vm"][vm] for vm in after["vm"]},
        # (A health probe reaching a VM can make ``delivered`` exceed ``offered`` by one.)
        "loss_pct": max(0.0, round(100 * (1 - delivered / offered), 2)) if offered else 0.0,
        "drain_s": round(window.drain_s, 1),
        "queue_max_bytes": window.queue_max_bytes,
        # Where the SYNs that did not arrive were lost, stage by stage.
        "lost_intake": max(0, offered - ovs_received),  # never read by OVS from the uplink
        "lost_to_controller": max(0, ovs_received - packet_ins),
        "lost_at_controller": max(0, packet_ins - packet_outs),
        "lost_delivery": max(0, packet_outs - delivered),
        "datapath_flows": after["upcall"].get("current", 0),
        "datapath_flows_max": after["upcall"].get("max", 0),
        "datapath_flow_limit": after["upcall"].get("limit", 0),
        "revalidator_dump_ms": after["upcall"].get("dump_ms", 0),
        "controller_errors": delta("metrics", "handler_errors_total"),
        "controller_flow_entries": round(after["metrics"].get("flow_table_entries", 0)),
    }
    figures.update({f"ovs_{name}": delta("coverage", name) for name in COVERAGE})
    # The main thread reads at most 32 packets from a port per pass of its loop: full batches
    # mean that loop, not the socket, set the intake.
    receives = figures["ovs_netdev_received"]
    figures["ovs_packets_per_receive"] = round(ovs_received / receives, 1) if receives else 0.0
    figures.update({f"cpu_{name}": round(value, 2) for name, value in cpu.items()})
    figures["bottleneck"], figures["verdict"] = verdict(figures, os.cpu_count() or 1)
    return figures


def verdict(f: dict, cores: int) -> tuple[str, str]:
    """The step's bottleneck, as (key of LABELS, one line saying why).

    The gateway kept up when less than LOSS_OK_PCT of the SYNs were lost once the queues had
    drained and KEPT_UP_RATIO of them arrived while they were offered (no growing backlog);
    then only the generator can fall short (hping3 offered under OFFERED_SHORT of the target).
    Otherwise each component's signs are collected: the controller's (CPU wanted near a whole
    core -- it is Python, one core at most --, packet-ins dropped in OVS's queue to it because
    it reads too slowly (``rconn_overflow``), a backlog of unread bytes on its socket) and
    OVS's (its main thread, which polls the veths, runs every upcall and handles all OpenFlow,
    wanting near a whole core; SYNs it never read from the uplink; packet-ins dropped in its
    own queue (``packet_in_overflow``); failed upcalls; the datapath flow limit hit; full
    32-packet batches read from the uplink, i.e. its loop passes too slowly).  "Wanted"
    is time on a CPU plus time runnable but waiting for one: on a small machine the processes
    starve each other before any gets a whole core.  The component with signs that lost more
    SYNs at its stages is named; else the machine, if every core was busy.
    """
    target, offered = f["target_per_s"], f["offered_per_s"]
    short = bool(target) and offered < OFFERED_SHORT * target
    generator = f"hping3 offered {offered:,} of {target or 0:,}/s ({f['cpu_hping3']:.2f} cores)"
    lost = f"{f['loss_pct']:.1f}% lost"
    if f["loss_pct"] < LOSS_OK_PCT and f["conn_per_s"] >= KEPT_UP_RATIO * offered:
        if short:
            return "generator", f"{generator}; the gateway kept up ({lost})"
        return "none", f"kept up ({lost}, the queues drained in {f['drain_s']:g} s)"
    controller, ovs = [], []
    if f["cpu_controller"] + f["cpu_controller_wait"] >= SATURATED_CORES:
        controller.append(f"it wanted a whole core ({busy(f, 'controller')})")
    if f["ovs_rconn_overflow"]:
        controller.append(f"{f['ovs_rconn_overflow']:,} packet-ins dropped in OVS's queue to it")
    if f["queue_max_bytes"] >= QUEUE_BACKLOG_BYTES:
        controller.append(f"up to {f['queue_max_bytes'] // 1024:,} KiB unread on its socket")
    if f["cpu_ovs_main"] + f["cpu_ovs_main_wait"] >= SATURATED_CORES:
        ovs.append(f"its main thread wanted a whole core ({busy(f, 'ovs_main')})")
    if f["lost_intake"] > 0.01 * f["offered"]:
        ovs.append(f"{f['lost_intake']:,} SYNs never read from the uplink")
        if f["ovs_packets_per_receive"] >= FULL_BATCH:
            ovs.append(f"it read {f['ovs_packets_per_receive']:g} packets per pass of its loop")
    if f["ovs_packet_in_overflow"]:
        ovs.append(f"{f['ovs_packet_in_overflow']:,} packet-ins dropped in its own queue")
    if f["upcalls_failed"]:
        ovs.append(f"{f['upcalls_failed']:,} failed upcalls")
    if f["ovs_upcall_flow_limit_hit"]:
        ovs.append(f"datapath flow limit hit {f['ovs_upcall_flow_limit_hit']:,} times")
    if ovs and f["cpu_ovs_revalidators"] >= REVALIDATORS_BUSY:
        ovs.append(f"its revalidators {f['cpu_ovs_revalidators']:.2f} cores")
    controller_lost = f["ovs_rconn_overflow"] + f["lost_at_controller"]
    ovs_lost = (
        f["lost_intake"]
        + max(0, f["lost_to_controller"] - f["ovs_rconn_overflow"])
        + f["lost_delivery"]
    )
    if controller and (not ovs or controller_lost >= ovs_lost):
        name, signs = "controller", controller
    elif ovs:
        name, signs = "ovs", ovs
    elif f["cpu_machine"] >= 0.9 * cores:
        name, signs = "machine", [f"all {cores} cores busy ({f['cpu_machine']:.2f})"]
    else:
        name, signs = "unclear", ["no component saturated"]
    if name in ("controller", "ovs") and f["cpu_machine"] >= 0.9 * cores:
        signs.append(f"all {cores} cores busy")
    line = f"{', '.join(signs)}; {lost}, {f['conn_per_s']:,}/s of {offered:,}/s arrived meanwhile"
    if short:
        line += f"; {generator}"
    if f["cpu_other"] >= OTHER_LOAD_WARNING:
        line += f"; other processes used {f['cpu_other']:.2f} cores"
    return name, line


def busy(f: dict, role: str) -> str:
    """'93% on a CPU' or, when it mattered, '55% on a CPU, 40% waiting for one'."""
    text = f"{f['cpu_' + role]:.0%} on a CPU"
    wait = f[f"cpu_{role}_wait"]
    return text + (f", {wait:.0%} waiting for one" if wait >= 0.1 else "")
