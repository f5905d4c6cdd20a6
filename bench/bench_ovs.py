"""New flows set up through a real Open vSwitch gateway, in controller mode and in switch mode
(issue 14), side by side.

Run (as root; needs Open vSwitch, ``apt-get install openvswitch-switch``; under the lab lock):
    flock /tmp/lockstep-ovs.lock .venv/bin/python bench/bench_ovs.py [--quick]
        [--modes controller,switch] [--rates 2k,5k,10k,20k,max] [--duration 5]

The lab is ``bench/floodlab.py``'s: one gateway on a private Open vSwitch (userspace datapath)
with ``lockstep-gateway`` as its controller, three VMs behind VXLAN, a router in front and a
client behind it.  Here each VM runs ``bench/acceptsink.py`` (accepts every connection and
resets it) and the client ``bench/connload.py``: new TCP connections to the VIP at a paced rate
(one process per ``LANE_MAX_RATE``; ``max``: two unpaced ones), each a full handshake through
the gateway (SYN and the handshake's ACK) and the VM's answer through the router, then a reset.
A step's **new flows/s is handshakes the VMs completed** (the kernel's ``TcpPassiveOpens`` in
each VM's namespace) per second of load, not SYNs sent; the generators' own counts (completed,
timed out after 1 s, refused) and connect times are beside it.

Per mode, one lab, built the same way: ``controller`` (today's default: a packet-in, a
flow-mod and a packet-out per new flow) and ``switch`` (the VIP with ``placement: port-bits``,
``mode: switch``, 256 slots: the controller writes the slot rules, the switch places SYNs by
them and learns a pin from each flow's first non-SYN packet; the steps start once all 512 slot
rules are in).  The flood guard is off (``flood_guard: {rate: 0}``): the capacity is what is
measured.  Each step starts from no per-flow rules (deleted by cookie, pins included) unless
``--keep-rules``; the VIP's idle timeout outlives the run.  Per step: completed handshakes/s,
the generators' success, packet-ins, OVS's upcalls and megaflow hits, per-flow rules at the end,
the most datapath flows so far (``upcall/show``'s max, since the lab's OVS started), packets
the kernel dropped on the uplink's socket before OVS read them (``ss -0 -e -m``), CPU in cores
of ovs-vswitchd (its main thread, which polls the veths and runs every upcall; its
revalidators; in all), the controller, the generators and the machine, and what one new flow
cost the gateway (OVS and controller) and OVS's main thread.  ``--nice -10`` puts the
gateway's main threads first on a machine it shares with its own load.  Then the modes side
by side with the ratio of their handshakes/s (issue 14's target: switch >= 3x controller).  The
last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import floodlab, ovsreport  # noqa: E402
from bench.floodbuilds import ovs_lock  # noqa: E402
from bench.floodwatch import parse_socket_drops  # noqa: E402
from bench.ovscounters import (  # noqa: E402
    FLOW_RULES,
    ThreadTime,
    controller_queue_bytes,
    cpu_cores,
    cpu_sample,
    delivered_to_vms,
    snapshot,
    thread_times,
)
from bench.ovslab import IDLE_TIMEOUT, VIP, VIP_PORT, Gateway, Lab, log_problems, other_ovs  # noqa: E402
from bench.ovsreport import MAX, MAX_INFLIGHT  # noqa: E402
from lab.ovs import sh  # noqa: E402

LOAD = ROOT / "bench" / "connload.py"
SINK = ROOT / "bench" / "acceptsink.py"
# The VMs answer health probes (the sink accepts them), but the bench measures set-up, not
# health: probe rarely and take 100 failures to go down.
HEALTH = {"type": "tcp", "interval": 3600, "timeout": 1, "rise": 1, "fall": 100}
CONNECT_TIMEOUT = 1.0  # s: a lost SYN is a failed set-up (the kernel's retry comes after 1 s)


# ---- between steps ------------------------------------------------------------------------------


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
    """Delete the per-flow rules (by cookie: controller mode's and switch mode's learned pins
    alike), so that a step starts from an empty table, and wait until the controller has read
    the flow-removed messages that makes OVS send; the seconds that took."""
    started = time.monotonic()
    gw.lab.ovs.ofctl("del-flows", gw.bridge, FLOW_RULES)
    drain(gw, timeout)
    return time.monotonic() - started


# ---- one step -----------------------------------------------------------------------------------


def counters(gw: Gateway) -> dict:
    """``ovscounters.snapshot`` with the VMs' completed handshakes and the uplink's socket
    drops."""
    opens = sum(
        ovsreport.parse_passive_opens(sh("cat", "/proc/net/snmp", ns=ns)) for ns in gw.vms.values()
    )
    drops = parse_socket_drops(sh("ss", "-0", "-e", "-m"), gw.lab.name("gu"))
    return {**snapshot(gw), "passive_opens": opens, "intake_dropped": drops}


def generator(rate: int, lanes: int, seconds: float) -> list[str]:
    """One generator's command: ``lanes`` of them offer ``rate`` together (MAX: unpaced)."""
    if rate == MAX:
        pace = ["--rate", "0", "--max-inflight", str(MAX_INFLIGHT)]
    else:
        inflight = max(500, 2 * rate // lanes)  # 2 s of its rate: never the limit when kept up
        pace = ["--rate", f"{rate / lanes:g}", "--max-inflight", str(inflight)]
    target = ["--vip", VIP, "--port", str(VIP_PORT), "--timeout", f"{CONNECT_TIMEOUT:g}"]
    return [sys.executable, str(LOAD), *target, *pace, "--seconds", f"{seconds:g}"]


def run_step(gw: Gateway, rate: int, args: argparse.Namespace) -> dict:
    """Offer one rate of new connections for ``args.duration`` seconds; the step's figures."""
    gw.check_controller()
    cleared_s = 0.0 if args.keep_rules else clear_rules(gw, args.drain)
    lanes = ovsreport.lanes_for(rate)
    ovs_pid = gw.lab.ovs.pids[-1]
    before = counters(gw)
    cpu_before = cpu_sample(ovs_pid, gw.controller.pid)
    started = time.monotonic()
    logs = [gw.lab.workdir / f"load-{rate}-{lane}.json" for lane in range(lanes)]
    argv = generator(rate, lanes, args.duration)
    processes = [gw.lab.spawn(argv, ns=gw.client_ns, log=log) for log in logs]
    try:
        for process in processes:
            process.wait(timeout=args.duration + 3 * CONNECT_TIMEOUT + 30)
    finally:
        for process in processes:
            gw.lab.kill(process)
    cpu = cpu_cores(cpu_before, cpu_sample(ovs_pid, gw.controller.pid),
                    time.monotonic() - started, ovs_pid)  # fmt: skip
    drain_s = drain(gw, args.drain)
    gw.check_controller()
    load = ovsreport.combine_lanes([json.loads(log.read_text().splitlines()[-1]) for log in logs])
    figures = ovsreport.step_figures(before, counters(gw), load, cpu)
    return {"step": ovsreport.step_label(rate), "target_per_s": rate or None, "lanes": lanes,
            **figures, "drain_s": round(drain_s, 1), "clear_s": round(cleared_s, 1)}  # fmt: skip


def progress(s: dict) -> str:
    return (
        f"  {s['step']}: {s['started_per_s']:,} started/s, {s['handshakes_per_s']:,} "
        f"handshakes/s at the VMs, {s['success_pct']}% ok, {s['packet_ins_per_s']:,} "
        f"packet-ins/s, ovs {s['cpu_ovs']:.2f} / controller {s['cpu_controller']:.2f} cores"
    )


# ---- one mode: a lab, its steps -----------------------------------------------------------------


def run_mode(mode: str, args: argparse.Namespace) -> dict:
    """Build a lab with the VIP in ``mode``, run every step, tear it down (holding the lab
    lock meanwhile); the mode's figures (``error`` set if it failed part way)."""
    result: dict = {"mode": mode, "steps": [], "error": None}
    with ovs_lock():
        running = other_ovs()
        if running:
            result["error"] = f"ovs-vswitchd already runs (PID {running}): one at a time"
            return result
        workdir = Path(tempfile.mkdtemp(prefix="lockstep-bench-ovs-"))
        lab = Lab(workdir)
        try:
            run_steps(lab, mode, args, result)
        finally:
            result["ovs_log_warnings"] = len(
                log_problems(lab.ovs.rundir / "ovs-vswitchd.log", ("|WARN|", "|ERR|", "|EMER|"))
            )
            keep_logs(lab, args.log_dir, mode)
            lab.close()
            result["leftovers"] = lab.leftovers()
            result["prefix"], result["pids"] = lab.prefix, lab.pids
            shutil.rmtree(workdir, ignore_errors=True)
    return result


def run_steps(lab: Lab, mode: str, args: argparse.Namespace, result: dict) -> None:
    started = time.monotonic()
    try:
        settings = floodlab.Settings(HEALTH, mode, {"rate": 0}, SINK)
        gw = floodlab.build(lab, ROOT, settings).gw
        if args.nice:
            for pid in (lab.ovs.pids[-1], gw.controller.pid):
                os.setpriority(os.PRIO_PROCESS, pid, args.nice)
        # Ports for tens of thousands of connections a second (each freed by its reset).
        sh("sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65535", ns=gw.client_ns)
        result["setup_s"] = round(time.monotonic() - started, 1)
        print(f"  gateway up in {result['setup_s']} s (prefix {lab.prefix})", flush=True)
        for rate in args.rates:
            result["steps"].append(run_step(gw, rate, args))
            print(progress(result["steps"][-1]), flush=True)
        result["controller_log_errors"] = len(
            log_problems(gw.log, ("ERROR", "Traceback", "Exception"))
        )
    except (RuntimeError, TimeoutError, OSError, ValueError) as error:
        result["error"] = f"{type(error).__name__}: {error}"
        print(f"  FAILED: {result['error']}", file=sys.stderr, flush=True)


def keep_logs(lab: Lab, log_dir: str | None, mode: str) -> None:
    if not log_dir:
        return
    target = Path(log_dir) / mode
    target.mkdir(parents=True, exist_ok=True)
    for log in (lab.workdir / "gw1.log", lab.ovs.rundir / "ovs-vswitchd.log"):
        if log.exists():
            shutil.copy(log, target)


# ---- main ---------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="two 3-second steps (5k/s, max)")
    parser.add_argument("--modes", default="controller,switch",
                        help="VIP modes to run, in order (default %(default)s)")  # fmt: skip
    parser.add_argument(
        "--rates", help="comma-separated connections/s, 'k' suffix or 'max' (default "
        "2k,5k,10k,20k,max)"
    )  # fmt: skip
    parser.add_argument("--duration", type=float, help="seconds per step (default 5; quick 3)")
    parser.add_argument(
        "--drain", type=float, help="most seconds to wait for the queues to drain (10; quick 5)"
    )
    parser.add_argument("--keep-rules", action="store_true",
                        help="keep the per-flow rules of earlier steps (default: each step starts "
                        "without)")  # fmt: skip
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="nice value for ovs-vswitchd and the controller (e.g. -10: the gateway first when "
        "the generators, VMs and router it shares the machine with want the cores too)",
    )
    parser.add_argument("--log-dir", help="keep the controller's and OVS's logs here")
    args = parser.parse_args(argv)
    try:
        args.rates = ovsreport.parse_rates(args.rates) if args.rates else None
        args.modes = ovsreport.parse_modes(args.modes)
    except ValueError as error:
        parser.error(str(error))
    quick = args.quick
    args.rates = args.rates or list(ovsreport.QUICK_RATES if quick else ovsreport.FULL_RATES)
    args.duration = args.duration or (3.0 if quick else 5.0)
    args.drain = args.drain or (5.0 if quick else 10.0)
    if args.duration <= 0 or args.drain <= 0:
        parser.error("--duration and --drain must be positive")
    return args


