"""The rebuild phase: does a health change that rebuilds many Maglev tables stall new flows?

Issue 5: "A health change that rebuilds the tables of 100 VIPs of 100 backends each must not
stall packet handling: p99 packet-in latency during the rebuild <= 50 ms."

Set-up: Lockstep serves ``vips`` TCP VIPs (10.0.0.1, 10.0.0.2, ..., port 80), each with the same
``backends`` VMs (distinct tunnel endpoints and MACs, table size 65537), checked by real TCP
health probes: the controller sends each probe as a packet-out (a SYN from the gateway's
address to the VIP, with the backend's tunnel actions) and the fake switch answers it the way
the VM would, with a SYN-ACK that comes back on the uplink (``fakeswitch.probe_answer``), so
every backend stays up (``settle`` waits until they all are).  The load, new flows spread
evenly over the VIPs, runs open loop at half the rate this controller sustains (a short closed
loop measures it first; at most 5,000/s).  After a baseline of a few seconds:

1. kill: the switch stops answering the probes sent to one VM (a backend of every VIP);
2. each VIP's health check marks it down within ``interval * fall + timeout``; the controller
   deletes that backend's rules at that moment (one flow-mod DELETE per VIP, seen by the
   switch: when that VIP marked it down) and asks for a new Maglev table;
3. the tables are built off the packet path and swapped in.  ``LandingWatch`` sees each one
   land through GET /v1/lookup (cheap for the controller, unlike /metrics); all landed ends
   the window.

The set-up (VIPs, backends, weights that make the tables distinct) is ``rebuild_setup.py``'s;
watching the controller over REST (``LandingWatch``, the health view) ``rebuild_watch.py``'s;
the account of the figures ``rebuild_report.py``'s.

Figures: first-packet latency (p50/p99/max) of the flows sent from the kill until all tables
landed, and of those sent from the first mark-down until then (the rebuild itself); how long
detection and rebuilding took; how many flows went to the dead VM after their VIP marked it
down (must be 0; checked on the wire: a flow-mod for a backend id after that id's delete); how
many flows got no answer (the controller drops a new flow that the old table gives to a backend
just marked down, until the new table is in; a real client's SYN retransmission then gets the
new table); the probe rate.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from bench import procs
from bench.fakeswitch import FakeSwitch
from bench.phase import ControllerError, PhaseResult
from bench.rebuild_setup import DEAD, RebuildPlan
from bench.rebuild_watch import LandingWatch, health_view, metrics, pump_while, settle
from bench.switchwire import address_int

START_TIMEOUT = 60.0  # start-up builds every VIP's table first (~40 ms each)
REBUILD_LIMIT = 60.0  # seconds after the latest possible mark-down: give up on the tables
TAIL_SECONDS = 1.0  # load kept on after the tables landed
WARMUP_SECONDS = 2.0  # load before measuring starts (the baseline, then the kill)
RECOVER_SECONDS = 3.0  # after the closed loop that sets the rate: probes only
STALL_SECONDS = 30.0  # no flow completed for this long: the controller is taken to be stuck
PRIORITY_VIP = 100  # pipeline.PRIORITY_VIP: the VIP punts say the pipeline is in
RATE_CAP = 5000.0
SUSTAINED_WINDOW, SUSTAINED_SECONDS = 128, 2.0  # the closed loop that sets the default rate


@dataclass
class RebuildResult:
    plan: RebuildPlan
    rate: float  # the load: new flows per second
    sustained: float | None  # closed loop before, when it set the rate
    load: PhaseResult
    flows_before_kill: int = 0  # about what Lockstep's flow table held when the VM died
    kill_at: float = 0.0  # perf_counter times
    deletes: list[float] = field(default_factory=list)  # each VIP's mark-down, as seen
    landed_at: float | None = None
    baseline_ms: list[float] = field(default_factory=list)  # before the kill, sorted
    window_ms: list[float] = field(default_factory=list)  # kill -> landed, sorted
    rebuild_ms: list[float] = field(default_factory=list)  # first mark-down -> landed, sorted
    unanswered: int = 0  # flows sent kill -> landed that got no answer
    sent_in_window: int = 0
    dead_flows: int = 0  # flows placed on the dead VM after the kill (until its VIP noticed)
    dead_flows_after_down: int = 0  # ... after its VIP had deleted its rules: must be 0
    probes_per_s: float = 0.0
    probes_silenced: int = 0
    duplicates: int = 0  # a second flow-mod or packet-out for one flow (the whole phase)
    dead_down_vips: int = 0  # from /v1/health at the end
    others_down: int = 0
    down_at_start: int = 0  # backends down when the switch had answered one interval's probes
    # Failed probes that the switch did answer: read after their timeout (behind a busy
    # controller).  ``fall`` of them in a row mark a healthy backend down.
    late_probes: int = 0
    install_delays: list[float] = field(default_factory=list)  # s, mark-down -> table in
    witnesses: int = 0  # VIPs whose table was seen landing (the others: by /metrics)
    request_seconds: list[float] = field(default_factory=list)  # REST requests meanwhile, sorted
    swaps: int = 0  # Maglev tables swapped in from the baseline to the end (/metrics)
    problem: str | None = None  # why the phase did not complete

    @property
    def detection_s(self) -> tuple[float, float] | None:
        """Seconds from the kill to the first and to the last VIP marking the VM down."""
        if not self.deletes:
            return None
        return self.deletes[0] - self.kill_at, self.deletes[-1] - self.kill_at

    @property
    def rebuild_s(self) -> float | None:
        """Seconds from the first mark-down to all tables landed."""
        if self.landed_at is None or not self.deletes:
            return None
        return self.landed_at - self.deletes[0]

    @property
    def tail_s(self) -> float | None:
        """Seconds from the last mark-down to all tables in."""
        if self.landed_at is None or not self.deletes:
            return None
        return self.landed_at - self.deletes[-1]

    @property
    def window_s(self) -> float | None:
        return None if self.landed_at is None else self.landed_at - self.kill_at


def latencies_between(
    timeline: list[tuple[float, float]], start: float, end: float | None
) -> list[float]:
    """Sorted latencies (ms) of the flows sent from ``start`` until ``end`` (None: the end)."""
    stop = math.inf if end is None else end
    return sorted(latency for sent, latency in timeline if start <= sent <= stop)


def slow_seconds(
    timeline: list[tuple[float, float]], start: float, end: float | None, threshold_ms: float
) -> dict[int, int]:
    """Flows over ``threshold_ms`` by whole second after ``start`` (they were sent in), from
    ``start`` until ``end``: when the stalls were (a mark-down, a build, the machine?)."""
    stop = math.inf if end is None else end
    seconds: dict[int, int] = {}
    for sent, latency in timeline:
        if start <= sent <= stop and latency > threshold_ms:
            second = int(sent - start)
            seconds[second] = seconds.get(second, 0) + 1
    return dict(sorted(seconds.items()))


def bench_rebuild(controller: procs.Controller, plan: RebuildPlan) -> RebuildResult:
    """Start Lockstep with the plan's deployment, drive it, kill the VM, measure."""
    process = procs.start(controller)

    def alive() -> bool:
        return process.poll() is None

    switch = None
    try:
        deadline = time.monotonic() + START_TIMEOUT
        switch = FakeSwitch.connect(
            ("127.0.0.1", controller.port), deadline, alive, vips=plan.services()
        )
        switch.answer_probes = True
        switch.wait_ready(PRIORITY_VIP, START_TIMEOUT, alive)
        down_at_start = settle(switch, controller.rest_port, plan)
        switch.watch_tunnel = address_int(DEAD["tunnel_ip"])
        result = _drive(switch, process.pid, controller.rest_port, plan)
        result.down_at_start = down_at_start
        return result
    except ControllerError as error:
        raise procs.failed(controller, process, error) from None
    finally:
        if switch is not None:
            switch.close()
        procs.stop(process)


