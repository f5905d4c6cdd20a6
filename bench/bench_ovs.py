"""New-flow setup through a real Open vSwitch gateway, driven by hping3.

Run (as root; needs Open vSwitch and hping3, ``apt-get install openvswitch-switch hping3``):
    .venv/bin/python bench/bench_ovs.py [--quick] [--rates 1000,5000,flood] [--duration 5]

One gateway, as in production but without the router: a private Open vSwitch (``lab/ovs.py``,
userspace datapath) with the gateway bridge and an underlay bridge, ``lockstep-gateway`` as its
controller, the client on the gateway's uplink and three VMs behind VXLAN::

    client ns: hping3 -> ce ==veth== gu  [gateway bridge g] -- vxlan port gt (tun_dst per flow)
                                               | OpenFlow           |
                                        lockstep-gateway     [underlay bridge ul, 10.99.0.1]
                                                               == uvN ==veth== vNe: VM ns, vx0

hping3 sends TCP SYNs to the VIP with ``--rand-source`` and a source port that grows by one per
packet, so every SYN is a new flow: a datapath miss in OVS (an upcall), a packet-in, a
per-flow rule and a packet-out that carries the SYN through the tunnel to a VM.  Nothing
answers the SYNs (the VMs only count them on their vxlan device) and nothing needs to: a
connection's set-up cost at the gateway is all in its first packet.

Each step offers one rate for ``--duration`` seconds: ``lanes`` hping3 processes of at most
5,000 SYN/s each, paced with ``-i u<interval>`` (hping3 sleeps ~70 us more than asked: a
warm-up measures that and corrects the interval), or one ``--flood``.  Per step it reports
what was offered (the client veth's tx counter), what reached the VMs while offering (conn/s:
what OVS put on the VMs' veths) and in all once the queues drained (loss %: the VMs' vx0
rx_packets), where the rest was lost, the controller's counters (``GET /metrics``), OVS's
(``coverage/show``, ``dpif-netdev/pmd-stats-show``, ``upcall/show``, ``dump-aggregate`` of the
per-flow rules), CPU per process and thread from /proc (with the time runnable threads waited
for a CPU), and a verdict naming the bottleneck (see ``verdict``).  The last line is one JSON
object with every figure.

Rules.  The VIP's idle timeout (``IDLE_TIMEOUT``) outlives the whole run, so no rule expires
while a step runs (flow-removed messages would load the controller).  Each step starts from
an empty table: the benchmark deletes the per-flow rules (by cookie) before it, because OVS's
cost per new flow grows with the rules it holds: after every revalidation round (and
flow-mods keep starting new ones) its main thread walks all the rules that have a timeout.
``--keep-rules`` keeps them, to see that.  OVS's ``flow-limit`` (200,000 by default, adjusted
by the revalidators) caps *datapath* flows, not rules, and is not reached here: the
revalidators delete a SYN's datapath flow as soon as the rule that replaces the punt is in.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lab.ovs import PrivateOVS, free_port, listening, sh, wait_for  # noqa: E402
from ryu_app.core.pipeline import COOKIE_ALL_FLOWS_MASK, flow_cookie  # noqa: E402

VIP, VIP_PORT, VNI = "10.0.0.100", 80, 100
GATEWAY_ADDRESS, GATEWAY_MAC = "10.0.1.1", "02:00:00:00:00:01"
CLIENT_ADDRESS = "10.0.1.100"
TUNNEL_IP = "10.99.0.1"  # the gateway's tunnel endpoint, on the underlay bridge's internal port
VM_COUNT = 3
IDLE_TIMEOUT = 3600  # s: longer than any run (the schema's maximum is 4095)
FLOOD = 0  # the rate that means "hping3 --flood"
FULL_RATES = (1000, 2000, 5000, 10_000, 20_000, FLOOD)
QUICK_RATES = (2000, 10_000)
LANE_MAX_RATE = 5000  # SYN/s one paced hping3 offers reliably here
HPING_OVERHEAD_US = 70.0  # hping3 sleeps this much longer than -i asks (measured; corrected)
START_TIMEOUT = 30.0
# Verdict thresholds.
LOSS_OK_PCT = 2.0  # less lost than this, after the queues drained, is keeping up
KEPT_UP_RATIO = 0.9  # ... if this share also arrived while offering (no growing backlog)
SATURATED_CORES = 0.85  # a single-threaded component wanting this much CPU is saturated
OFFERED_SHORT = 0.9  # hping3 offered less than this share of the target
OTHER_LOAD_WARNING = 0.15  # cores busy outside this benchmark's processes
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


def run(command: str, **options) -> str:
    """``sh`` of a command written as one line (no argument holds a space)."""
    return sh(*command.split(), **options)


# ---- the lab: all it creates is recorded and removed in close(), by name or by PID ------------


class Lab:
    """Namespaces, veths, bridges and processes of one run."""

    def __init__(self, workdir: Path):
        self.prefix = f"o{os.getpid() % 10000:04d}"  # + at most 4 characters: fits IFNAMSIZ
        self.workdir = workdir
        self.ovs = PrivateOVS(workdir / "ovs")
        self.namespaces: list[str] = []
        self.links: list[str] = []  # in the root namespace: veth ends, bridges' internal ports
        self.bridges: list[str] = []
        self.processes: list[subprocess.Popen] = []  # running
        self.pids: list[tuple[int, str]] = []  # (PID, name) of all started, for leftovers()

    def name(self, suffix: str) -> str:
        return f"{self.prefix}{suffix}"

    def netns(self, suffix: str) -> str:
        ns = self.name(suffix)
        sh("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        sh("ip", "link", "set", "lo", "up", ns=ns)
        sh("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", ns=ns)  # no stray RS/MLD
        return ns

    def veth(self, a: str, b: str, ns_a: str | None, ns_b: str | None) -> None:
        """a<->b, up, TX checksum offload off (the userspace datapath drops TCP otherwise)."""
        sh("ip", "link", "add", a, "type", "veth", "peer", "name", b)
        for end, ns in ((a, ns_a), (b, ns_b)):
            if ns:
                sh("ip", "link", "set", end, "netns", ns)
            else:
                self.links.append(end)
                sh("sysctl", "-qw", f"net.ipv6.conf.{end}.disable_ipv6=1")
            sh("ethtool", "-K", end, "tx", "off", ns=ns)
            sh("ip", "link", "set", end, "up", ns=ns)

    def bridge(self, name: str, *settings: str) -> None:
        self.bridges.append(name)
        self.links.append(name)
        self.ovs.vsctl(
            "add-br", name, "--", "set", "bridge", name, "datapath_type=netdev", *settings
        )

    def spawn(self, argv: list[str], ns: str | None = None, log: Path | None = None):
        """A process in a session of its own (killed as a group); ``ip netns exec`` execs the
        command, so the PID is the command's own."""
        full = (["ip", "netns", "exec", ns] if ns else []) + argv
        out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - lives with it
        process = subprocess.Popen(
            full, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.processes.append(process)
        self.pids.append((process.pid, Path(argv[0]).name[:15]))  # as /proc/PID/comm has it
        return process

    def kill(self, process: subprocess.Popen) -> None:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        with contextlib.suppress(ValueError):
            self.processes.remove(process)

    def close(self) -> None:
        for process in reversed(list(self.processes)):
            self.kill(process)
        self.pids += zip(self.ovs.pids, ("ovsdb-server", "ovs-vswitchd"), strict=True)
        if self.ovs.pids:
            for bridge in reversed(self.bridges):
                run(
                    f"ovs-vsctl --db={self.ovs.db} --timeout=10 --if-exists del-br {bridge}",
                    env=self.ovs.env,
                    check=False,
                )
        self.ovs.stop()
        for link in self.links:
            if Path(f"/sys/class/net/{link}").exists():
                sh("ip", "link", "del", link, check=False)
        for ns in reversed(self.namespaces):
            sh("ip", "netns", "del", ns, check=False)

    def leftovers(self) -> list[str]:
        """Anything of ours still there after close()."""
        found = [ns for ns in sh("ip", "netns", "list").split() if ns.startswith(self.prefix)]
        found += [link for link in os.listdir("/sys/class/net") if link.startswith(self.prefix)]
        return found + [f"{name} (PID {pid})" for pid, name in self.pids if alive(pid, name)]


def alive(pid: int, name: str) -> bool:
    """Whether process ``pid`` still runs ``name`` (not a new process with a reused PID)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == name
    except OSError:
        return False


def other_ovs() -> list[int]:
    """PIDs of ovs-vswitchd processes already running (two userspace ones fight over the
    ``ovs-netdev`` tap)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == "ovs-vswitchd":
                    found.append(int(entry.name))
    return found


@dataclass
class Gateway:
    """The one gateway and its surroundings, as the steps read them."""

    lab: Lab
    client_ns: str
    client_if: str
    bridge: str
    openflow_port: int
    rest_port: int
    controller: subprocess.Popen
    log: Path
    vms: dict[str, str] = field(default_factory=dict)  # VM name -> its namespace
    vm_links: dict[str, str] = field(default_factory=dict)  # VM name -> root end of its veth

    def check_controller(self) -> None:
        if self.controller.poll() is not None:
            raise RuntimeError(
                f"lockstep-gateway exited ({self.controller.returncode}):{tail(self.log)}"
            )


def deployment(lab: Lab, openflow_port: int, rest_port: int) -> dict:
    backends = [
        {"name": f"vm{i}", "tunnel_ip": f"10.99.0.{10 + i}", "mac": f"02:00:00:00:01:{i:02x}"}
        for i in range(1, VM_COUNT + 1)
    ]
    vip = {
        "name": "web",
        "address": VIP,
        "port": VIP_PORT,
        "vni": VNI,
        "idle_timeout": IDLE_TIMEOUT,
        # The VMs answer nothing: probe rarely and take 100 failures to go down, so the
        # backends stay up (their initial state) for the whole run.
        "health": {"type": "tcp", "interval": 3600, "timeout": 1, "rise": 1, "fall": 100},
        "backends": backends,
    }
    gateway = {
        "name": "gw1",
        "dpid": 1,
        "addresses": [GATEWAY_ADDRESS],
        "mac": GATEWAY_MAC,
        "uplink_port": lab.name("gu"),
        "tunnel_port": lab.name("gt"),
        "tunnel_ip": TUNNEL_IP,
        "openflow": f"127.0.0.1:{openflow_port}",
        "rest": f"127.0.0.1:{rest_port}",
        "state_file": str(lab.workdir / "gw1.state.json"),
    }
    return {"version": 1, "vips": [vip], "gateways": [gateway]}


def build(lab: Lab) -> Gateway:
    ovs = lab.ovs
    ovs.start()
    # The underlay: a bridge whose internal port holds the gateway's tunnel endpoint, the VMs
    # on veths to it.
    underlay = lab.name("ul")
    lab.bridge(underlay, "fail_mode=standalone")
    sh("ip", "link", "set", underlay, "mtu", "1600", "up")
    sh("ip", "addr", "add", f"{TUNNEL_IP}/24", "dev", underlay)
    vms, vm_links = {}, {}
    for i in range(1, VM_COUNT + 1):
        ns, eth, peer = lab.netns(f"v{i}"), lab.name(f"v{i}e"), lab.name(f"uv{i}")
        lab.veth(eth, peer, ns, None)
        ovs.vsctl("add-port", underlay, peer)
        tep = f"10.99.0.{10 + i}"
        sh("ip", "addr", "add", f"{tep}/24", "dev", eth, ns=ns)
        run(f"ip link add vx0 type vxlan id {VNI} dstport 4789 local {tep} nolearning", ns=ns)
        sh("ip", "link", "set", "vx0", "address", f"02:00:00:00:01:{i:02x}", "up", ns=ns)
        # OVS's tunnel neighbour table, seeded: else the first packet to each VM is dropped.
        mac = sh("cat", f"/sys/class/net/{eth}/address", ns=ns).strip()
        ovs.appctl("tnl/neigh/set", underlay, tep, mac)
        # ... and the underlay's MAC table (the VMs send nothing it could learn from): else
        # it floods every tunnelled SYN to every VM.
        ovs.appctl("fdb/add", underlay, peer, "0", mac)
        vms[f"vm{i}"], vm_links[f"vm{i}"] = ns, peer
    # The client, straight on the gateway's uplink: the VIP routed via the gateway's address,
    # whose MAC is set statically (the switch would answer ARP for it too).
    client_ns, client_if, uplink = lab.netns("c"), lab.name("ce"), lab.name("gu")
    lab.veth(client_if, uplink, client_ns, None)
    sh("ip", "addr", "add", f"{CLIENT_ADDRESS}/24", "dev", client_if, ns=client_ns)
    run(
        f"ip neigh replace {GATEWAY_ADDRESS} lladdr {GATEWAY_MAC} dev {client_if} nud permanent",
        ns=client_ns,
    )
    sh("ip", "route", "add", f"{VIP}/32", "via", GATEWAY_ADDRESS, ns=client_ns)
    # The controller before its switch (OVS backs off for seconds from one not yet listening).
    openflow_port, rest_port = free_port(), free_port()
    config = lab.workdir / "deployment.yaml"
    config.write_text(yaml.safe_dump(deployment(lab, openflow_port, rest_port), sort_keys=False))
    launcher = Path(sys.executable).parent / "lockstep-gateway"
    command = [str(launcher)] if launcher.exists() else [sys.executable, "-m", "ryu_app"]
    command += ["--config", str(config), "--gateway", "gw1", "--log-level", "WARNING"]
    log = lab.workdir / "gw1.log"
    gateway = Gateway(
        lab,
        client_ns,
        client_if,
        lab.name("g"),
        openflow_port,
        rest_port,
        lab.spawn(command, log=log),
        log,
        vms,
        vm_links,
    )
    wait_for(
        lambda: listening(openflow_port) or gateway.controller.poll() is not None,
        START_TIMEOUT,
        "the controller to listen",
    )
    gateway.check_controller()
    bridge, tunnel = gateway.bridge, lab.name("gt")
    lab.bridge(
        bridge,
        "fail_mode=secure",
        "protocols=OpenFlow13",
        "other-config:datapath-id=0000000000000001",
    )
    ovs.vsctl("add-port", bridge, uplink)
    ovs.vsctl(
        *f"add-port {bridge} {tunnel} -- set interface {tunnel} type=vxlan "
        f"options:remote_ip=flow options:local_ip={TUNNEL_IP} options:key=flow".split()
    )
    ovs.vsctl("set-controller", bridge, f"tcp:127.0.0.1:{openflow_port}")

    def pipeline_in() -> bool:
        gateway.check_controller()
        flows = ovs.ofctl("dump-flows", bridge)
        return "priority=100" in flows and "CONTROLLER" in flows

    wait_for(pipeline_in, START_TIMEOUT, "the controller's pipeline in the switch")
    return gateway


def tail(log: Path, lines: int = 15) -> str:
    text = log.read_text(errors="replace").splitlines()[-lines:] if log.exists() else []
    return "".join(f"\n    {line}" for line in text) or " (empty log)"


def log_problems(log: Path, words: tuple[str, ...]) -> list[str]:
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    return [line for line in lines if any(word in line for word in words)]


# ---- reading the counters -----------------------------------------------------------------------


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


# ---- offering a rate ----------------------------------------------------------------------------


def lanes_for(rate: int) -> int:
    """hping3 processes for a rate: one paced process offers ~LANE_MAX_RATE reliably."""
    return 1 if rate == FLOOD else max(1, math.ceil(rate / LANE_MAX_RATE))


def interval_us(rate: int, lanes: int, overhead_us: float) -> int:
    """hping3's ``-i u<N>`` for each of ``lanes`` processes to offer ``rate`` together, given
    how much longer than asked hping3 sleeps."""
    return max(1, round(lanes * 1e6 / rate - overhead_us))


def measured_overhead(offered_per_s: float, lanes: int, interval: int) -> float:
    """The sleep overhead a warm-up shows: the period each lane had, less the one asked."""
    return min(max(lanes * 1e6 / offered_per_s - interval, 0.0), 1000.0)


def hping3(gw: Gateway, interval: int | None) -> list[str]:
    """SYNs to the VIP, each from a random source address and the next source port."""
    pace = ["--flood"] if interval is None else ["-i", f"u{interval}"]
    options = f"-q -n -S -p {VIP_PORT} --rand-source -I {gw.client_if}".split()
    return ["hping3", *options, *pace, VIP]


def offered_now(gw: Gateway) -> int:
    client = link_counters(gw.client_if, gw.client_ns)
    return client["tx"] + client["tx_dropped"]


class QueueWatch(threading.Thread):
    """The largest backlog of unread bytes on the controller's OpenFlow socket while a step
    runs, sampled every 0.2 s."""

    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.port, self.most = port, 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.2):
            self.most = max(self.most, controller_queue_bytes(self.port))

    def stop(self) -> int:
        self.done.set()
        self.join()
        return self.most


