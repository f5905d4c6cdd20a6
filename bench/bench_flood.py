"""A SYN flood at a real Open vSwitch gateway: what it does to health, clients, established
transfers and the REST API (issue 13, "Overload").

Run (as root; needs Open vSwitch and hping3, ``apt-get install openvswitch-switch hping3``):
    .venv/bin/python bench/bench_flood.py [--quick] [--before REV] [--capacity 5000]
                                          [--multiples 1,2,4,flood] [--duration 8]

The lab (``bench/floodlab.py``): one gateway on a private OVS 3.1 (userspace datapath) with
``lockstep-gateway`` as its controller, three VMs behind VXLAN serving HTTP and answering the
gateway's TCP health probes (interval 1 s, timeout 0.5 s, rise 2, fall 2), a router in front, a
legitimate client and a flooding one behind it.  The flood is ``hping3 -S --rand-source`` at the
VIP: every SYN is a new flow from a source nobody answers to.

Each step offers a multiple of the gateway's new-flow capacity (``--capacity``, measured with
``bench/bench_ovs.py``: ~5k/s here) for ``--duration`` seconds, paced with ``-i u<N>`` (one
hping3 per 5k/s), or ``--flood``.  Before a step the per-flow rules are deleted and every
backend must be up.  Around the flood run: a legitimate client (``bench/floodclient.py``: a new
connection every 75 ms, 2 s timeout), an established download read at 250 kB/s (the demo's
``mininet/traffic.py``), started a second before the flood and sized to end a second after it,
and a REST poller (``GET /v1/status`` every 0.1 s, ``GET /v1/health`` every 0.5 s).  After the
flood the step waits (at most ``--recovery`` s) until a new connection succeeds and every
backend is up.  Per step: the client's success and connect times during the flood, the
download's progress, backend changes seen in ``/v1/health`` and DOWN lines in the controller's
log, REST p99, the controller's packet-ins, where packets were dropped (the uplink's packet
socket in OVS: "intake lost"; meters; OVS's packet-in queues; the datapath's lost upcalls),
switch disconnects, and the recovery time; next to issue 13's targets.

``--modes controller,switch`` (the default) runs the steps once per VIP mode of this tree, each
in a lab of its own built the same way (switch mode: ``placement: port-bits``, ``mode: switch``,
the flood starting once the controller's slot rules are in the switch), then a table with the
modes side by side; per step also the datapath flows at the flood's end and the per-flow rules
(controller mode's, switch mode's learned pins) left by spoofed sources, issue 14's targets
for switch mode (>= 90% of the legitimate client's connections under the unbounded flood, no
pins from spoofed SYNs).

``--before REV`` runs the same steps against another build first: REV checked out into a
throw-away ``git worktree``, its ``ryu_app`` run with ``PYTHONPATH`` pointing at it; then a
table with both side by side.  Each lab holds ``/tmp/lockstep-ovs.lock`` while it lives.  The
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
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import floodlab, floodreport  # noqa: E402
from bench.bench_ovs import clear_rules  # noqa: E402
from bench.floodbuilds import describe, ovs_lock, worktree  # noqa: E402
from bench.floodreport import FLOOD, Step  # noqa: E402
from bench.floodstep import StepRun, Timing  # noqa: E402
from bench.floodwatch import Watch  # noqa: E402
from bench.ovslab import Lab, log_problems, other_ovs  # noqa: E402
from lab.ovs import sh  # noqa: E402

MODES = ("controller", "switch")
DEFAULT_CAPACITY = 5000  # new flows/s: bench/bench_ovs.py here, 5.2-5.3k/s on 2026-12-03


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2x and flood, 4 s each")
    parser.add_argument("--before", metavar="REV", help="also run git revision REV, first")
    parser.add_argument(
        "--modes",
        default="controller,switch",
        help="this tree's VIP modes to run, in order (default %(default)s; --before REV "
        "runs in controller mode)",
    )
    parser.add_argument("--capacity", type=int, default=DEFAULT_CAPACITY,
                        help="the gateway's new flows/s (default %(default)s)")  # fmt: skip
    parser.add_argument("--multiples", help="of the capacity, or 'flood' (default 1,2,4,flood)")
    parser.add_argument("--duration", type=float, help="flood seconds per step (8; quick 4)")
    parser.add_argument("--recovery", type=float, help="most seconds to wait after (15; quick 8)")
    parser.add_argument(
        "--meter",
        type=int,
        metavar="PKTPS",
        help="put a meter of PKTPS on the VIP's punt rule by hand (for builds without a flood "
        "guard: its effect before the feature lands)",
    )
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="nice value for ovs-vswitchd's and the controller's main threads (e.g. -10: the "
        "gateway first when hping3, the VMs and the router it shares the machine with want the "
        "cores too)",
    )
    parser.add_argument("--log-dir", help="keep the controllers' and OVS's logs here")
    args = parser.parse_args(argv)
    try:
        multiples = floodreport.parse_multiples(args.multiples) if args.multiples else None
    except ValueError as error:
        parser.error(f"--multiples: {error}")
    quick = args.quick
    args.multiples = multiples or (
        floodreport.QUICK_MULTIPLES if quick else floodreport.FULL_MULTIPLES
    )
    args.duration = args.duration or (4.0 if quick else 8.0)
    args.recovery = args.recovery or (8.0 if quick else 15.0)
    try:
        args.modes = parse_modes(args.modes)
    except ValueError as error:
        parser.error(f"--modes: {error}")
    if args.capacity <= 0 or args.duration <= 0 or args.recovery <= 0:
        parser.error("--capacity, --duration and --recovery must be positive")
    return args


def parse_modes(text: str) -> list[str]:
    """``controller,switch`` -> ["controller", "switch"]: VIP modes, each once, in order."""
    modes = [item.strip() for item in text.split(",") if item.strip()]
    unknown = [mode for mode in modes if mode not in MODES]
    if unknown or not modes or len(set(modes)) != len(modes):
        raise ValueError(f"{text!r}: give controller, switch or both, each once")
    return modes


def preflight() -> list[str]:
    problems = []
    if os.geteuid() != 0:
        problems.append("run as root (namespaces, veths, Open vSwitch)")
    for tool in ("hping3", "ovs-vswitchd", "ovsdb-server", "ethtool", "ip", "ss", "git"):
        if not shutil.which(tool):
            problems.append(f"{tool} not found (apt-get install hping3 openvswitch-switch "
                            "ethtool iproute2 git)")  # fmt: skip
    return problems


# ---- one build: a lab, its steps ----------------------------------------------------------------


def run_build(name: str, tree: Path, steps: list[Step], args, mode: str = "controller") -> dict:
    """Build a lab running ``tree``'s controller with the VIP in ``mode``, run every step, tear
    the lab down; the build's figures (``error`` set if it failed part way; the steps run
    until then kept)."""
    build = {"name": name, "tree": describe(tree), "mode": mode, "steps": [], "error": None}
    with ovs_lock():
        running = other_ovs()
        if running:
            build["error"] = f"ovs-vswitchd already runs (PID {running}): one at a time"
            return build
        workdir = Path(tempfile.mkdtemp(prefix="lockstep-bench-flood-"))
        lab = Lab(workdir)
        try:
            run_steps(lab, tree, steps, args, build)
        finally:
            keep_logs(lab, args.log_dir, name)
            lab.close()
            build["leftovers"] = lab.leftovers()
            shutil.rmtree(workdir, ignore_errors=True)
    return build


def run_steps(lab: Lab, tree: Path, steps: list[Step], args, build: dict) -> None:
    started = time.monotonic()
    try:
        fl = floodlab.build(lab, tree, floodlab.Settings(mode=build["mode"]))
        if args.nice:
            for pid in (lab.ovs.pids[-1], fl.gw.controller.pid):
                os.setpriority(os.PRIO_PROCESS, pid, args.nice)
            build["nice"] = args.nice
        build["setup_s"] = round(time.monotonic() - started, 1)
        print(f"  gateway up in {build['setup_s']} s (prefix {lab.prefix})", flush=True)
        if args.meter:
            floodlab.meter_punt(fl.gw, args.meter)
            build["meter_by_hand"] = args.meter
        watch = Watch(fl.gw, fl.flood_ns, fl.flood_if, lab.name("rg"), fl.router_ns)
        timing = Timing(args.duration, args.recovery)
        for step in steps:
            clear_rules(fl.gw, 5.0)
            figures = StepRun(fl, watch, step, timing).run()
            figures["multiple"] = multiple_of(step, args.capacity)
            build["steps"].append(figures)
            print(progress(figures), flush=True)
        build["controller_log_errors"] = len(
            log_problems(fl.gw.log, ("ERROR", "Traceback", "Exception"))
        )
    except (RuntimeError, TimeoutError, OSError, ValueError) as error:
        build["error"] = f"{type(error).__name__}: {error}"
        print(f"  FAILED: {build['error']}", file=sys.stderr, flush=True)


def multiple_of(step: Step, capacity: int) -> float:
    return FLOOD if step.rate == FLOOD else round(step.rate / capacity, 2)


def keep_logs(lab: Lab, log_dir: str | None, name: str) -> None:
    if not log_dir:
        return
    target = Path(log_dir) / name.split(maxsplit=1)[0]
    target.mkdir(parents=True, exist_ok=True)
    for log in (lab.workdir / "gw1.log", lab.ovs.rundir / "ovs-vswitchd.log"):
        if log.exists():
            shutil.copy(log, target)


def progress(s: dict) -> str:
    return (
        f"  {s['step']}: offered {s['offered_per_s']:,}/s, legit {s['legit_ok_pct']}% ok, "
        f"{s['flaps']} backend changes, transfer {'done' if s['transfer_done'] else 'NOT done'}, "
        f"REST p99 {s['rest_p99_ms'] or 0:.1f} ms, recovery {s['recovery_s']} s"
    )


# ---- the run ------------------------------------------------------------------------------------


def report(builds: list[dict], steps: list[Step], capacity: int) -> None:
    for build in builds:
        meter = build.get("meter_by_hand")
        by_hand = f", meter {meter:,} pkt/s on the punt rule by hand" if meter else ""
        print(f"\n{build['name']} ({build['tree']}{by_hand}):")
        for line in floodreport.table(build["steps"]):
            print("  " + line)
        problems = floodreport.target_problems(build["steps"], build["mode"])
        print("  targets: " + ("all met" if not problems else "missed: " + "; ".join(problems)))
        if build["error"]:
            print(f"  error: {build['error']}")
        left = build.get("leftovers")
        print(f"  clean-up: {'nothing left' if not left else 'LEFT ' + ', '.join(left)}")
    if len(builds) >= 2:
        print(f"\nside by side ({' / '.join(build['name'] for build in builds)}):")
        for line in floodreport.side_by_side(*(build["steps"] for build in builds)):
            print("  " + line)
    print(
        f"\n  (capacity {capacity:,} new flows/s; steps {', '.join(s.label for s in steps)}; "
        "intake lost: SYNs and probe answers the kernel dropped on OVS's uplink socket; "
        "flaps: backend state changes seen in GET /v1/health; DOWN: controller log lines)"
    )


def _stop(signum, frame):
    raise SystemExit(128 + signum)  # the finally clauses clean up


def main(argv=None) -> int:
    args = parse_args(argv)
    problems = preflight()
    if problems:
        print("cannot run:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    started = time.monotonic()
    steps = floodreport.plan(args.capacity, args.multiples)
    version = sh("ovs-vswitchd", "--version").splitlines()[0].rsplit(" ", 1)[-1]
    print(
        f"Lockstep under a SYN flood: Open vSwitch {version} (userspace datapath), Python "
        f"{platform.python_version()}, {os.cpu_count()} cores; steps "
        f"{', '.join(s.label for s in steps)} of {args.duration:g} s at capacity "
        f"{args.capacity:,}/s",
        flush=True,
    )
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _stop)
    builds = []
    with ExitStack() as stack:
        runs = [(f"{mode} mode", ROOT, mode) for mode in args.modes]
        if args.before:
            before = stack.enter_context(worktree(args.before))
            runs.insert(0, (f"before {args.before}", before, "controller"))
        for name, tree, mode in runs:
            print(f"{name} ({describe(tree)}):", flush=True)
            builds.append(run_build(name, tree, steps, args, mode))
    report(builds, steps, args.capacity)
    summary = {
        "ovs_version": version,
        "python": platform.python_version(),
        "cores": os.cpu_count(),
        "capacity": args.capacity,
        "duration_s": args.duration,
        "run_s": round(time.monotonic() - started, 1),
        "builds": builds,
    }
    print(json.dumps(summary, sort_keys=True, default=str))
    failed = any(b["error"] or b.get("leftovers") for b in builds)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
