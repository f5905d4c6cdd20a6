"""Watching the controller during the rebuild phase, over its REST API: its counters
(``metrics``), its health view (``health_view``: who is down, and since when; ``settle``), and
when each VIP's new Maglev table is in (``LandingWatch``, by GET /v1/status).  A REST call is
made while the fake switch keeps answering (``pump_while``): a probe left unanswered meanwhile
would count as failed.
"""

from __future__ import annotations

import json
import threading
import time
from typing import NamedTuple

from bench import procs
from bench.fakeswitch import FakeSwitch
from bench.phase import ControllerError
from bench.rebuild_setup import DEAD, RebuildPlan, vip_name

POLL_SECONDS = 0.05  # GET /v1/status from the kill until every VIP's new table is in
SETTLE_INTERVALS = 3  # at most this many health intervals for every backend to be up
REBUILDS_METRIC = "lockstep_table_rebuilds_total"
PROBE_FAILURES_METRIC = 'lockstep_probes_total{result="fail"}'


def metrics(rest_port: int) -> tuple[float, float]:
    """(Maglev tables swapped in, failed probes) so far, from the controller's /metrics."""
    text = procs.rest_get(rest_port, "/metrics").decode()
    values = procs.metric(text, REBUILDS_METRIC), procs.metric(text, PROBE_FAILURES_METRIC)
    if None in values:
        raise ControllerError(f"no {REBUILDS_METRIC} or probe results in /metrics")
    return values


def pump_while(switch: FakeSwitch, function, *args):
    """Call ``function(*args)`` (a REST request) in a thread while the switch keeps answering:
    a probe left unanswered meanwhile would count as failed."""
    outcome: dict = {}

    def call() -> None:
        try:
            outcome["value"] = function(*args)
        except (OSError, ValueError, ControllerError) as error:
            outcome["error"] = error

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    while thread.is_alive():
        switch.pump(0.02)
    if "error" in outcome:
        raise ControllerError(f"REST: {outcome['error']}")
    return outcome["value"]


def settle(switch: FakeSwitch, rest_port: int, plan: RebuildPlan) -> int:
    """Answer probes until every backend is up (GET /v1/health); returns how many were down
    at first.  Probes due while the controller was starting go out in one burst when the
    switch connects, and may be answered too late: with ``fall`` 1 that marks backends down
    until their next probe."""
    deadline = time.monotonic() + plan.detection_s * (SETTLE_INTERVALS + 1)
    first_down = None
    while True:
        until = time.monotonic() + plan.interval + plan.timeout
        while time.monotonic() < until:
            switch.pump(0.05)
        health = pump_while(switch, health_view, rest_port)
        down = health.dead_down + health.others_down
        first_down = down if first_down is None else first_down
        if not down:
            return first_down
        if time.monotonic() > deadline:
            raise ControllerError(f"{down} backend(s) still down before the kill")


def status(rest_port: int) -> dict:
    return json.loads(procs.rest_get(rest_port, "/v1/status"))


class LandingWatch(threading.Thread):
    """When each VIP's new Maglev table is in: GET /v1/status every ``POLL_SECONDS`` from the
    kill until every VIP's answer has the dead VM out of its healthy set and its table current
    (``table_current``: the table of its serving set is the one in use).  Before its mark-down a
    VIP's table is current with the VM in; from its mark-down until the new table is swapped in,
    not current; after, current without it.

    One request a poll, whatever the number of VIPs: a copy of each VIP's healthy set on the
    controller's loop (~0.2 ms at 100 x 100) and its render on a REST thread (~3 ms, which
    shares the interpreter with the packet path; under os-ken's native hub the REST plane's CPU
    budget paces it, so an answer may come tens of ms late: ``request_seconds`` tells).  The
    first render of a status computes every VIP's configuration digest (~0.1-0.2 s at
    100 x 100; under the eventlet hub that stalls the loop, and a tick that late makes the
    gateway take itself for overloaded): the phase asks for one before the load starts.  When
    each VIP marked the VM down is not this watch's to say: /v1/health says it exactly at the
    end (``health_view``).
    """

    def __init__(self, rest_port: int, vips: int):
        super().__init__(daemon=True)
        self.rest_port, self.vips = rest_port, vips
        self.numbers = {vip_name(index): index for index in range(vips)}
        self.landed: dict[int, float] = {}  # VIP number -> the answer showing its new table
        self.done_at: float | None = None  # every VIP's table in (by the last answer)
        self.error: str | None = None
        self.request_seconds: list[float] = []  # how long each REST request took
        self._stop_event = threading.Event()

    def run(self) -> None:
        try:
            while not self._stop_event.wait(POLL_SECONDS) and self.done_at is None:
                self._poll()
        except (OSError, ValueError, KeyError, ControllerError) as error:
            self.error = f"REST: {error}"

    def _poll(self) -> None:
        asked = time.perf_counter()
        answer = status(self.rest_port)
        answered = time.perf_counter()
        self.request_seconds.append(answered - asked)
        for name, view in answer["vips"].items():
            vip = self.numbers.get(name)
            if vip is None or vip in self.landed:
                continue
            if DEAD["name"] not in view["healthy"] and view["table_current"]:
                self.landed[vip] = answered
        if len(self.landed) == self.vips:
            self.done_at = answered

    def install_delays(self, mark_downs: dict[int, float]) -> list[float]:
        """Seconds from each VIP's mark-down (``mark_downs``: VIP number -> perf_counter time)
        to the answer showing its new table (an upper bound: late by up to one poll period and
        one request)."""
        landed = self.landed
        return sorted(landed[vip] - mark_downs[vip] for vip in landed if vip in mark_downs)

    def stop(self) -> None:
        self._stop_event.set()


class HealthAtEnd(NamedTuple):
    """What GET /v1/health says of the VIPs' backends."""

    dead_down: int  # VIPs in which the dead VM is down
    others_down: int  # other backends down (should be none)
    marked_down: dict[int, float]  # VIP number -> when it marked the VM down (wall clock)


def health_view(rest_port: int) -> HealthAtEnd:
    """From GET /v1/health: in how many VIPs the dead VM is down and since when (its state's
    ``since``: the controller's clock when that VIP's check marked it down, to the millisecond,
    as wall-clock time), and how many other backends are down (should be none: a probe answered
    too late, e.g. behind a stall, counts as failed)."""
    view = json.loads(procs.rest_get(rest_port, "/v1/health"))
    numbers = {vip_name(index): index for index in range(len(view["vips"]))}
    others_down = 0
    marked_down = {}
    for name, rows in view["vips"].items():
        for row in rows:
            if row["healthy"]:
                continue
            if row["backend"] == DEAD["name"]:
                marked_down[numbers[name]] = row["since"]
            else:
                others_down += 1
    return HealthAtEnd(len(marked_down), others_down, marked_down)