def _drive(switch: FakeSwitch, pid: int, rest_port: int, plan: RebuildPlan) -> RebuildResult:
    """The load at the plan's rate (half the sustained rate, measured first, if it names
    none); the VM killed after the baseline; the load ended a little after every VIP's table is
    in; then the health view and the counters at the end."""

    def cpu_clocks() -> tuple[float, float]:
        return procs.cpu_seconds(pid)

    sustained, rate = _load_rate(switch, plan, cpu_clocks)
    baseline, failures_before = pump_while(switch, metrics, rest_port)
    watch = LandingWatch(switch, rest_port, plan.vips, baseline + plan.vips)
    kill = KillTheVm(switch, watch, plan.baseline)
    probes_before = switch.counters.probes_answered + switch.counters.probes_silenced
    silenced_before = switch.counters.probes_silenced
    started = time.perf_counter()
    try:
        load = switch.run(
            rate=rate,
            warmup=WARMUP_SECONDS,
            duration=plan.baseline + plan.detection_s + REBUILD_LIMIT,
            cpu_clocks=cpu_clocks,
            hook=kill,
            stall_seconds=STALL_SECONDS,
            timeline=True,
        )
    finally:
        watch.stop()
    elapsed = time.perf_counter() - started
    if kill.at is None:
        raise ControllerError("the load ended before the VM was killed")
    counters = switch.counters
    result = RebuildResult(
        plan, rate, sustained, load, kill_at=kill.at, flows_before_kill=kill.index
    )
    result.baseline_ms = latencies_between(load.timeline, 0.0, kill.at)
    result.deletes = sorted(switch.backend_deletes.values())
    probes = counters.probes_answered + counters.probes_silenced - probes_before
    result.probes_per_s = probes / elapsed
    result.probes_silenced = counters.probes_silenced
    result.duplicates = counters.duplicates
    result.dead_flows = counters.watched_flows - kill.dead_before
    result.dead_flows_after_down = counters.placed_after_delete
    _record_landing(result, switch, watch, kill)
    result.dead_down_vips, result.others_down = pump_while(switch, health_view, rest_port)
    swaps, failures = pump_while(switch, metrics, rest_port)
    result.swaps = round(swaps - baseline)
    failures -= failures_before
    result.late_probes = max(0, round(failures) - (counters.probes_silenced - silenced_before))
    return result