def drain(gw: Gateway, timeout: float) -> float:
    """Wait until nothing more reaches the VMs, the controller has read everything and it and
    OVS's main thread are nearly idle; the seconds until the last sign of work (``timeout`` if
    it never settled)."""
    ovs_pid = gw.lab.ovs.pids[-1]

    def working() -> float:
        controller = sum(t.cpu for t in thread_times(gw.controller.pid).values())
        return controller + thread_times(ovs_pid).get(ovs_pid, ThreadTime("", 0, 0)).cpu

    started = time.monotonic()
    last, last_change, quiet, cpu = delivered_to_vms(gw), started, 0, working()
    while time.monotonic() - started < timeout:
        time.sleep(0.2)
        now, cpu_now = delivered_to_vms(gw), working()
        busy = cpu_now - cpu > 0.02 or controller_queue_bytes(gw.openflow_port) > 0
        if now != last or busy:
            last_change, quiet = time.monotonic(), 0
        else:
            quiet += 1
            if quiet >= 3:
                return last_change - started
        last, cpu = now, cpu_now
    return timeout


def clear_rules(gw: Gateway, timeout: float) -> float:
    """Delete the per-flow rules (by cookie), so that a step starts from an empty table, and
    wait until the controller has read the flow-removed messages that makes OVS send; the
    seconds that took."""
    started = time.monotonic()
    gw.lab.ovs.ofctl("del-flows", gw.bridge, FLOW_RULES)
    drain(gw, timeout)
    return time.monotonic() - started


