"""New-flow benchmark: a fake OpenFlow 1.3 switch against Lockstep and a bare os-ken app.

Run:  .venv/bin/python bench/bench_newflow.py [--quick] [--flows 1000000]

The switch (``bench/fakeswitch.py``) sends packet-ins of TCP SYNs, each a fresh 5-tuple, to a
controller started here as a subprocess, and counts what comes back.  A flow is done when both
its flow-mod and its packet-out have arrived, each recognised by content (the flow-mod's match,
the frame in the packet-out), not by order.  Two phases per controller:

- sustained: closed loop, ``--window`` packet-ins outstanding: new flows per second;
- latency: open loop at a fixed rate (default: half that controller's sustained rate):
  first-packet latency, packet-in sent -> flow-mod and packet-out received, p50/p99.

Side by side: Lockstep (``lockstep-gateway``); ``bench/reference_app.py``, a bare os-ken app
that answers each packet-in with one flow-mod and one packet-out built by the framework; and a
null controller that answers from canned bytes: its flows/s is the tool's own ceiling, its
latency (at Lockstep's rate) what the tool itself adds.  The switch runs alone in this process,
single-threaded; each controller has its own process.  CPU use is read from /proc: controller
CPU per new flow is the figure least moved by other load on the machine, which is reported too.

The last line is one JSON object with every figure, for scripts and for the README.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.fakeswitch import (  # noqa: E402
    DPID,
    GATEWAY_MAC,
    TUNNEL,
    UPLINK,
    VIP,
    ControllerError,
    FakeSwitch,
    PhaseResult,
)
from ryu_app.ofmsg import COOKIE_KIND_SHIFT, COOKIE_TAG, KIND_FLOW, PRIORITY_VIP  # noqa: E402

TARGET_FLOWS_PER_S = 20_000
TARGET_P99_MS = 2.0

# ---- the controllers ----------------------------------------------------------------------------

CONTROLLERS = ("lockstep", "reference", "null")
START_TIMEOUT = 30.0
VNI = 100
BACKENDS = [(f"vm{i}", f"192.168.100.{10 + i}", f"02:00:00:00:01:{i:02x}") for i in range(1, 5)]
OTHER_LOAD_WARNING = 0.15  # cores busy outside the switch and the controller
LOCKSTEP_FLOW_COOKIE = (COOKIE_TAG >> COOKIE_KIND_SHIFT) | KIND_FLOW  # cookie >> 40 of its rules


@dataclass
class Controller:
    name: str
    command: list[str]
    port: int
    ready_priority: int  # the flow-mod that says its pipeline is in
    log: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
            }
        ],
    }


def lockstep_controller(workdir: Path) -> Controller:
    port = free_port()
    config = workdir / "deployment.yaml"
    config.write_text(yaml.safe_dump(deployment(port, free_port(), workdir), sort_keys=False))
    launcher = Path(sys.executable).parent / "lockstep-gateway"
    command = [str(launcher)] if launcher.exists() else [sys.executable, "-m", "ryu_app"]
    command += ["--config", str(config), "--gateway", "gw1", "--log-level", "WARNING"]
    return Controller("lockstep", command, port, PRIORITY_VIP, workdir / "lockstep.log")


def reference_controller(workdir: Path) -> Controller:
    port = free_port()
    command = [sys.executable, str(ROOT / "bench" / "reference_app.py"), "--port", str(port)]
    command += ["--uplink", str(UPLINK[0]), "--tunnel", str(TUNNEL[0]), "--vni", str(VNI)]
    for _, address, mac in BACKENDS:
        command += ["--backend", f"{address}={mac}"]
    return Controller("reference", command, port, 0, workdir / "reference.log")


def null_controller(workdir: Path) -> Controller:
    port = free_port()
    command = [
        sys.executable,
        str(ROOT / "bench" / "fakeswitch.py"),
        "--null-controller",
        str(port),
    ]
    return Controller("null", command, port, 0, workdir / "null.log")


FACTORIES = {
    "lockstep": lockstep_controller,
    "reference": reference_controller,
    "null": null_controller,
}


def cpu_seconds(pid: int) -> tuple[float, float]:
    """Busy CPU seconds of a process (user + system) and of the whole machine, from /proc
    (zeros where there is none)."""
    try:
        process = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        machine = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return 0.0, 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    # /proc/stat "cpu": user nice system idle iowait irq softirq steal ...
    busy = sum(int(machine[i]) for i in (1, 2, 3, 6, 7, 8))
    return (int(process[11]) + int(process[12])) / ticks, busy / ticks


def log_problems(log: Path, limit: int = 5) -> tuple[int, list[str]]:
    """How many lines of a controller's log say ERROR/Traceback/Exception, and the first few."""
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    bad = [line for line in lines if any(w in line for w in ("ERROR", "Traceback", "Exception"))]
    return len(bad), bad[:limit]


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


