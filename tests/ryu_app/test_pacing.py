"""The REST plane's CPU budget (``ryu_app.api.pacing``): a token bucket of CPU seconds that REST
threads take from at checkpoints, sleeping when it is spent, and a slice after which a thread
lets the packet path in however full the bucket is.  Issue 11, finding 3: a REST client asking
in a loop held a REST thread computing all the time, and every packet-in waited for it.

The bucket's arithmetic runs on fake clocks here; test_httpserver.py serves real requests
under a budget."""

from __future__ import annotations

import json
import threading

import pytest

from ryu_app.api import metricsview, pacing
from ryu_app.api.pacing import PacedRows, Pacer, PacingStats


class Clocks:
    """A thread's CPU clock and a wall clock, moved by hand; sleeping moves the wall clock."""

    def __init__(self):
        self.cpu = 0.0
        self.wall = 0.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.wall += seconds

    def pacer(self, share=0.1, burst=0.010, slice_seconds=1.0, handoff=0.0002) -> Pacer:
        return Pacer(
            share,
            burst,
            slice_seconds,
            handoff,
            cpu=lambda: self.cpu,
            clock=lambda: self.wall,
            sleep=self.sleep,
        )


def test_a_client_asking_now_and_then_is_never_slowed():
    clocks = Clocks()
    pacer = clocks.pacer(share=0.1, burst=0.010)
    pacer.checkpoint()  # the thread's first: nothing counted yet
    for _ in range(5):
        clocks.cpu += 0.008  # a request: 8 ms of CPU, within the burst
        pacer.checkpoint()
        clocks.wall += 1.0  # then a second of quiet: the bucket is full again
    assert clocks.slept == []
    assert pacer.stats.cpu_seconds == pytest.approx(0.040)


def test_a_thread_that_spent_the_budget_sleeps_until_the_debt_is_paid():
    clocks = Clocks()
    pacer = clocks.pacer(share=0.1, burst=0.010)
    pacer.checkpoint()
    clocks.cpu += 0.030  # 30 ms of CPU at once: 20 ms beyond the burst
    pacer.checkpoint()
    assert clocks.slept == [pytest.approx(0.2)]  # 20 ms of debt at a tenth of a core
    assert pacer.stats.delays == 1
    assert pacer.stats.delayed_seconds == pytest.approx(0.2)


def test_a_looping_client_gets_the_share_of_a_core_and_no_more():
    clocks = Clocks()
    pacer = clocks.pacer(share=0.25, burst=0.005)
    pacer.checkpoint()
    start = clocks.wall
    for _ in range(200):
        clocks.cpu += 0.002  # 2 ms of CPU per request, one after another
        clocks.wall += 0.002
        pacer.checkpoint()
    used = 200 * 0.002
    assert used / (clocks.wall - start) == pytest.approx(0.25, rel=0.05)


def test_a_slice_ends_with_a_handoff_however_full_the_bucket():
    clocks = Clocks()
    pacer = clocks.pacer(share=1.0, burst=10.0, slice_seconds=0.0005, handoff=0.0002)
    pacer.checkpoint()
    clocks.cpu += 0.0003
    pacer.checkpoint()
    assert clocks.slept == []  # within the slice
    clocks.cpu += 0.0003
    pacer.checkpoint()  # 0.6 ms since the thread last slept
    assert clocks.slept == [0.0002]
    assert pacer.stats.handoffs == 1 and pacer.stats.delays == 0
    clocks.cpu += 0.0003
    pacer.checkpoint()  # the slice starts again after a sleep
    assert clocks.slept == [0.0002]


def test_the_loops_time_for_a_thread_is_charged_at_its_next_checkpoint():
    clocks = Clocks()
    pacer = clocks.pacer(share=0.1, burst=0.010)
    pacer.checkpoint()
    pacer.charge(0.025)  # the event loop spent 25 ms on this thread's request
    assert clocks.slept == []
    pacer.checkpoint()
    assert pacer.stats.cpu_seconds == pytest.approx(0.025)
    assert clocks.slept == [pytest.approx(0.15)]


def test_threads_share_one_budget():
    clocks = Clocks()
    pacer = clocks.pacer(share=0.1, burst=0.010)

    def other_thread():
        pacer.checkpoint()
        pacer.charge(0.008)
        pacer.checkpoint()

    other = threading.Thread(target=other_thread)
    other.start()
    other.join()
    assert clocks.slept == []  # 8 ms of 10
    pacer.checkpoint()
    pacer.charge(0.008)
    pacer.checkpoint()
    assert clocks.slept == [pytest.approx(0.06)]  # 6 ms of debt at a tenth of a core


def test_a_thread_without_a_pacer_is_never_paced():
    pacing.attach(None)
    pacing.checkpoint()  # nothing to count, nowhere to sleep
    pacing.charge(1.0)


def test_checkpoints_go_to_the_pacer_the_thread_attached():
    clocks = Clocks()
    pacer = clocks.pacer(share=0.1, burst=0.010)
    pacing.attach(pacer)
    try:
        pacing.checkpoint()
        pacing.charge(0.030)
        pacing.checkpoint()
    finally:
        pacing.attach(None)
    assert pacer.stats.delays == 1


def test_a_share_outside_one_core_is_refused():
    with pytest.raises(ValueError, match="share"):
        Pacer(0.0, 0.01, 0.0005, 0.0002)
    with pytest.raises(ValueError, match="share"):
        Pacer(1.5, 0.01, 0.0005, 0.0002)


def test_paced_rows_encode_as_a_list_with_a_checkpoint_every_few_rows(monkeypatch):
    rows = [{"n": n, "name": f"row {n}"} for n in range(120)]
    paced = PacedRows(rows)
    seen = []
    monkeypatch.setattr(pacing, "checkpoint", lambda: seen.append(True))
    answer = {"flows": paced, "count": 120}
    indented = json.dumps(answer, indent=1, sort_keys=True)  # the API's: the Python encoder
    assert indented == json.dumps({"flows": rows, "count": 120}, indent=1, sort_keys=True)
    assert len(seen) == 3  # rows 0, 50 and 100
    assert json.dumps(paced) == json.dumps(rows)  # the C encoder reads it as a list
    assert paced == rows and len(paced) == 120


def test_metrics_export_what_the_budget_delayed(harness):
    snapshot = metricsview.metrics_snapshot(harness.core)
    stats = PacingStats(cpu_seconds=1.5, delays=7, delayed_seconds=0.25, handoffs=3)
    text = metricsview.render_metrics(snapshot, rest_pacing=stats)
    assert "lockstep_rest_cpu_seconds_total 1.5\n" in text
    assert "lockstep_rest_paced_total 7.0\n" in text
    assert "lockstep_rest_paced_seconds_total 0.25\n" in text
    assert "# TYPE lockstep_rest_paced_total counter" in text
    assert "lockstep_rest_paced" not in metricsview.render_metrics(snapshot)  # no budget, no lines