@dataclass
class Pacing:
    overhead_us: float = HPING_OVERHEAD_US


def warm_up(gw: Gateway, rate: int, lanes: int, seconds: float, pacing: Pacing) -> None:
    """Offer the rate for a moment, measure what hping3 really sends and correct the sleep
    overhead; once more if that was more than 5% off."""
    for _ in range(2):
        interval = interval_us(rate, lanes, pacing.overhead_us)
        processes = [gw.lab.spawn(hping3(gw, interval), ns=gw.client_ns) for _ in range(lanes)]
        try:
            time.sleep(0.2)  # hping3 starting
            first, since = offered_now(gw), time.monotonic()
            time.sleep(max(seconds - 0.2, 0.3))
            offered_per_s = (offered_now(gw) - first) / (time.monotonic() - since)
        finally:
            for process in processes:
                gw.lab.kill(process)
        if offered_per_s <= 0:
            return
        pacing.overhead_us = measured_overhead(offered_per_s, lanes, interval)
        if abs(offered_per_s / rate - 1) <= 0.05:
            return


@dataclass
class Window:
    """What a step measured while it offered its rate, besides the two snapshots."""

    seconds: float
    delivered: int  # SYNs OVS sent to the VMs meanwhile
    drain_s: float  # how long its queues took to drain afterwards
    queue_max_bytes: int  # the controller's largest backlog
    cpu: dict[str, float]  # cores per role


