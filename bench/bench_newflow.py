"""New-flow benchmark: a fake OpenFlow 1.3 switch against Lockstep and a bare os-ken app.

Run:  .venv/bin/python bench/bench_newflow.py [--quick] [--flows 1000000] [--hub both]
      .venv/bin/python bench/bench_newflow.py --rebuild         (the rebuild phase alone)

The switch (``bench/fakeswitch.py``) sends packet-ins of TCP SYNs, each a fresh 5-tuple, to a
controller started here as a subprocess, and counts what comes back.  A flow is done when both
its flow-mod and its packet-out have arrived, each recognised by content (the flow-mod's match,
the frame in the packet-out), not by order.  Two phases per controller:

- sustained: closed loop, ``--window`` packet-ins outstanding: new flows per second;
- latency: open loop at a fixed rate (default: half that controller's sustained rate):
  first-packet latency, packet-in sent -> flow-mod and packet-out received, p50/p99.

Side by side: Lockstep (``lockstep-gateway``) under each of os-ken's hubs (``--hub``: native
threads, os-ken's default, or eventlet green threads, ``OSKEN_HUB_TYPE=eventlet``);
``bench/reference_app.py``, a bare os-ken app that answers each packet-in with one flow-mod and
one packet-out built by the framework; and a null controller that answers from canned bytes:
its flows/s is the tool's own ceiling, its latency (at Lockstep's rate) what the tool itself
adds.  The switch runs alone in this process, single-threaded; each controller has its own
process.  CPU use is read from /proc: controller CPU per new flow is the figure least moved by
other load on the machine, which is reported too.

``--flows N`` also measures memory: Lockstep's resident memory (/proc/PID/smaps_rollup) before
and after N new flows are placed, per entry its flow table gained (``GET /v1/flows``; the table
holds at most 1,000,000: beyond, each new flow evicts the least recently used), and the
sustained rate before (a short phase, 2 s) and after side by side.  The flow table is the
controller's only per-flow state that lasts; the rules installed in the last 2-4 s
(``gateway.RecentInstalls``, bounded by the rate) are about as many in both readings.

REST load (Lockstep, unless ``--no-rest-load``): both phases again while a client in a process
of its own loops on the heaviest REST reads and writes (``bench/restload.py``: deep pages of
``/v1/flows``, status, health, metrics, a PATCH and a PUT that each need a new Maglev table),
side by side with the figures without it.  With ``--flows 1000000`` the pages are a million
flows deep.  ``--rest-rounds N`` measures the latency without and with the client N times in
turn and reports the medians (a latency tail moves with whatever else the machine runs).

``--rebuild`` (part of the full run) drives a Lockstep with 100 VIPs of 100 backends through a
backend failure that rebuilds every VIP's Maglev table, under load (``bench/rebuild.py``).

The last line is one JSON object with every figure, for scripts and for the README; before it,
a summary table in Markdown.  Keys of Lockstep's figures name the hub
(``lockstep_native_flows_per_s``); the default hub's are also given without it
(``lockstep_flows_per_s``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import procs, rebuild, rebuild_report, rebuild_setup, report, restload  # noqa: E402
from bench.fakeswitch import ControllerError, FakeSwitch, PhaseResult  # noqa: E402
from bench.procs import DEFAULT_HUB, HUBS, Controller, free_port  # noqa: E402
from bench.report import label  # noqa: E402
from bench.switchwire import DPID, GATEWAY_MAC, TUNNEL, UPLINK, VIP  # noqa: E402
from ryu_app.core.pipeline import PRIORITY_VIP  # noqa: E402

# ---- the controllers ----------------------------------------------------------------------------

CONTROLLERS = ("lockstep", "reference", "null")
START_TIMEOUT = 30.0
VNI = 100
BACKENDS = [(f"vm{i}", f"192.168.100.{10 + i}", f"02:00:00:00:01:{i:02x}") for i in range(1, 5)]
SETTLE_SECONDS = 1.0  # after the prefill, before reading memory: the controller's queues drain


def deployment(openflow_port: int, rest_port: int, workdir: Path) -> dict:
    """A one-gateway deployment whose port names and dpid are the fake switch's."""
    return {
        "version": 1,
        "vips": [
            {
                "name": "web",
                "address": VIP[0],
                "port": VIP[1],
                "protocol": "tcp",
                "idle_timeout": 4095,  # prefilled flows outlive even a slow prefill
                "vni": VNI,
                # Nothing answers health probes here: probe rarely, and take 100 failures to go
                # down, so the backends stay up for the whole run however probing is done.
                "health": {"type": "tcp", "interval": 3600, "timeout": 1, "rise": 1, "fall": 100},
                "backends": [
                    {"name": name, "tunnel_ip": address, "mac": mac}
                    for name, address, mac in BACKENDS
                ],
            }
        ],
        "gateways": [
            {
                "name": "gw1",
                "dpid": DPID,
                "addresses": ["10.0.1.1"],
                "mac": ":".join(f"{byte:02x}" for byte in GATEWAY_MAC),
                "uplink_port": UPLINK[1],
                "tunnel_port": TUNNEL[1],
                "tunnel_ip": "192.168.100.1",
                "openflow": f"127.0.0.1:{openflow_port}",
                "rest": f"127.0.0.1:{rest_port}",
                "state_file": str(workdir / "lockstep-state.json"),
                # The controller's own speed is what this measures; the fake switch has no
                # meters, so a flood guard would run in the controller and cap it.
                "flood_guard": {"rate": 0},
            }
        ],
    }


