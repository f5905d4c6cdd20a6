"""The rebuild phase: does a health change that rebuilds many Maglev tables stall new flows?

Issue 5: "A health change that rebuilds the tables of 100 VIPs of 100 backends each must not
stall packet handling: p99 packet-in latency during the rebuild <= 50 ms."

Set-up: Lockstep serves ``vips`` TCP VIPs (10.0.0.1, 10.0.0.2, ..., port 80), each with the same
``backends`` VMs (distinct tunnel endpoints and MACs, table size 65537), checked by real TCP
health probes: the controller sends each probe as a packet-out (a SYN from the gateway's
address to the VIP, with the backend's tunnel actions) and the fake switch answers it the way
the VM would, with a SYN-ACK that comes back on the uplink (``fakeswitch.probe_answer``), so
every backend stays up (``settle`` waits until they all are); no flood guard.  The load, new
flows spread evenly over the VIPs, runs open loop at half the rate this controller sustains (a
short closed loop measures it first), at most what keeps the gateway's packet-ins, SYNs and
probe answers, under its overload threshold (``rate_cap``: 3,000/s at 100 x 100; over it, the
gateway would hold the dead VM's silent probes inconclusive, issue 13).  After a baseline of a
few seconds:

1. kill: the switch stops answering the probes sent to one VM (a backend of every VIP);
2. each VIP's health check marks it down within ``interval * fall + timeout``: from then on its
   new flows avoid the VM, and it asks for a new Maglev table.  The flows it placed on the VM
   earlier keep their rules for a grace (``rise * interval + timeout``, at most 30 s: the VM
   may come back), after which the controller deletes them (one flow-mod DELETE per VIP);
3. the tables are built off the packet path and swapped in.  ``LandingWatch`` sees each one
   land through GET /v1/status; all landed ends the window.

When each VIP marked the VM down is read at the end from GET /v1/health: the VM's state there
has a ``since``, the controller's own clock at the mark-down (to the millisecond, as wall-clock
time; this process and the controller read the same clocks).  Nothing on the wire says it: the
delete that used to come with the mark-down now comes a grace later.

The set-up (VIPs, backends, weights that make the tables distinct) is ``rebuild_setup.py``'s;
watching the controller over REST (``LandingWatch``, the health view) ``rebuild_watch.py``'s;
the account of the figures ``rebuild_report.py``'s.

Figures: first-packet latency (p50/p99/max) of the flows sent from the kill until all tables
landed, and of those sent from the first mark-down until then (the rebuild itself); how long
detection and rebuilding took; how many flows went to the dead VM after their VIP marked it
down (must be 0: a flow whose SYN the switch sent after the mark-down, by the controller's
clock, placed on the VM; the controller marks a backend down under the lock its packet path
takes, so such a SYN is handled after the mark-down); whether the rules of the flows placed on
the VM before were kept for the grace (a delete seen sooner: must be none); how many flows got
no answer (the controller drops a new flow that the old table gives to a backend just marked
down, until the new table is in; a real client's SYN retransmission then gets the new table);
the probe rate.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from bench import procs
from bench.fakeswitch import FakeSwitch
from bench.phase import ControllerError, PhaseResult
from bench.rebuild_setup import DEAD, RebuildPlan
from bench.rebuild_watch import (
    HealthAtEnd,
    LandingWatch,
    health_view,
    metrics,
    pump_while,
    settle,
    status,
)
from bench.switchwire import address_int, vip_of
from ryu_app.core.overload import PACKET_IN_RATE_OVERLOADED

START_TIMEOUT = 60.0  # start-up builds every VIP's table first (~40 ms each)
REBUILD_LIMIT = 60.0  # seconds after the latest possible mark-down: give up on the tables
TAIL_SECONDS = 1.0  # load kept on after the tables landed
WARMUP_SECONDS = 2.0  # load before measuring starts (the baseline, then the kill)
RECOVER_SECONDS = 3.0  # after the closed loop that sets the rate: probes only
STALL_SECONDS = 30.0  # no flow completed for this long: the controller is taken to be stuck
PRIORITY_VIP = 100  # pipeline.PRIORITY_VIP: the VIP punts say the pipeline is in
# At ``PACKET_IN_RATE_OVERLOADED`` packet-ins/s (client SYNs and probe answers alike) the gateway
# takes itself for overloaded and holds silent probes inconclusive for a while (issue 13): the
# dead VM would be marked down only once that forgiveness ran out, which is not what this phase
# measures.  The default load keeps the packet-ins under this share of it.
OVERLOAD_SHARE = 0.8
RATE_FLOOR = 100.0
SUSTAINED_WINDOW, SUSTAINED_SECONDS = 128, 2.0  # the closed loop that sets the default rate
# A mark-down's time from /v1/health is rounded to the millisecond and converted from wall-clock
# time: flows sent within this of it are not counted as after it, deletes not as early.
CLOCK_MARGIN = 0.002


@dataclass
class RebuildResult:
    plan: RebuildPlan
    rate: float  # the load: new flows per second
    sustained: float | None  # closed loop before, when it set the rate
    load: PhaseResult
    flows_before_kill: int = 0  # about what Lockstep's flow table held when the VM died
    kill_at: float = 0.0  # perf_counter times
    mark_downs: list[float] = field(default_factory=list)  # each VIP's, sorted (/v1/health)
    landed_at: float | None = None
    baseline_ms: list[float] = field(default_factory=list)  # before the kill, sorted
    window_ms: list[float] = field(default_factory=list)  # kill -> landed, sorted
    rebuild_ms: list[float] = field(default_factory=list)  # first mark-down -> landed, sorted
    unanswered: int = 0  # flows sent kill -> landed that got no answer
    sent_in_window: int = 0
    dead_flows: int = 0  # flows sent after the kill placed on the dead VM (until its VIP noticed)
    dead_flows_after_down: int = 0  # ... sent after their VIP had marked it down: must be 0
    # Seconds from a VIP's mark-down to the delete of the rules of its flows on the VM, for the
    # VIPs whose delete came before the phase ended (and that had a flow on the VM to name it).
    retirements: list[float] = field(default_factory=list)
    retired_early: int = 0  # ... of them, deleted before the grace ended: must be 0
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
    request_seconds: list[float] = field(default_factory=list)  # GET /v1/status polls, sorted
    swaps: int = 0  # Maglev tables swapped in from the baseline to the end (/metrics)
    problem: str | None = None  # why the phase did not complete

    @property
    def detection_s(self) -> tuple[float, float] | None:
        """Seconds from the kill to the first and to the last VIP marking the VM down."""
        if not self.mark_downs:
            return None
        return self.mark_downs[0] - self.kill_at, self.mark_downs[-1] - self.kill_at

    @property
    def rebuild_s(self) -> float | None:
        """Seconds from the first mark-down to all tables landed."""
        if self.landed_at is None or not self.mark_downs:
            return None
        return self.landed_at - self.mark_downs[0]

    @property
    def tail_s(self) -> float | None:
        """Seconds from the last mark-down to all tables in."""
        if self.landed_at is None or not self.mark_downs:
            return None
        return self.landed_at - self.mark_downs[-1]

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
    pump_while(switch, status, rest_port)  # before the load: see ``LandingWatch``
    watch = LandingWatch(rest_port, plan.vips)
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
    probes = counters.probes_answered + counters.probes_silenced - probes_before
    result.probes_per_s = probes / elapsed
    result.probes_silenced = counters.probes_silenced
    result.duplicates = counters.duplicates
    health = pump_while(switch, health_view, rest_port)
    swaps, failures = pump_while(switch, metrics, rest_port)
    result.swaps = round(swaps - baseline)
    failures -= failures_before
    result.late_probes = max(0, round(failures) - (counters.probes_silenced - silenced_before))
    mark_downs = _record_mark_downs(result, health, switch)
    _record_landing(result, switch, watch, kill, mark_downs)
    return result


def perf_times(walls: dict[int, float], offset: float) -> dict[int, float]:
    """Wall-clock times as ``time.perf_counter`` times (``offset``: wall minus perf_counter,
    read together)."""
    return {key: wall - offset for key, wall in walls.items()}


def dead_vm_flows(
    watched: list[tuple[int, int, float]], vips: int, kill_at: float, mark_downs: dict[int, float]
) -> tuple[int, int]:
    """Of the flows placed on the dead VM (``FakeSwitch.watched``: flow, backend id, sent at),
    those sent after the kill, and those sent after their VIP had marked the VM down (by more
    than ``CLOCK_MARGIN``; a VIP that did not mark it down has none of those)."""
    after_kill = after_down = 0
    for index, _, sent in watched:
        if sent < kill_at:
            continue
        after_kill += 1
        down = mark_downs.get(vip_of(index, vips))
        after_down += down is not None and sent > down + CLOCK_MARGIN
    return after_kill, after_down


def retirements(
    watched: list[tuple[int, int, float]],
    vips: int,
    deletes: dict[int, float],
    mark_downs: dict[int, float],
) -> list[float]:
    """Seconds from each VIP's mark-down to the delete of the rules of its flows on the dead
    VM (``deletes``: backend id -> when the switch saw them deleted), for the VIPs that placed a
    flow on the VM (which names the VM's backend id in that VIP), sorted."""
    vip_of_id = {backend_id: vip_of(index, vips) for index, backend_id, _ in watched}
    return sorted(
        deleted - mark_downs[vip]
        for backend_id, deleted in deletes.items()
        if (vip := vip_of_id.get(backend_id)) in mark_downs
    )


def _record_mark_downs(
    result: RebuildResult, health: HealthAtEnd, switch: FakeSwitch
) -> dict[int, float]:
    """Each VIP's mark-down (perf_counter times, by VIP number; /v1/health's), and what they
    tell: the flows to the dead VM after them, whether their rules were kept for the grace."""
    plan = result.plan
    mark_downs = perf_times(health.marked_down, time.time() - time.perf_counter())
    result.dead_down_vips, result.others_down = health.dead_down, health.others_down
    result.mark_downs = sorted(mark_downs.values())
    watched = list(switch.watched)
    result.dead_flows, result.dead_flows_after_down = dead_vm_flows(
        watched, plan.vips, result.kill_at, mark_downs
    )
    result.retirements = retirements(watched, plan.vips, dict(switch.backend_deletes), mark_downs)
    result.retired_early = sum(delay < plan.grace_s - CLOCK_MARGIN for delay in result.retirements)
    return mark_downs


def rate_cap(plan: RebuildPlan) -> float:
    """The default load's highest rate: with the probes' answers, under ``OVERLOAD_SHARE`` of
    the gateway's overload threshold (100 x 100 probed every 10 s: 3,000 new flows/s; until
    issue 13 the cap was 5,000)."""
    return max(RATE_FLOOR, OVERLOAD_SHARE * PACKET_IN_RATE_OVERLOADED - plan.probes_per_s)


def overloading(result: RebuildResult) -> bool:
    """Whether the load and the probes' answers reach the gateway's overload threshold."""
    return result.rate + result.probes_per_s >= PACKET_IN_RATE_OVERLOADED


def _load_rate(switch: FakeSwitch, plan: RebuildPlan, cpu_clocks) -> tuple[float | None, float]:
    """(the sustained rate, if measured; the load's rate): the plan's, else half the rate a
    short closed loop sustains (each backend gets at most one probe answered late meanwhile),
    at most ``rate_cap``."""
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
    return sustained, min(rate_cap(plan), sustained / 2)


class KillTheVm:
    """The load's hook: kill the VM (silence its tunnel endpoint) once the baseline is
    measured and start watching the tables land; end the load a little after every table is
    in, or once the watch failed."""

    def __init__(self, switch: FakeSwitch, watch: LandingWatch, baseline_s: float):
        self.switch, self.watch, self.baseline_s = switch, watch, baseline_s
        self.at: float | None = None  # perf_counter time of the kill
        self.index = 0  # the first flow sent after it
        self.landed_index: int | None = None  # the first flow sent once every table was in

    def __call__(self, now: float) -> bool:
        switch, watch = self.switch, self.watch
        if self.at is None:
            started = switch.measure_started_at
            if started is None or now < started + self.baseline_s:
                return False
            switch.silence(DEAD["tunnel_ip"])
            self.at, self.index = now, switch.next_index
            watch.start()
            return False
        if watch.done_at is not None:
            if self.landed_index is None:
                self.landed_index = switch.next_index
            return now > watch.done_at + TAIL_SECONDS
        return watch.error is not None


def _record_landing(
    result: RebuildResult,
    switch: FakeSwitch,
    watch: LandingWatch,
    kill: KillTheVm,
    mark_downs: dict[int, float],
) -> None:
    """When the tables landed and the latency meanwhile; or why they did not."""
    plan, load = result.plan, result.load
    result.install_delays = watch.install_delays(mark_downs)
    result.request_seconds = sorted(watch.request_seconds)
    if watch.done_at is None:
        if watch.error:
            result.problem = watch.error
        elif len(mark_downs) < plan.vips:
            result.problem = f"only {len(mark_downs)} of {plan.vips} VIPs marked the VM down"
        else:
            result.problem = f"the tables were not all in {REBUILD_LIMIT:.0f} s after the kill"
        return
    if result.install_delays and result.install_delays[0] < -CLOCK_MARGIN:
        result.problem = "a VIP's new table was seen before its mark-down: the clocks disagree"
    result.landed_at = watch.done_at
    result.window_ms = latencies_between(load.timeline, kill.at, watch.done_at)
    if result.mark_downs:
        result.rebuild_ms = latencies_between(load.timeline, result.mark_downs[0], watch.done_at)
    end = kill.landed_index if kill.landed_index is not None else switch.next_index
    result.sent_in_window = end - kill.index
    result.unanswered, _ = switch.incomplete_between(kill.index, end)