def run_step(gw: Gateway, rate: int, args: argparse.Namespace, pacing: Pacing) -> dict:
    """Offer one rate for ``args.duration`` seconds; every figure of the step."""
    gw.check_controller()
    lanes = lanes_for(rate)
    if rate != FLOOD and args.warmup > 0:
        warm_up(gw, rate, lanes, args.warmup, pacing)
        drain(gw, args.drain)
    cleared_s = 0.0 if args.keep_rules else clear_rules(gw, args.drain)
    interval = None if rate == FLOOD else interval_us(rate, lanes, pacing.overhead_us)
    ovs_pid = gw.lab.ovs.pids[-1]
    before = snapshot(gw)
    cpu_before = cpu_sample(ovs_pid, gw.controller.pid)
    vm_before = delivered_to_vms(gw)
    watch = QueueWatch(gw.openflow_port)
    watch.start()
    started = time.monotonic()
    processes = [gw.lab.spawn(hping3(gw, interval), ns=gw.client_ns) for _ in range(lanes)]
    try:
        time.sleep(args.duration)
        hping3_seconds = sum(
            thread.cpu for p in processes for thread in thread_times(p.pid).values()
        )
        cpu_after = cpu_sample(ovs_pid, gw.controller.pid)
        vm_window = delivered_to_vms(gw)
        seconds = time.monotonic() - started
    finally:
        for process in processes:
            gw.lab.kill(process)
        queue_most = watch.stop()
    drain_s = drain(gw, args.drain)
    gw.check_controller()
    after = snapshot(gw)
    cpu = cpu_cores(cpu_before, cpu_after, seconds, ovs_pid)
    cpu["hping3"] = hping3_seconds / seconds
    ours = sum(cpu[role] for role in ("ovs", "controller", "bench", "hping3", "softirq"))
    cpu["other"] = max(0.0, cpu["machine"] - ours)  # someone else's load on the machine
    window = Window(seconds, vm_window - vm_before, drain_s, queue_most, cpu)
    return {
        **step_figures(rate, lanes, interval, before, after, window),
        "clear_s": round(cleared_s, 1),
    }


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