def preflight() -> list[str]:
    problems = []
    if os.geteuid() != 0:
        problems.append("run as root (namespaces, veths, Open vSwitch)")
    for tool in ("ovs-vswitchd", "ovsdb-server", "ethtool", "ip", "ss"):
        if not shutil.which(tool):
            problems.append(f"{tool} not found (apt-get install openvswitch-switch ethtool "
                            "iproute2)")  # fmt: skip
    return problems


def _stop(signum, frame):
    raise SystemExit(128 + signum)  # the finally clauses clean up


def report(results: list[dict]) -> None:
    for result in results:
        print(f"\n{result['mode']} mode:")
        for line in ovsreport.table(result["steps"]):
            print("  " + line)
        if result["error"]:
            print(f"  error: {result['error']}")
        left = result.get("leftovers")
        print(f"  clean-up: {'nothing left' if not left else 'LEFT ' + ', '.join(left)}")
    by_mode = {result["mode"]: result["steps"] for result in results}
    if {"controller", "switch"} <= by_mode.keys():
        print("\nside by side (controller / switch):")
        for line in ovsreport.side_by_side(by_mode["controller"], by_mode["switch"]):
            print("  " + line)
        print("  " + ovsreport.ratio_verdict(by_mode["controller"], by_mode["switch"]))
    print("  (hs/s: handshakes the VMs completed per second; CPU in cores; intake lost: packets "
          "the kernel dropped on the uplink's socket before OVS read them)")  # fmt: skip


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
        f"{platform.python_version()}, {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.2f}; modes {', '.join(args.modes)}; steps "
        f"{', '.join(map(ovsreport.step_label, args.rates))} of {args.duration:g} s",
        flush=True,
    )
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _stop)
    results = []
    for mode in args.modes:
        print(f"{mode} mode:", flush=True)
        results.append(run_mode(mode, args))
    report(results)
    summary = {
        "python": platform.python_version(),
        "ovs_version": version,
        "cores": os.cpu_count(),
        "duration_s": args.duration,
        "idle_timeout_s": IDLE_TIMEOUT,
        "keep_rules": args.keep_rules,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "run_s": round(time.monotonic() - started, 1),
        "modes": results,
    }
    print(json.dumps(summary, sort_keys=True))
    failed = any(result["error"] or result.get("leftovers") for result in results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
