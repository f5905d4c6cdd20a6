"""What ``bench/bench_ovs.py`` reads at each end of a step: the interfaces' packet counters,
the controller's (``GET /metrics``), Open vSwitch's (``coverage/show``,
``dpif-netdev/pmd-stats-show``, ``upcall/show``, ``dump-aggregate`` of the per-flow rules), the
controller's unread socket backlog, and CPU time per process and thread from /proc (with the
time runnable threads waited for a CPU).  The parsers are pure: tested on canned text.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench.ovslab import Gateway
from lab.ovs import sh
from ryu_app.core.pipeline import COOKIE_ALL_FLOWS_MASK, flow_cookie

# OVS coverage counters reported per step (deltas): drops first, then the work.
COVERAGE = (
    "packet_in_overflow",  # ofproto's queue of packet-ins for the main thread full (1024)
    "rconn_overflow",  # the controller connection's backlog full (100): controller too slow
    "upcall_flow_limit_hit",  # datapath flows at flow-limit: upcalls not installed
    "datapath_drop_upcall_error",
    "datapath_drop_userspace_action_error",  # one per SYN here, yet every SYN is delivered
    "netdev_received",  # receive calls that returned packets (at most 32 each)
    "ofproto_recv_openflow",  # OpenFlow messages received: flow-mods and packet-outs
    "ofproto_packet_out",
    "xlate_actions",  # translations: upcalls, packet-outs and revalidations
    # Revalidation rounds a flow-table change started.  After every round the main thread
    # walks all rules with a timeout to expire them: O(rules) per round, and rounds follow
    # the flow-mods, so the main thread's cost per new flow grows with the rules installed.
    "rev_flow_table",
    "dpif_flow_del",  # datapath flows the revalidators deleted
    "revalidate_missed_dp_flow",
)
TICKS = os.sysconf("SC_CLK_TCK")


# ---- the interfaces, the controller and Open vSwitch ------------------------------------------


def link_counters(link: str, ns: str | None = None) -> dict[str, int]:
    """Packet counters of an interface (in a namespace), from ``ip -s -j link``."""
    out = sh("ip", *(["-n", ns] if ns else []), "-s", "-j", "link", "show", "dev", link)
    stats = json.loads(out)[0]["stats64"]
    return {
        "rx": stats["rx"]["packets"],
        "rx_dropped": stats["rx"]["dropped"],
        "tx": stats["tx"]["packets"],
        "tx_dropped": stats["tx"]["dropped"],
    }


def sysfs_counter(link: str, name: str) -> int:
    """One counter of a root-namespace interface, without a subprocess."""
    return int(Path(f"/sys/class/net/{link}/statistics/{name}").read_text())


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text -> {name without ``lockstep_``: value}, labelled samples summed."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        name = series.split("{", 1)[0].removeprefix("lockstep_")
        values[name] = values.get(name, 0.0) + float(value)
    return values


def parse_coverage(text: str) -> dict[str, int]:
    """``coverage/show``: {counter: total} (counters never hit are not listed: read as 0)."""
    totals = {}
    for line in text.splitlines():
        match = re.match(r"\s*(\w+)\s+.*total:\s*(\d+)\s*$", line)
        if match:
            totals[match[1]] = int(match[2])
    return totals


def parse_pmd_stats(text: str) -> dict[str, float]:
    """``dpif-netdev/pmd-stats-show``, summed over threads (here only the main thread polls:
    veths are not PMD ports): {"packets received": ..., "miss with success upcall": ...}."""
    totals: dict[str, float] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition(":")
        if not sep or not value.strip() or not line.startswith("  "):
            continue
        with contextlib.suppress(ValueError):
            totals[key] = totals.get(key, 0.0) + float(value.split()[0])
    return totals


def parse_upcall_show(text: str) -> dict[str, int]:
    """``upcall/show``: datapath flows now, at most, their limit, the last dump's duration."""
    figures = {}
    for key in ("current", "max", "limit"):
        match = re.search(rf"\({key} (\d+)\)", text)
        if match:
            figures[key] = int(match[1])
    match = re.search(r"dump duration\s*:\s*(\d+)ms", text)
    if match:
        figures["dump_ms"] = int(match[1])
    return figures


def parse_aggregate(text: str) -> tuple[int, int]:
    """``ovs-ofctl dump-aggregate``: (flow_count, packet_count)."""
    flows = re.search(r"flow_count=(\d+)", text)
    packets = re.search(r"packet_count=(\d+)", text)
    return int(flows[1]) if flows else 0, int(packets[1]) if packets else 0


def controller_queue_bytes(port: int) -> int:
    """Bytes the controller has not read yet from its switch connections (its Recv-Q), from
    /proc/net/tcp: packet-ins queued at the controller."""
    queued = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:
            queued += int(fields[4].split(":")[1], 16)
    return queued