def lockstep_command(config: Path) -> list[str]:
    launcher = Path(sys.executable).parent / "lockstep-gateway"
    command = [str(launcher)] if launcher.exists() else [sys.executable, "-m", "ryu_app"]
    return command + ["--config", str(config), "--gateway", "gw1", "--log-level", "WARNING"]


def lockstep_controller(
    workdir: Path, hub: str, make_deployment=deployment, stem: str = ""
) -> Controller:
    """Lockstep under one of os-ken's hubs (chosen when os-ken is imported: the environment).
    ``stem`` names its files (deployment, log; default: the run's name)."""
    name = f"lockstep_{hub}"
    port, rest_port = free_port(), free_port()
    config = workdir / f"{stem or name}.yaml"
    data = make_deployment(port, rest_port, workdir)
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    log = workdir / f"{stem or name}.log"
    env = {"OSKEN_HUB_TYPE": hub}
    return Controller(name, lockstep_command(config), port, PRIORITY_VIP, log, env, rest_port)


def reference_controller(workdir: Path) -> Controller:
    port = free_port()
    command = [sys.executable, str(ROOT / "bench" / "reference_app.py"), "--port", str(port)]
    command += ["--uplink", str(UPLINK[0]), "--tunnel", str(TUNNEL[0]), "--vni", str(VNI)]
    for _, address, mac in BACKENDS:
        command += ["--backend", f"{address}={mac}"]
    return Controller("reference", command, port, 0, workdir / "reference.log")


def null_controller(workdir: Path) -> Controller:
    port = free_port()
    command = [sys.executable, str(ROOT / "bench" / "nullcontroller.py"), str(port)]
    return Controller("null", command, port, 0, workdir / "null.log")


# ---- one controller, both modes -----------------------------------------------------------------


def flow_table(rest_port: int) -> tuple[int, int]:
    """(entries, evictions so far) of Lockstep's flow table, from GET /v1/flows."""
    flows = json.loads(procs.rest_get(rest_port, "/v1/flows?limit=1"))
    return flows["count"], flows["counters"]["evictions"]