# ---- the verdict --------------------------------------------------------------------------------

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


# ---- report -------------------------------------------------------------------------------------


def step_label(rate: int) -> str:
    return "flood" if rate == FLOOD else f"{rate / 1000:g}k/s"


def print_table(steps: list[dict]) -> None:
    """Traffic and counters, then CPU in cores, then the verdicts."""
    print(
        f"  {'step':>7s} {'offered/s':>9s} {'conn/s':>7s} {'loss%':>6s} {'drain':>6s} "
        f"{'pkt-in/s':>8s} {'upcalls':>8s} {'rules+':>8s}   lost: {'intake':>7s} {'to ctrl':>7s} "
        f"{'at ctrl':>7s} {'delivery':>8s}   {'dp flows':>8s} {'limit':>7s}"
    )
    for s in steps:
        print(
            f"  {s['step']:>7s} {s['offered_per_s']:9,} {s['conn_per_s']:7,} "
            f"{s['loss_pct']:6.1f} {s['drain_s']:5.1f}s {s['packet_ins_per_s']:8,} "
            f"{s['upcalls']:8,} {s['rules_added']:8,}         {s['lost_intake']:7,} "
            f"{s['lost_to_controller']:7,} {s['lost_at_controller']:7,} {s['lost_delivery']:8,}"
            f"   {s['datapath_flows_max']:8,} {s['datapath_flow_limit']:7,}"
        )
    roles = ("ovs_main", "ovs_main_wait", "ovs_revalidators", "ovs", "controller",
             "controller_wait", "hping3", "softirq", "other")  # fmt: skip
    heads = ("ovs-main", "(waited)", "revalid.", "ovs", "ctrl", "(waited)", "hping3", "softirq",
             "other")  # fmt: skip
    print(f"  {'cores:':>7s} " + " ".join(f"{h:>8s}" for h in heads) + f" {'all':>8s}")
    for s in steps:
        cores = " ".join(f"{s['cpu_' + role]:8.2f}" for role in roles)
        print(f"  {s['step']:>7s} {cores} {s['cpu_machine']:8.2f}")
    for s in steps:
        print(f"  {s['step']:>7s}: {LABELS[s['bottleneck']]}: {s['verdict']}")


