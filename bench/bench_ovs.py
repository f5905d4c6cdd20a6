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

Here: the steps (offering a rate, pacing hping3, draining) and the report.  The lab is
``bench/ovslab.py``, the counters and CPU readings ``bench/ovscounters.py``, a step's figures and
verdict ``bench/ovsverdict.py``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ovscounters import (  # noqa: E402
    FLOW_RULES,
    ThreadTime,
    controller_queue_bytes,
    cpu_cores,
    cpu_sample,
    delivered_to_vms,
    link_counters,
    snapshot,
    thread_times,
)
from bench.ovslab import IDLE_TIMEOUT, VIP, VIP_PORT, Gateway, Lab, build, log_problems, other_ovs  # noqa: E402
from bench.ovsverdict import LABELS, OTHER_LOAD_WARNING, Window, step_figures  # noqa: E402
from lab.ovs import sh  # noqa: E402

FLOOD = 0  # the rate that means "hping3 --flood"
FULL_RATES = (1000, 2000, 5000, 10_000, 20_000, FLOOD)
QUICK_RATES = (2000, 10_000)
LANE_MAX_RATE = 5000  # SYN/s one paced hping3 offers reliably here
HPING_OVERHEAD_US = 70.0  # hping3 sleeps this much longer than -i asks (measured; corrected)


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
    summary: dict = {"error": None}
    steps: list[dict] = []
    try:
        run_steps(lab, args, started, summary, steps)
    finally:
        for sig in handlers:
            signal.signal(sig, signal.SIG_IGN)  # no second interruption of the clean-up
        warnings, leftovers = clean_up(lab, args.log_dir)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    print_report(steps, warnings, leftovers)
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


def run_steps(
    lab: Lab, args: argparse.Namespace, started: float, summary: dict, steps: list[dict]
) -> None:
    """Build the lab and run each step, appending to ``steps`` as they end; a failure is
    recorded in ``summary["error"]`` (the steps run until then are kept)."""
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


def clean_up(lab: Lab, log_dir: str | None) -> tuple[list[str], list[str]]:
    """Keep the logs if asked, remove everything the lab made; (OVS's warnings, leftovers)."""
    ovs_log = lab.ovs.rundir / "ovs-vswitchd.log"
    warnings = log_problems(ovs_log, ("|WARN|", "|ERR|", "|EMER|"))
    if log_dir:
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        for log in (lab.workdir / "gw1.log", ovs_log):
            if log.exists():
                shutil.copy(log, log_dir)
    lab.close()
    leftovers = lab.leftovers()
    shutil.rmtree(lab.workdir, ignore_errors=True)
    return warnings, leftovers


def print_report(steps: list[dict], warnings: list[str], leftovers: list[str]) -> None:
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


if __name__ == "__main__":
    sys.exit(main())
