"""One step of ``bench/bench_flood.py``: normal traffic, a flood of one rate, the recovery.

    wait until every backend is up
    start: REST poller, legitimate client, established download    (``Timing.lead`` s)
    snapshot counters; hping3 lanes for ``Timing.duration`` s; kill them
    wait until a new connection succeeds and every backend is up  (at most ``Timing.recovery``)
    wait for the download; stop everything; snapshot counters; summarise

The figures are computed by ``bench/floodreport.py`` from what the processes wrote.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench import floodreport
from bench.floodlab import CLIENT_ADDRESS, ROOT, FloodLab
from bench.floodreport import Step
from bench.floodwatch import Poll, Poller, Watch
from bench.ovscounters import cpu_cores, cpu_sample
from bench.ovslab import VIP, VIP_PORT

CLIENT = ROOT / "bench" / "floodclient.py"
TRAFFIC = ROOT / "mininet" / "traffic.py"
HOLD_AFTER_RECOVERY = 1.0  # s of polling after recovery: a late flap is still seen


@dataclass(frozen=True)
class Timing:
    duration: float  # s of flood
    recovery: float  # most s to wait for recovery after it
    lead: float = 1.0  # s of normal traffic before it
    transfer_rate: int = 250_000  # bytes/s the established download reads
    settle: float = 15.0  # most s to wait for every backend to be up before a step


def read_lines(path: Path) -> list[dict]:
    """The JSON lines a client wrote so far (a line being written is skipped)."""
    rows = []
    if path.exists():
        for line in path.read_text(errors="replace").splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                rows.append(json.loads(line))
    return rows


class StepRun:
    def __init__(self, fl: FloodLab, watch: Watch, step: Step, timing: Timing):
        self.fl, self.gw, self.watch, self.step, self.timing = fl, fl.gw, watch, step, timing
        work = self.gw.lab.workdir
        self.client_log = work / f"client-{step.label}.jsonl"
        self.transfer_log = work / f"transfer-{step.label}.jsonl"

    def run(self) -> dict:
        settled = self.wait_all_up()
        poller = Poller(self.gw.rest_port)
        poller.start()
        lab, t = self.gw.lab, self.timing
        seconds = t.lead + t.duration + t.recovery + 2
        client = lab.spawn(
            [sys.executable, str(CLIENT), "--vip", VIP, "--port", str(VIP_PORT),
             "--seconds", str(seconds)],
            ns=self.gw.client_ns, log=self.client_log,
        )  # fmt: skip
        size = int(t.transfer_rate * (t.lead + t.duration + 1))
        transfer = lab.spawn(
            [sys.executable, str(TRAFFIC), "download", "--vip", VIP, "--size", str(size),
             "--rate", str(t.transfer_rate), "--progress", "0.25", "--timeout", "30"],
            ns=self.gw.client_ns, log=self.transfer_log,
        )  # fmt: skip
        try:
            time.sleep(t.lead)
            flood = self.flood()
            self.await_recovery(poller, flood["end"])
            with contextlib.suppress(Exception):
                transfer.wait(timeout=max(0.0, flood["end"] + t.recovery + 5 - time.time()))
        finally:
            for process in (transfer, client):
                lab.kill(process)
            polls = poller.stop()
        after = self.watch.snapshot()
        flood["spoofed_pins"] = self.watch.pins_from_elsewhere((CLIENT_ADDRESS,))
        return self.summarise(flood, after, polls, settled)

    def wait_all_up(self) -> bool:
        """Until ``/v1/health`` shows every backend up (False if not within ``settle``)."""
        poller = Poller(self.gw.rest_port)
        deadline = time.monotonic() + self.timing.settle
        while time.monotonic() < deadline:
            states = poller.get("/v1/health").states
            if states and all(states.values()):
                return True
            time.sleep(0.25)
        return False

    def flood(self) -> dict:
        """hping3 at the VIP for ``duration`` s: the counters before, the offered rate, the
        CPU it cost, and when it began and ended (Unix time)."""
        gw, step, lab = self.gw, self.step, self.gw.lab
        gw.check_controller()
        self.watch.log_events()  # only the step's own lines count
        before = self.watch.snapshot()
        pace = ["--flood"] if step.interval_us is None else ["-i", f"u{step.interval_us}"]
        argv = ["hping3", "-q", "-n", "-S", "-p", str(VIP_PORT), "--rand-source", *pace, VIP]
        ovs_pid = lab.ovs.pids[-1]
        offered, cpu_before = self.watch.offered(), cpu_sample(ovs_pid, gw.controller.pid)
        start, started = time.time(), time.monotonic()
        lanes = [lab.spawn(argv, ns=self.fl.flood_ns) for _ in range(step.lanes)]
        try:
            time.sleep(self.timing.duration)
            cpu_after, offered = (
                cpu_sample(ovs_pid, gw.controller.pid),
                self.watch.offered() - offered,
            )
            seconds = time.monotonic() - started
            connected = self.watch.connected()  # OVS's view, from ovsdb: answers while flooded
            datapath_flows = self.watch.datapath_flows()
        finally:
            for process in lanes:
                lab.kill(process)
        cpu = cpu_cores(cpu_before, cpu_after, seconds, ovs_pid)
        return {"before": before, "start": start, "end": time.time(), "seconds": seconds,
                "offered_per_s": round(offered / seconds), "cpu": cpu,
                "connected": connected, "datapath_flows": datapath_flows}  # fmt: skip

    def await_recovery(self, poller: Poller, flood_end: float) -> None:
        """Until a connection started after the flood succeeded and every backend is up (then
        ``HOLD_AFTER_RECOVERY`` s more), or ``recovery`` s have passed."""
        deadline = flood_end + self.timing.recovery
        while time.time() < deadline:
            time.sleep(0.2)
            rows = read_lines(self.client_log)
            connected = any(row["ok"] and row["at"] >= flood_end for row in rows)
            if connected and poller.all_up():
                time.sleep(HOLD_AFTER_RECOVERY)
                return

    def summarise(self, flood: dict, after: dict, polls: list[Poll], settled: bool) -> dict:
        start, end = flood["start"], flood["end"]
        rows = read_lines(self.client_log)
        lines = read_lines(self.transfer_log)
        progress = [line for line in lines if "t" in line]
        result = next((line for line in lines if line.get("done")), None)
        health = [(p.at, p.states) for p in polls if p.states is not None]
        flaps, down = floodreport.flaps(health)
        rest = [p.ms for p in polls if p.at >= start and p.ms is not None]
        counters = floodreport.deltas(flood["before"], after)
        events = self.watch.log_events()
        cpu = flood["cpu"]
        return {
            "step": self.step.label,
            "rate": self.step.rate,
            "lanes": self.step.lanes,
            "interval_us": self.step.interval_us,
            "offered_per_s": flood["offered_per_s"],
            "settled_before": settled,
            **floodreport.connections(rows, start, end),
            **floodreport.transfer(progress, result, start, end),
            "flaps": flaps,
            "down_polls": down,
            "polls": len(health),
            **events,
            "disconnects": events["disconnects"] + (not flood["connected"]),
            "connected_in_flood": flood["connected"],
            "datapath_flows": flood["datapath_flows"],
            "spoofed_pins": flood["spoofed_pins"],
            "rest_p99_ms": round(p99, 1) if (p99 := floodreport.percentile(rest, 0.99)) else p99,
            "rest_failed": sum(1 for p in polls if p.ms is None),
            "packet_ins_per_s": round(counters.get("packet_ins", 0) / flood["seconds"]),
            **{key: round(value) for key, value in counters.items() if key != "at"},
            "intake_lost": counters.get("intake_dropped", 0),
            "meters": after["meters"],
            "recovery_s": floodreport.recovery(end, rows, health, end + self.timing.recovery),
            **{f"cpu_{role}": round(cpu[role], 2)
               for role in ("ovs_main", "ovs_main_wait", "controller", "machine")},
        }  # fmt: skip