# ---- one controller, both modes -----------------------------------------------------------------


def bench_controller(controller: Controller, args: argparse.Namespace, rate: float = 0.0) -> dict:
    """Both phases against one controller; the open loop runs at ``--rate``, else ``rate``,
    else half the sustained rate just measured."""
    print(f"  {LABELS[controller.name]}: starting ...", flush=True)
    with controller.log.open("wb") as log:
        process = subprocess.Popen(
            controller.command, stdout=log, stderr=subprocess.STDOUT, cwd=controller.log.parent
        )

    def alive() -> bool:
        return process.poll() is None

    def cpu_clocks() -> tuple[float, float]:
        return cpu_seconds(process.pid)

    switch = None
    try:
        deadline = time.monotonic() + START_TIMEOUT
        switch = FakeSwitch.connect(("127.0.0.1", controller.port), deadline, alive)
        switch.wait_ready(controller.ready_priority, START_TIMEOUT, alive)
        prefill_flows = args.flows if controller.name == "lockstep" else 0
        prefill_s = switch.prefill(prefill_flows, args.window) if prefill_flows else 0.0
        if prefill_flows:
            print(f"    prefilled {prefill_flows:,} flows in {prefill_s:.1f} s", flush=True)
        sustained = switch.run(
            window=args.window,
            warmup=args.warmup,
            duration=args.duration,
            cpu_clocks=cpu_clocks,
        )
        print(f"    sustained: {sustained.flows_per_s:,.0f} new flows/s", flush=True)
        rate = args.rate or rate or sustained.flows_per_s / 2
        latency = switch.run(
            rate=rate, warmup=args.warmup, duration=args.duration, cpu_clocks=cpu_clocks
        )
        print(
            f"    latency at {rate:,.0f}/s: p50 {latency.percentile_ms(0.5) or 0:.2f} ms, "
            f"p99 {latency.percentile_ms(0.99) or 0:.2f} ms",
            flush=True,
        )
    except ControllerError as error:
        stop(process)
        tail = controller.log.read_text(errors="replace").splitlines()[-15:]
        log = "".join(f"\n    {line}" for line in tail) or " (empty)"
        raise ControllerError(f"{controller.name}: {error}; its log ends:{log}") from None
    finally:
        if switch is not None:
            switch.close()
        stop(process)
    return {
        "sustained": sustained,
        "latency": latency,
        "counters": switch.counters,
        "prefill_flows": prefill_flows,
        "prefill_s": prefill_s,
        "log_problems": log_problems(controller.log),
    }


# ---- report -------------------------------------------------------------------------------------

LABELS = {"lockstep": "lockstep", "reference": "reference (os-ken)", "null": "null (the tool)"}


def ms(value: float | None) -> str:
    return f"{value:7.2f} ms" if value is not None else "      - ms"


def p50_p99(phase: PhaseResult) -> tuple[float | None, float | None]:
    return phase.percentile_ms(0.5), phase.percentile_ms(0.99)


def cpu_per_flow_us(phase: PhaseResult) -> float:
    """Controller CPU per new flow: unlike flows/s, barely moved by other load on the machine."""
    return phase.controller_cpu / phase.flows_per_s * 1e6 if phase.flows_per_s else 0.0