def _load_rate(switch: FakeSwitch, plan: RebuildPlan, cpu_clocks) -> tuple[float | None, float]:
    """(the sustained rate, if measured; the load's rate): the plan's, else half the rate a
    short closed loop sustains (each backend gets at most one probe answered late meanwhile),
    at most ``RATE_CAP``."""
    if plan.rate:
        return None, plan.rate
    closed = switch.run(
        window=SUSTAINED_WINDOW, warmup=0.5, duration=SUSTAINED_SECONDS, cpu_clocks=cpu_clocks
    )
    sustained = closed.flows_per_s
    # Saturated, the controller fell behind its health ticks: the probes that came due
    # meanwhile go out in one burst now.  Let that pass before the baseline.
    until = time.monotonic() + RECOVER_SECONDS
    while time.monotonic() < until:
        switch.pump(0.05)
    return sustained, min(RATE_CAP, sustained / 2)


class KillTheVm:
    """The load's hook: kill the VM (silence its tunnel endpoint) once the baseline is
    measured and start watching the tables land; end the load a little after every table is
    in, or once the watch failed."""

    def __init__(self, switch: FakeSwitch, watch: LandingWatch, baseline_s: float):
        self.switch, self.watch, self.baseline_s = switch, watch, baseline_s
        self.at: float | None = None  # perf_counter time of the kill
        self.index = 0  # the first flow sent after it
        self.dead_before = 0  # flows placed on the VM before it
        self.landed_index: int | None = None  # the first flow sent once every table was in

    def __call__(self, now: float) -> bool:
        switch, watch = self.switch, self.watch
        if self.at is None:
            started = switch.measure_started_at
            if started is None or now < started + self.baseline_s:
                return False
            switch.silence(DEAD["tunnel_ip"])
            self.at, self.index = now, switch.next_index
            self.dead_before = switch.counters.watched_flows
            watch.start()
            return False
        if watch.done_at is not None:
            if self.landed_index is None:
                self.landed_index = switch.next_index
            return now > watch.done_at + TAIL_SECONDS
        return watch.error is not None


def _record_landing(
    result: RebuildResult, switch: FakeSwitch, watch: LandingWatch, kill: KillTheVm
) -> None:
    """When the tables landed and the latency meanwhile; or why they did not."""
    plan, load = result.plan, result.load
    result.install_delays = watch.install_delays()
    result.witnesses = len(watch.landed)
    result.request_seconds = sorted(watch.request_seconds)
    if watch.done_at is None:
        if watch.error:
            result.problem = watch.error
        elif len(result.deletes) < plan.vips:
            result.problem = f"only {len(result.deletes)} of {plan.vips} VIPs marked the VM down"
        else:
            result.problem = f"the tables were not all in {REBUILD_LIMIT:.0f} s after the kill"
        return
    result.landed_at = watch.done_at
    result.window_ms = latencies_between(load.timeline, kill.at, watch.done_at)
    if result.deletes:
        result.rebuild_ms = latencies_between(load.timeline, result.deletes[0], watch.done_at)
    end = kill.landed_index if kill.landed_index is not None else switch.next_index
    result.sent_in_window = end - kill.index
    result.unanswered, _ = switch.incomplete_between(kill.index, end)
