"""Watching the controller during the rebuild phase, over its REST API: its counters
(``metrics``), its health view (``health_view``, ``settle``), and when each VIP's new Maglev
table is in (``LandingWatch``).  A REST call is made while the fake switch keeps answering
(``pump_while``): a probe left unanswered meanwhile would count as failed.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from bench import procs
from bench.fakeswitch import FakeSwitch
from bench.phase import ControllerError
from bench.rebuild_setup import DEAD, SERVICE_PORT, RebuildPlan, vip_address
from bench.switchwire import flow_source

POLL_SECONDS = 0.05  # GET /v1/lookup of VIPs that marked the VM down, until their table is in
LOOKUPS_AT_ONCE = 16
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


def rebuilds_total(rest_port: int) -> float:
    return metrics(rest_port)[0]


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
        dead_down, others_down = pump_while(switch, health_view, rest_port)
        down = dead_down + others_down
        first_down = down if first_down is None else first_down
        if not down:
            return first_down
        if time.monotonic() > deadline:
            raise ControllerError(f"{down} backend(s) still down before the kill")


def lookup(rest_port: int, vip: int, index: int) -> str:
    """The backend the controller gives flow ``index`` of VIP number ``vip`` (GET /v1/lookup)."""
    address, port = flow_source(index)
    query = f"src_ip={address}&src_port={port}&dst_ip={vip_address(vip)}&dst_port={SERVICE_PORT}"
    return json.loads(procs.rest_get(rest_port, f"/v1/lookup?{query}&proto=tcp"))["backend"]


class LandingWatch(threading.Thread):
    """When each VIP's new Maglev table is in.

    A VIP's witness is a flow it gave the dead VM before marking it down (the switch keeps the
    first, ``FakeSwitch.witnesses``).  Once the VIP has marked the VM down (the switch saw its
    rules deleted), GET /v1/lookup tells every ``POLL_SECONDS`` which backend the VIP's table
    gives the witness now (its flow-table entry went with the mark-down): the dead VM until the
    new table is swapped in, another backend after.  A lookup costs the controller's loop tens
    of microseconds.  (/metrics counts the swaps too, but rendering it for 10,000 backends
    takes the loop 20-100 ms, which would show in the latencies measured: it is asked only
    when a VIP had no witness, once every VIP has marked the VM down.)
    """

    def __init__(self, switch: FakeSwitch, rest_port: int, vips: int, swaps_target: float):
        super().__init__(daemon=True)
        self.switch, self.rest_port, self.vips = switch, rest_port, vips
        self.swaps_target = swaps_target  # /metrics' swap counter once every VIP's is in
        self.marked: dict[int, float] = {}  # VIP number -> its mark-down (perf_counter)
        self.landed: dict[int, float] = {}  # VIP number -> lookup answer showing its new table
        self.done_at: float | None = None  # every VIP's table in (by the last answer)
        self.error: str | None = None
        self.request_seconds: list[float] = []  # how long each REST request took
        self._pool = ThreadPoolExecutor(LOOKUPS_AT_ONCE)
        self._stop_event = threading.Event()

    def run(self) -> None:
        try:
            while not self._stop_event.wait(POLL_SECONDS) and self.done_at is None:
                self._poll()
        except (OSError, ValueError, KeyError, ControllerError) as error:
            self.error = f"REST: {error}"
        finally:
            self._pool.shutdown(wait=False)

    def _poll(self) -> None:
        # Copies: the switch's thread adds to these (dict copies are atomic under the GIL).
        deletes = dict(self.switch.backend_deletes)
        witnesses = dict(self.switch.witnesses)
        pending = []
        for vip, (index, backend_id) in witnesses.items():
            if vip not in self.landed and backend_id in deletes:
                self.marked[vip] = deletes[backend_id]
                pending.append((vip, index))
        # At once, not one after another: a busy controller answers each late.
        for vip, (backend, answered) in zip(
            [vip for vip, _ in pending], self._pool.map(self._lookup, pending), strict=True
        ):
            if backend != DEAD["name"]:
                self.landed[vip] = answered
        if len(deletes) < self.vips or len(self.landed) < len(witnesses):
            return
        if len(witnesses) < self.vips and self._timed(rebuilds_total, self.rest_port)[0] < (
            self.swaps_target
        ):
            return  # some VIP without a witness: /metrics says when its table is in
        self.done_at = (
            time.perf_counter() if len(witnesses) < self.vips else max(self.landed.values())
        )

    def _lookup(self, pending: tuple[int, int]) -> tuple[str, float]:
        return self._timed(lookup, self.rest_port, *pending)

    def _timed(self, function, *args) -> tuple:
        """``function(*args)`` and when its answer came; the request's time is kept."""
        asked = time.perf_counter()
        value = function(*args)
        answered = time.perf_counter()
        self.request_seconds.append(answered - asked)
        return value, answered

    def install_delays(self) -> list[float]:
        """Seconds from each witnessed VIP's mark-down to the answer showing its new table
        (an upper bound: late by up to one poll period and one request)."""
        return sorted(self.landed[vip] - self.marked[vip] for vip in self.landed)

    def stop(self) -> None:
        self._stop_event.set()


def health_view(rest_port: int) -> tuple[int, int]:
    """From GET /v1/health: in how many VIPs the dead VM is down, and how many other backends
    are down (should be none: a probe answered too late, e.g. behind a stall, counts as failed)."""
    view = json.loads(procs.rest_get(rest_port, "/v1/health"))
    dead_down = others_down = 0
    for rows in view["vips"].values():
        for row in rows:
            if row["backend"] == DEAD["name"]:
                dead_down += not row["healthy"]
            else:
                others_down += not row["healthy"]
    return dead_down, others_down