def summarise(name: str, result: dict) -> dict:
    sustained, latency, counters = result["sustained"], result["latency"], result["counters"]
    p50, p99 = p50_p99(latency)
    summary = {
        "flows_per_s": round(sustained.flows_per_s),
        "closed_loop_p50_ms": round(sustained.percentile_ms(0.5) or 0, 3),
        "latency_rate_per_s": round(latency.offered_per_s),
        "latency_achieved_per_s": round(latency.flows_per_s),
        "p50_ms": round(p50 or 0, 3),
        "p99_ms": round(p99 or 0, 3),
        "max_ms": round(latency.latencies_ms[-1] if latency.latencies_ms else 0, 3),
        "incomplete": sustained.incomplete + latency.incomplete,
        "no_flow_mod": sustained.no_flow_mod + latency.no_flow_mod,
        "not_offered": latency.not_offered,
        "duplicates": counters.duplicates,
        "foreign_packet_outs": counters.foreign_packet_outs,
        "controller_cpu": round(sustained.controller_cpu, 2),
        "controller_us_per_flow": round(cpu_per_flow_us(sustained), 1),
        "switch_cpu": round(sustained.switch_cpu, 2),
        "other_cpu": round(max(sustained.other_cpu, latency.other_cpu), 2),
        "log_errors": result["log_problems"][0],
        "prefill_flows": result["prefill_flows"],
        "prefill_s": round(result["prefill_s"], 1),
    }
    if name == "lockstep":
        kinds = counters.flow_cookie_kinds
        summary["wrong_cookies"] = sum(n for k, n in kinds.items() if k != LOCKSTEP_FLOW_COOKIE)
    return {f"{name}_{key}": value for key, value in summary.items()}


def print_table(results: dict) -> None:
    print(
        f"  {'':20s} {'new flows/s':>11s} {'latency at':>11s} {'p50':>10s} {'p99':>10s} "
        f"{'max':>10s} {'CPU/flow':>9s}   cores: controller switch other"
    )
    for name, result in results.items():
        sustained, latency = result["sustained"], result["latency"]
        p50, p99 = p50_p99(latency)
        worst = latency.latencies_ms[-1] if latency.latencies_ms else None
        print(
            f"  {LABELS[name]:20s} {sustained.flows_per_s:11,.0f} {latency.offered_per_s:9,.0f}/s "
            f"{ms(p50)} {ms(p99)} {ms(worst)} {cpu_per_flow_us(sustained):6.0f} us"
            f"   {sustained.controller_cpu:16.2f} "
            f"{sustained.switch_cpu:6.2f} {max(sustained.other_cpu, latency.other_cpu):5.2f}"
        )
    if "lockstep" in results and "reference" in results:
        ours, ref = results["lockstep"], results["reference"]
        (p50, p99), (ref_p50, ref_p99) = p50_p99(ours["latency"]), p50_p99(ref["latency"])
        print(
            f"  {'lockstep/reference':20s} "
            f"{ratio(ours['sustained'].flows_per_s, ref['sustained'].flows_per_s):>11s} "
            f"{'':11s} {ratio(p50, ref_p50):>10s} {ratio(p99, ref_p99):>10s} {'':10s} "
            f"{ratio(cpu_per_flow_us(ours['sustained']), cpu_per_flow_us(ref['sustained'])):>9s}"
        )


def ratio(ours: float | None, reference: float | None) -> str:
    return f"{ours / reference:.2f}x" if ours and reference else "-"


def print_checks(results: dict) -> None:
    """What came back besides the answers, and anything wrong with the answers."""
    for name, result in results.items():
        counters, sustained, latency = result["counters"], result["sustained"], result["latency"]
        errors, first = result["log_problems"]
        print(
            f"  {name}: {counters.flow_mods:,} flow-mods, {counters.packet_outs:,} packet-outs "
            f"({counters.foreign_packet_outs} not for a SYN of ours), "
            f"{counters.duplicates} duplicates, {sustained.incomplete + latency.incomplete} "
            f"incomplete ({sustained.no_flow_mod + latency.no_flow_mod} without flow-mod), "
            f"{latency.not_offered} not offered, {errors} error line(s) in its log"
        )
        if name == "lockstep":
            kinds = {f"{k << 40:#x}": n for k, n in counters.flow_cookie_kinds.items()}
            if set(counters.flow_cookie_kinds) - {LOCKSTEP_FLOW_COOKIE}:
                print(f"      per-flow rules with a cookie outside Lockstep's flow kind: {kinds}")
        for line in first:
            print(f"      log: {line[:160]}")
        if counters.other_messages or counters.errors:
            print(f"      other messages {dict(counters.other_messages)}, errors {counters.errors}")
        if latency.flows_per_s < 0.95 * latency.offered_per_s:
            print(
                f"      overloaded: {latency.offered_per_s:,.0f}/s offered, "
                f"{latency.flows_per_s:,.0f}/s answered; the latency is queueing"
            )
        if sustained.switch_cpu > 0.8:
            print("      warning: the fake switch was busy >80%: the figure may be the tool's")
        other = max(sustained.other_cpu, latency.other_cpu)
        if other > OTHER_LOAD_WARNING:
            print(
                f"      warning: other processes kept {other:.1f} cores busy meanwhile "
                f"(of {os.cpu_count()}): figures are skewed, latency tails most"
            )