def progress(s: dict) -> str:
    pace = "--flood" if s["interval_us"] is None else f"-i u{s['interval_us']}"
    return (
        f"  {s['step']}: offered {s['offered_per_s']:,}/s ({s['lanes']} hping3 {pace}), "
        f"{s['conn_per_s']:,} conn/s, {s['loss_pct']:.1f}% lost -> {LABELS[s['bottleneck']]}"
    )


# ---- main ---------------------------------------------------------------------------------------


def parse_rates(text: str) -> list[int]:
    """``1000,2k,flood`` -> [1000, 2000, FLOOD]."""
    rates = []
    for raw in text.split(","):
        item = raw.strip().lower()
        if item == "flood":
            rates.append(FLOOD)
        else:
            rate = round(float(item[:-1]) * 1000) if item.endswith("k") else int(item)
            if rate <= 0:
                raise ValueError(f"rate {item!r} is not positive")
            rates.append(rate)
    return rates


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="two 2-second steps (2k, 10k/s)")
    parser.add_argument(
        "--rates",
        help="comma-separated SYN/s, 'k' suffix or 'flood' (default 1k,2k,5k,10k,20k,flood)",
    )
    parser.add_argument("--duration", type=float, help="seconds per step (default 5; quick 2)")
    parser.add_argument(
        "--warmup", type=float, help="seconds to calibrate hping3 (default 1; quick 0.5)"
    )
    parser.add_argument(
        "--drain",
        type=float,
        help="most seconds to wait for the queues to drain after a step (default 10; quick 5)",
    )
    parser.add_argument(
        "--keep-rules",
        action="store_true",
        help="keep the per-flow rules of earlier steps (default: each step starts without)",
    )
    parser.add_argument("--log-dir", help="keep the controller's and OVS's logs here")
    args = parser.parse_args(argv)
    try:
        args.rates = parse_rates(args.rates) if args.rates else None
    except ValueError as error:
        parser.error(f"--rates: {error}")
    args.rates = args.rates or list(QUICK_RATES if args.quick else FULL_RATES)
    defaults = (2.0, 0.5, 5.0) if args.quick else (5.0, 1.0, 10.0)
    for name, default in zip(("duration", "warmup", "drain"), defaults, strict=True):
        if getattr(args, name) is None:
            setattr(args, name, default)
    if args.duration <= 0 or args.warmup < 0 or args.drain <= 0:
        parser.error("--duration > 0, --warmup >= 0 and --drain > 0, please")
    return args