def bench_controller(controller: Controller, args: argparse.Namespace, rate: float = 0.0) -> dict:
    """Both phases against one controller; the open loop runs at ``--rate``, else ``rate``,
    else half the sustained rate just measured.  With ``--flows`` (Lockstep only): a sustained
    phase, memory, the prefill, memory again, then both phases."""
    print(f"  {label(controller.name)}: starting ...", flush=True)
    process = procs.start(controller)

    def alive() -> bool:
        return process.poll() is None

    def cpu_clocks() -> tuple[float, float]:
        return procs.cpu_seconds(process.pid)

    def sustained_phase(what: str, warmup: float, duration: float) -> PhaseResult:
        phase = switch.run(
            window=args.window, warmup=warmup, duration=duration, cpu_clocks=cpu_clocks
        )
        print(f"    sustained{what}: {phase.flows_per_s:,.0f} new flows/s", flush=True)
        return phase

    switch = None
    rest_load = None
    prefill_flows = args.flows if controller.rest_port else 0
    memory: dict = {}
    prefill_s = 0.0
    try:
        deadline = time.monotonic() + START_TIMEOUT
        switch = FakeSwitch.connect(("127.0.0.1", controller.port), deadline, alive)
        switch.wait_ready(controller.ready_priority, START_TIMEOUT, alive)
        if prefill_flows:
            memory["rss_start"] = procs.rss_bytes(process.pid)
            # Short: its flows stay in the table, and the prefill's entries are what is measured.
            memory["before"] = sustained_phase(
                " (before the prefill)", min(args.warmup, 0.5), min(args.duration, 2.0)
            )
            memory["rss_before"] = procs.rss_bytes(process.pid)
            memory["entries_before"], _ = flow_table(controller.rest_port)
            prefill_s = switch.prefill(prefill_flows, args.window)
            time.sleep(SETTLE_SECONDS)
            memory["rss_after"] = procs.rss_bytes(process.pid)
            memory["entries_after"], memory["evictions"] = flow_table(controller.rest_port)
            print(
                f"    prefilled {prefill_flows:,} flows in {prefill_s:.1f} s: the table holds "
                f"{memory['entries_after']:,}",
                flush=True,
            )
        sustained = sustained_phase("", args.warmup, args.duration)
        rate = args.rate or rate or sustained.flows_per_s / 2
        latency = switch.run(
            rate=rate, warmup=args.warmup, duration=args.duration, cpu_clocks=cpu_clocks
        )
        print(
            f"    latency at {rate:,.0f}/s: p50 {latency.percentile_ms(0.5) or 0:.2f} ms, "
            f"p99 {latency.percentile_ms(0.99) or 0:.2f} ms",
            flush=True,
        )
        if controller.rest_port and not args.no_rest_load:
            rest_load = restload.phases(
                switch, controller.rest_port, args, rate, cpu_clocks, latency
            )
    except (ControllerError, OSError, RuntimeError) as error:
        raise procs.failed(controller, process, error) from None
    finally:
        if switch is not None:
            switch.close()
        procs.stop(process)
    return {
        "sustained": sustained,
        "latency": latency,
        "counters": switch.counters,
        "prefill_flows": prefill_flows,
        "prefill_s": prefill_s,
        "memory": memory,
        "rest_load": rest_load,
        "log_problems": procs.log_problems(controller.log),
    }