FLOW_RULES = f"cookie={flow_cookie(0):#x}/{COOKIE_ALL_FLOWS_MASK:#x}"  # the per-flow rules


def snapshot(gw: Gateway) -> dict:
    """Every counter the steps compare, at one moment."""
    ovs = gw.lab.ovs
    with urllib.request.urlopen(f"http://127.0.0.1:{gw.rest_port}/metrics", timeout=20) as reply:
        metrics = parse_metrics(reply.read().decode())
    rules, rule_packets = parse_aggregate(ovs.ofctl("dump-aggregate", gw.bridge, FLOW_RULES))
    client = link_counters(gw.client_if, gw.client_ns)
    return {
        "offered": client["tx"] + client["tx_dropped"],
        "veth_dropped": client["tx_dropped"],
        "vm": {name: link_counters("vx0", ns)["rx"] for name, ns in gw.vms.items()},
        "metrics": metrics,
        "coverage": parse_coverage(ovs.appctl("coverage/show")),
        "pmd": parse_pmd_stats(ovs.appctl("dpif-netdev/pmd-stats-show")),
        "upcall": parse_upcall_show(ovs.appctl("upcall/show")),
        "rules": rules,
        "rule_packets": rule_packets,
        "all_rules": parse_aggregate(ovs.ofctl("dump-aggregate", gw.bridge))[0],
    }


def delivered_to_vms(gw: Gateway) -> int:
    """What OVS has sent towards the VMs (root ends of their veths): fast, for in-step reads."""
    return sum(sysfs_counter(link, "tx_packets") for link in gw.vm_links.values())


# ---- CPU from /proc -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ThreadTime:
    name: str
    cpu: float  # seconds on a CPU (user + system)
    wait: float  # seconds runnable but waiting for a CPU (the run queue)


def thread_times(pid: int) -> dict[int, ThreadTime]:
    """{thread id: its times} for every thread of a process ({} once it is gone): /proc's
    stat and schedstat."""
    threads = {}
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError):
                stat = (task / "stat").read_text()
                name = stat[stat.index("(") + 1 : stat.rindex(")")]
                fields = stat.rpartition(")")[2].split()
                waited = int((task / "schedstat").read_text().split()[1]) / 1e9
                cpu = (int(fields[11]) + int(fields[12])) / TICKS
                threads[int(task.name)] = ThreadTime(name, cpu, waited)
    return threads


def machine_seconds() -> dict[str, float]:
    """CPU seconds of the whole machine by kind, from /proc/stat's first line: busy (user,
    nice, system, irq, softirq), softirq alone (the kernel's packet work: veths, packet
    sockets, VXLAN) and steal (time the hypervisor gave to other guests)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return {
        "machine": (user + nice + system + irq + softirq) / TICKS,
        "softirq": softirq / TICKS,
        "steal": steal / TICKS,
    }


def cpu_sample(ovs_pid: int, controller_pid: int) -> dict:
    return {
        "ovs": thread_times(ovs_pid),
        "controller": thread_times(controller_pid),
        "bench": thread_times(os.getpid()),  # this script: its samplers and subprocesses
        **machine_seconds(),
    }


def cpu_cores(before: dict, after: dict, seconds: float, ovs_pid: int) -> dict[str, float]:
    """Cores over ``seconds``: OVS's main thread (it polls the veths, runs every upcall and
    handles all OpenFlow) busy and waiting for a CPU, its revalidators, OVS in all; the
    controller busy and waiting for a CPU; this script; the machine, its softirq and steal.
    Busy plus waiting is what a thread wanted: near 1, it is saturated even if other
    processes kept it from getting a whole core."""
    idle = ThreadTime("", 0.0, 0.0)

    def total(role: str, kind: str = "cpu", keep=lambda tid, thread: True) -> float:
        spent = 0.0
        for tid, thread in after[role].items():
            if keep(tid, thread):
                earlier = getattr(before[role].get(tid, idle), kind)
                spent += max(0.0, getattr(thread, kind) - earlier)
        return spent / seconds

    def main_thread(tid: int, thread: ThreadTime) -> bool:
        return tid == ovs_pid

    def revalidator(tid: int, thread: ThreadTime) -> bool:
        return thread.name.startswith("revalidator")

    return {
        "ovs_main": total("ovs", keep=main_thread),
        "ovs_main_wait": total("ovs", "wait", keep=main_thread),
        "ovs_revalidators": total("ovs", keep=revalidator),
        "ovs": total("ovs"),
        "controller": total("controller"),
        "controller_wait": total("controller", "wait"),
        "bench": total("bench"),
        **{
            kind: (after[kind] - before[kind]) / seconds for kind in ("machine", "softirq", "steal")
        },
    }