def preflight() -> list[str]:
    problems = []
    if os.geteuid() != 0:
        problems.append("run as root (namespaces, veths, Open vSwitch)")
    for tool in ("hping3", "ovs-vswitchd", "ovsdb-server", "ethtool", "ip"):
        if not shutil.which(tool):
            problems.append(
                f"{tool} not found (apt-get install hping3 openvswitch-switch ethtool iproute2)"
            )
    running = other_ovs()
    if running:
        problems.append(
            f"ovs-vswitchd already runs (PID {', '.join(map(str, running))}): two userspace "
            "ones fight over the ovs-netdev tap; run one at a time"
        )
    return problems


def _stop(signum, frame):
    raise SystemExit(128 + signum)  # the finally clauses clean up


def main(argv=None) -> int:
    args = parse_args(argv)
    problems = preflight()
    if problems:
        print("cannot run:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    started = time.monotonic()
    version = sh("ovs-vswitchd", "--version").splitlines()[0].rsplit(" ", 1)[-1]
    print(
        f"Lockstep new flows through Open vSwitch {version} (userspace datapath), Python "
        f"{platform.python_version()}, {os.cpu_count()} cores, steps "
        f"{', '.join(map(step_label, args.rates))} of {args.duration:g} s",
        flush=True,
    )
    workdir = Path(tempfile.mkdtemp(prefix="lockstep-bench-ovs-"))
    lab = Lab(workdir)
    handlers = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    steps: list[dict] = []
    summary: dict = {"error": None}
    try:
        gw = build(lab)
        summary["setup_s"] = round(time.monotonic() - started, 1)
        print(f"  gateway up in {summary['setup_s']} s (prefix {lab.prefix})", flush=True)
        pacing = Pacing()
        for rate in args.rates:
            steps.append({"step": step_label(rate), **run_step(gw, rate, args, pacing)})
            print(progress(steps[-1]), flush=True)
        summary["controller_log_errors"] = len(
            log_problems(gw.log, ("ERROR", "Traceback", "Exception"))
        )
    except (RuntimeError, TimeoutError, OSError, ValueError) as error:
        summary["error"] = f"{type(error).__name__}: {error}"
        print(f"FAILED: {summary['error']}", file=sys.stderr)
    finally:
        for sig in handlers:
            signal.signal(sig, signal.SIG_IGN)  # no second interruption of the clean-up
        ovs_log = lab.ovs.rundir / "ovs-vswitchd.log"
        warnings = log_problems(ovs_log, ("|WARN|", "|ERR|", "|EMER|"))
        if args.log_dir:
            Path(args.log_dir).mkdir(parents=True, exist_ok=True)
            for log in (workdir / "gw1.log", ovs_log):
                if log.exists():
                    shutil.copy(log, args.log_dir)
        lab.close()
        leftovers = lab.leftovers()
        shutil.rmtree(workdir, ignore_errors=True)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    print_table(steps)
    other = max((s["cpu_other"] for s in steps), default=0.0)
    if other >= OTHER_LOAD_WARNING:
        print(
            f"  warning: other processes kept up to {other:.2f} cores busy (of {os.cpu_count()}):"
            " figures are skewed"
        )
    if warnings:
        print(f"  ovs-vswitchd logged {len(warnings)} warning(s), e.g.:")
        for line in dict.fromkeys(w.split("|", 4)[-1][:80] for w in warnings):
            print(f"    {line}")
    print(f"  clean-up: {'nothing left' if not leftovers else 'LEFT ' + ', '.join(leftovers)}")
    summary.update(
        {
            "python": platform.python_version(),
            "ovs_version": version,
            "cores": os.cpu_count(),
            "duration_s": args.duration,
            "idle_timeout_s": IDLE_TIMEOUT,
            "keep_rules": args.keep_rules,
            "prefix": lab.prefix,
            "pids": lab.pids,
            "leftovers": leftovers,
            "ovs_log_warnings": len(warnings),
            "run_s": round(time.monotonic() - started, 1),
            "steps": steps,
        }
    )
    print(json.dumps(summary, sort_keys=True))
    return 1 if summary["error"] or leftovers else 0


if __name__ == "__main__":
    sys.exit(main())