# ---- the run ------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    """The command line.  Long because it is one declaration per option, in the order --help
    lists them, and nothing else."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="short phases (0.5 s warm-up, 2 s), no rebuild"
    )
    parser.add_argument("--window", type=int, default=128, help="closed loop: flows outstanding")
    parser.add_argument("--duration", type=float, help="seconds per measured phase (default 10)")
    parser.add_argument("--warmup", type=float, help="seconds before each phase (default 2)")
    parser.add_argument(
        "--rate", type=float, help="open-loop rate for all (default: half each one's sustained)"
    )
    parser.add_argument(
        "--flows",
        type=int,
        default=0,
        help="new flows placed in Lockstep before measuring; reports its memory per entry",
    )
    parser.add_argument(
        "--only", action="append", choices=CONTROLLERS, help="measure only this (repeatable)"
    )
    parser.add_argument(
        "--no-rest-load",
        action="store_true",
        help="skip Lockstep's phases under a looping REST client (bench/restload.py)",
    )
    parser.add_argument(
        "--rest-rounds",
        type=int,
        default=1,
        help="latency without and with the REST client, in turn, this many times (medians "
        "reported: the tails are noisy on a shared machine)",
    )
    parser.add_argument(
        "--hub",
        choices=(*HUBS, "both"),
        help="os-ken hub(s) to run Lockstep under (default: both; --quick: native)",
    )
    group = parser.add_argument_group("the rebuild phase (bench/rebuild.py)")
    group.add_argument(
        "--rebuild",
        action="store_true",
        help="run the rebuild phase (alone, unless --only names controllers too)",
    )
    group.add_argument(
        "--rebuild-vips", type=int, default=100, help="VIPs, 10.0.0.1 and on (default 100)"
    )
    group.add_argument(
        "--rebuild-backends", type=int, default=100, help="VMs, each in every VIP (default 100)"
    )
    group.add_argument(
        "--rebuild-rate",
        type=float,
        help="new flows/s (default: half the sustained rate of the same controller, measured "
        "just before, at most what keeps it and the probes' answers under "
        f"{rebuild.OVERLOAD_SHARE * 100:.0f}%% of the gateway's overload threshold: 3,000 with "
        "100 x 100 probed every 10 s)",
    )
    group.add_argument(
        "--health-interval",
        type=float,
        default=10.0,
        help="seconds between two probes of a backend of a VIP (default 10: with 100 x 100, "
        "1,000 probes/s)",
    )
    group.add_argument("--health-timeout", type=float, default=1.0, help="seconds (default 1)")
    group.add_argument(
        "--health-fall",
        type=int,
        default=2,
        help="failures to mark down (default 2: with 1, a single probe answered after its timeout, "
        "e.g. behind a burst of probes, marks a healthy backend down)",
    )
    group.add_argument(
        "--shared-tables",
        action="store_true",
        help="equal weights in every VIP: they share one Maglev table (one build, not one each)",
    )
    parser.add_argument("--log-dir", help="keep the controllers' logs in this directory")
    args = parser.parse_args()
    if args.duration is None:
        args.duration = 2.0 if args.quick else 10.0
    if args.warmup is None:
        args.warmup = 0.5 if args.quick else 2.0
    if args.hub is None:
        args.hub = DEFAULT_HUB if args.quick else "both"
    args.hubs = HUBS if args.hub == "both" else (args.hub,)
    if args.window < 1 or args.duration <= 0 or args.warmup < 0 or args.flows < 0:
        parser.error("--window >= 1, --duration > 0, --warmup >= 0 and --flows >= 0, please")
    if args.rest_rounds < 1:
        parser.error("--rest-rounds >= 1, please")
    if not 1 <= args.rebuild_vips <= rebuild_setup.MAX_VIPS:
        parser.error(f"--rebuild-vips: 1..{rebuild_setup.MAX_VIPS}, please")
    if not 2 <= args.rebuild_backends <= rebuild_setup.MAX_BACKENDS:
        parser.error(f"--rebuild-backends: 2..{rebuild_setup.MAX_BACKENDS}, please")
    # What runs: the new-flow phases of --only (all without it, unless --rebuild alone), and the
    # rebuild phase with --rebuild or in a full run.
    if args.only:
        args.controllers = [c for c in CONTROLLERS if c in args.only]
    else:
        args.controllers = [] if args.rebuild else list(CONTROLLERS)
    args.run_rebuild = args.rebuild or not (args.only or args.quick)
    return args


def rebuild_plan(args: argparse.Namespace) -> rebuild_setup.RebuildPlan:
    return rebuild_setup.RebuildPlan(
        vips=args.rebuild_vips,
        backends=args.rebuild_backends,
        interval=args.health_interval,
        timeout=args.health_timeout,
        fall=args.health_fall,
        rate=args.rebuild_rate,
        shared_tables=args.shared_tables,
        baseline=2.0 if args.quick else 3.0,
    )


def keep_log(args: argparse.Namespace, controller: Controller) -> None:
    if args.log_dir and controller.log.exists():
        Path(args.log_dir).mkdir(parents=True, exist_ok=True)
        shutil.copy(controller.log, args.log_dir)