def print_targets(lockstep: dict) -> None:
    rate = lockstep["latency"].offered_per_s
    p99 = lockstep["latency"].percentile_ms(0.99)
    print(f"targets (Lockstep, {lockstep['prefill_flows']:,} flows prefilled):")
    verdicts = [
        (
            f">= {TARGET_FLOWS_PER_S:,} new flows/s",
            lockstep["sustained"].flows_per_s >= TARGET_FLOWS_PER_S,
        ),
        (f"p99 <= {TARGET_P99_MS} ms at {rate:,.0f}/s", p99 is not None and p99 <= TARGET_P99_MS),
    ]
    for label, met in verdicts:
        print(f"  {label}: {'met' if met else 'NOT met'}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short phases (0.5 s warm-up, 2 s)")
    parser.add_argument("--window", type=int, default=128, help="closed loop: flows outstanding")
    parser.add_argument("--duration", type=float, help="seconds per measured phase (default 10)")
    parser.add_argument("--warmup", type=float, help="seconds before each phase (default 2)")
    parser.add_argument(
        "--rate", type=float, help="open-loop rate for all (default: half each one's sustained)"
    )
    parser.add_argument(
        "--flows", type=int, default=0, help="new flows placed in Lockstep before measuring"
    )
    parser.add_argument(
        "--only", action="append", choices=CONTROLLERS, help="measure only this (repeatable)"
    )
    parser.add_argument("--log-dir", help="keep the controllers' logs in this directory")
    args = parser.parse_args()
    if args.duration is None:
        args.duration = 2.0 if args.quick else 10.0
    if args.warmup is None:
        args.warmup = 0.5 if args.quick else 2.0
    if args.window < 1 or args.duration <= 0 or args.warmup < 0 or args.flows < 0:
        parser.error("--window >= 1, --duration > 0, --warmup >= 0 and --flows >= 0, please")
    return args


def main() -> int:
    args = parse_args()
    started = time.monotonic()
    print(
        f"Lockstep new-flow benchmark  (Python {platform.python_version()}, {os.cpu_count()} "
        f"cores, window {args.window}, {args.duration:g} s per phase)",
        flush=True,
    )
    results: dict = {}
    workdir = Path(tempfile.mkdtemp(prefix="lockstep-bench-"))
    try:
        for name in [c for c in CONTROLLERS if c in (args.only or CONTROLLERS)]:
            controller = FACTORIES[name](workdir)
            rate = 0.0
            if name == "null" and "lockstep" in results:  # the tool's latency at Lockstep's rate
                rate = results["lockstep"]["latency"].offered_per_s
            try:
                results[name] = bench_controller(controller, args, rate)
            finally:
                if args.log_dir:
                    Path(args.log_dir).mkdir(parents=True, exist_ok=True)
                    shutil.copy(controller.log, args.log_dir)
    except ControllerError as error:
        print(f"FAILED: {error}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print_table(results)
    print_checks(results)
    if "lockstep" in results:
        print_targets(results["lockstep"])
    summary: dict = {
        "python": platform.python_version(),
        "window": args.window,
        "duration_s": args.duration,
        "run_s": round(time.monotonic() - started, 1),
    }
    for name, result in results.items():
        summary.update(summarise(name, result))
    if "lockstep" in results and "reference" in results:
        summary["ratio_flows_per_s"] = round(
            summary["lockstep_flows_per_s"] / max(summary["reference_flows_per_s"], 1), 3
        )
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