def run_all(args: argparse.Namespace, workdir: Path) -> tuple[dict, dict, dict]:
    """Every phase asked for: (new-flow results, rebuild results, failures), each by run name.
    A controller that fails is reported and the run goes on with the next."""
    results: dict = {}
    failures: dict = {}
    for name in args.controllers:
        if name == "lockstep":
            controllers = [lockstep_controller(workdir, hub) for hub in args.hubs]
        else:
            controllers = [FACTORIES[name](workdir)]
        for controller in controllers:
            rate = 0.0
            ours = report.default_lockstep(results)
            if name == "null" and ours:  # the tool's latency at Lockstep's rate
                rate = results[ours]["latency"].offered_per_s
            try:
                results[controller.name] = bench_controller(controller, args, rate)
            except ControllerError as error:
                failures[controller.name] = str(error)
                print(f"    FAILED: {error}", flush=True)
            finally:
                keep_log(args, controller)
    rebuilds: dict = {}
    for hub in args.hubs if args.run_rebuild else ():
        plan = rebuild_plan(args)
        controller = lockstep_controller(
            workdir,
            hub,
            lambda port, rest, where, plan=plan: rebuild_setup.deployment(plan, port, rest, where),
            stem=f"lockstep_{hub}_rebuild",
        )
        print(f"  {label(controller.name)}, rebuild phase: starting ...", flush=True)
        try:
            rebuilds[controller.name] = rebuild.bench_rebuild(controller, plan)
        except ControllerError as error:
            failures[f"{controller.name}_rebuild"] = str(error)
            print(f"    FAILED: {error}", flush=True)
        finally:
            keep_log(args, controller)
    return results, rebuilds, failures


FACTORIES = {"reference": reference_controller, "null": null_controller}


def main() -> int:
    args = parse_args()
    started = time.monotonic()
    print(
        f"Lockstep new-flow benchmark  (Python {platform.python_version()}, {os.cpu_count()} "
        f"cores, window {args.window}, {args.duration:g} s per phase, "
        f"hub(s): {', '.join(args.hubs)})",
        flush=True,
    )
    workdir = Path(tempfile.mkdtemp(prefix="lockstep-bench-"))
    try:
        results, rebuilds, failures = run_all(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if results:
        report.print_table(results)
        report.print_checks(results)
    for name, result in results.items():
        restload.print_side_by_side(label(name), result)
    if any(result["memory"] for result in results.values()):
        print(f"memory (Lockstep's flow table, {args.flows:,} flows placed):")
        report.print_memory(results)
    if rebuilds:
        print("rebuild (a backend of every VIP dies; each VIP's Maglev table is rebuilt):")
    for name, result in rebuilds.items():
        rebuild_report.print_rebuild(name, result)
    report.print_targets(results, rebuilds)
    if results or rebuilds:
        report.print_summary(results, rebuilds)
    for name, error in failures.items():
        print(f"FAILED: {name}: {error}", file=sys.stderr)
    summary: dict = {
        "python": platform.python_version(),
        "window": args.window,
        "duration_s": args.duration,
        "hubs": list(args.hubs),
        "run_s": round(time.monotonic() - started, 1),
        "failures": sorted(failures),
    }
    for name, result in results.items():
        summary.update(report.summarise(name, result))
        summary.update(restload.summarise(name, result))
    for name, result in rebuilds.items():
        summary.update(rebuild_report.summarise_rebuild(name, result))
    ours = report.default_lockstep({**results, **rebuilds})
    if ours:  # the default hub's figures under the unqualified names, for scripts
        summary["lockstep_hub"] = ours.removeprefix("lockstep_")
        for key in [k for k in summary if k.startswith(f"{ours}_")]:
            summary["lockstep_" + key.removeprefix(f"{ours}_")] = summary[key]
    if "lockstep_flows_per_s" in summary and "reference_flows_per_s" in summary:
        summary["ratio_flows_per_s"] = round(
            summary["lockstep_flows_per_s"] / max(summary["reference_flows_per_s"], 1), 3
        )
    print(json.dumps(summary, sort_keys=True))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
