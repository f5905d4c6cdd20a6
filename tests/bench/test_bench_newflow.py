"""The new-flow benchmark's helpers (memory from /proc, Prometheus text, the rebuild phase's
deployment and windows, the report's bookkeeping), and one short run of its new phases against
the real controller: memory with a prefill, and a rebuild of 5 VIPs x 5 backends."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench import procs, rebuild, rebuild_setup, rebuild_watch, report, restload
from bench.phase import ControllerError, percentile
from ryu_app.core.balancer import Balancer
from ryu_app.core.serving import retire_grace
from topology.deployment import parse

ROOT = Path(__file__).resolve().parents[2]

SMAPS_ROLLUP = """\
55d0c0a2e000-7ffd3c5f2000 ---p 00000000 00:00 0                          [rollup]
Rss:               61234 kB
Pss:               60001 kB
Anonymous:         52000 kB
"""
STATUS = "Name:\tpython3\nVmPeak:\t  300000 kB\nVmRSS:\t   59876 kB\nThreads:\t5\n"


def test_resident_memory_from_smaps_rollup_or_status():
    assert procs.parse_rss(SMAPS_ROLLUP) == 61234 * 1024
    assert procs.parse_rss(STATUS) == 59876 * 1024
    assert procs.parse_rss("Name:\tpython3\n") is None
    assert procs.rss_bytes(os.getpid()) > 1 << 20


def test_metric_reads_one_sample_of_prometheus_text():
    text = (
        "# HELP lockstep_table_rebuilds_total Maglev tables swapped in.\n"
        "# TYPE lockstep_table_rebuilds_total counter\n"
        "lockstep_table_rebuilds_total 105\n"
        'lockstep_probes_total{result="ok"} 7\n'
        'lockstep_probes_total{result="fail"} 3'  # the last line, no newline
    )
    assert procs.metric(text, "lockstep_table_rebuilds_total") == 105
    assert procs.metric(text, 'lockstep_probes_total{result="fail"}') == 3
    assert procs.metric(text, "lockstep_table_rebuilds") is None  # a prefix is not a name


@pytest.mark.parametrize("shared", [False, True])
def test_the_rebuild_deployment_is_valid_and_builds_one_table_per_vip_unless_shared(shared):
    plan = rebuild_setup.RebuildPlan(vips=12, backends=10, shared_tables=shared)
    deployment = parse(rebuild_setup.deployment(plan, 6653, 8080, Path("/tmp")))
    assert [vip.address for vip in deployment.vips] == [s[0] for s in plan.services()]
    assert all(
        rebuild_setup.DEAD["name"] in {b.name for b in vip.backends} for vip in deployment.vips
    )
    balancer = Balancer()
    requests = [request for vip in deployment.vips for request in balancer.set_vip(vip)]
    distinct = {request.spec for request in requests}
    assert len(distinct) == (1 if shared else plan.vips)
    assert plan.probes_per_s == 12 * 10 / plan.interval
    # The grace the phase checks the controller against is the controller's own rule.
    assert plan.grace_s == retire_grace(deployment.vips[0].health) == 11.0
    assert deployment.gateways[0].flood_guard.rate == 0  # no guard dropping part of the load


def test_the_default_load_keeps_the_gateway_under_its_overload_threshold():
    """Client SYNs and probe answers are all packet-ins: 100 x 100 probed every 10 s answer
    1,000/s, so the load is 3,000/s (80% of 5,000, less 1,000)."""
    big = rebuild_setup.RebuildPlan()
    assert rebuild.rate_cap(big) == 3000.0
    assert rebuild.rate_cap(rebuild_setup.RebuildPlan(vips=5, backends=5)) == 4000.0 - 2.5
    assert rebuild.rate_cap(rebuild_setup.RebuildPlan(interval=1.0)) == rebuild.RATE_FLOOR
    result = rebuild.RebuildResult(big, 3000.0, None, None, probes_per_s=1000.0)
    assert not rebuild.overloading(result)
    result.rate = 4000.0
    assert rebuild.overloading(result)


def test_latencies_of_a_window_and_their_percentiles():
    timeline = [(1.0, 5.0), (2.0, 1.0), (3.0, 9.0), (4.0, 2.0)]
    assert rebuild.latencies_between(timeline, 2.0, 3.0) == [1.0, 9.0]
    assert rebuild.latencies_between(timeline, 1.5, None) == [1.0, 2.0, 9.0]
    assert percentile([1.0, 2.0, 9.0], 0.5) == 2.0
    assert percentile([1.0, 2.0, 9.0], 0.99) == 9.0
    assert percentile([], 0.5) is None


def phase(p50: float, p99: float, others: float) -> SimpleNamespace:
    """A latency phase as the REST-load rounds read it."""
    return SimpleNamespace(
        percentile_ms=lambda fraction: p50 if fraction == 0.5 else p99, other_cpu=others
    )


def test_rest_rounds_give_medians_of_all_rounds_and_of_the_quiet_ones():
    rounds = [
        (phase(0.1, 0.4, 0.0), phase(0.2, 1.5, 0.1)),
        (phase(0.1, 9.0, 1.0), phase(0.9, 30.0, 0.2)),  # others kept a core busy: not quiet
        (phase(0.1, 0.5, 0.0), phase(0.2, 1.7, 0.0)),
    ]
    assert restload.round_medians(rounds) == {
        "without_p50_ms": 0.1,
        "without_p99_ms": 0.5,
        "with_p50_ms": 0.2,
        "with_p99_ms": 1.7,
    }
    quiet = restload.quiet_rounds(rounds)
    assert quiet == [rounds[0], rounds[2]]
    assert restload.round_medians(quiet)["with_p99_ms"] == 1.6


def test_report_names_and_the_default_hub():
    assert report.label("lockstep_eventlet") == "lockstep (eventlet)"
    assert report.label("null") == "null (the tool)"
    assert report.default_lockstep({"lockstep_eventlet": 1, "lockstep_native": 2}) == (
        "lockstep_native"
    )
    assert report.default_lockstep({"lockstep_eventlet": 1, "null": 2}) == "lockstep_eventlet"
    assert report.default_lockstep({"null": 2}) is None
    memory = {"rss_before": 10_000, "rss_after": 30_000, "entries_before": 50, "entries_after": 150}
    assert report.bytes_per_entry(memory) == 200


def test_a_short_run_of_the_memory_and_rebuild_phases():
    """Lockstep (native hub) with 3,000 flows prefilled, then 5 VIPs x 5 backends losing one VM
    (probes every second): the JSON line says what the report says.  About 13 s."""
    command = [
        sys.executable, str(ROOT / "bench" / "bench_newflow.py"), "--quick", "--only", "lockstep",
        "--hub", "native", "--duration", "0.5", "--warmup", "0.2", "--flows", "3000",
        "--rebuild", "--rebuild-vips", "5", "--rebuild-backends", "5", "--rebuild-rate", "500",
        "--health-interval", "1", "--health-timeout", "0.2", "--health-fall", "1",
        "--rest-rounds", "2",
    ]  # fmt: skip
    run = subprocess.run(
        command, capture_output=True, text=True, timeout=120, cwd=ROOT, check=False
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    figures = json.loads(run.stdout.splitlines()[-1])
    assert figures["failures"] == []
    assert figures["lockstep_hub"] == "native"
    assert figures["lockstep_flows_per_s"] == figures["lockstep_native_flows_per_s"] > 0
    assert figures["lockstep_native_entries_after"] - figures["lockstep_native_entries_before"] == (
        3000
    )
    assert "lockstep_native_bytes_per_entry" in figures
    # Under the looping REST client: flows went on, every request was answered with a 2xx.
    assert figures["lockstep_native_rest_load_flows_per_s"] > 0
    assert figures["lockstep_native_rest_load_incomplete"] == 0
    assert figures["lockstep_native_rest_load_requests_per_s"] > 0
    assert figures["lockstep_native_rest_load_errors"] == 0
    assert "with the REST loop" in run.stdout
    assert figures["lockstep_native_rest_rounds"] == 2  # a second round without and with it
    assert figures["lockstep_native_rest_rounds_with_p99_ms"] > 0
    assert "2 rounds, latency p50 / p99 without and with the client" in run.stdout
    assert figures["lockstep_native_rebuild_problem"] is None
    assert figures["lockstep_native_rebuild_marked_down"] == 5  # every VIP noticed
    assert figures["lockstep_native_rebuild_swaps"] == 5  # one new table each
    assert figures["lockstep_native_rebuild_dead_flows_after_down"] == 0
    assert figures["lockstep_native_rebuild_grace_s"] == 1.2  # rise 1 x interval 1 + timeout 0.2
    assert figures["lockstep_native_rebuild_retired_early"] == 0
    assert figures["lockstep_native_rebuild_others_down"] == 0
    assert figures["lockstep_native_rebuild_p99_ms"] is not None
    assert "summary (Markdown, for the README):" in run.stdout


def test_the_rest_clients_summary_counts_each_kind_and_its_statuses():
    client = restload.Client(8080)
    client.seconds = {"status": [0.003, 0.001, 0.002], "put_vip": [0.05]}
    client.statuses = {"status": {200: 3}, "put_vip": {202: 1}}
    summary = client.summary()
    assert summary["status"] == {
        "requests": 3,
        "statuses": {"200": 3},
        "p50_ms": 2.0,
        "p99_ms": 3.0,
        "max_ms": 3.0,
    }
    assert summary["put_vip"]["statuses"] == {"202": 1}
    assert restload.requests_per_s(summary, 2.0) == 2.0


def test_landing_watch_sees_each_table_once_the_vm_is_out_and_the_table_current(monkeypatch):
    """GET /v1/status, polled: a VIP's new table is in when the dead VM is out of its healthy
    set and its table is current (before its mark-down the old table is current too)."""
    dead, others = rebuild_setup.DEAD["name"], ["vm2", "vm3"]

    def vip(marked: bool, current: bool) -> dict:
        return {"healthy": others if marked else [dead, *others], "table_current": current}

    answers = [
        {"vip1": vip(False, True), "vip2": vip(True, False)},  # none in
        {"vip1": vip(True, False), "vip2": vip(True, True)},  # vip2's in
        {"vip1": vip(True, True), "vip2": vip(True, True)},  # both
    ]
    monkeypatch.setattr(rebuild_watch, "status", lambda port: {"vips": answers.pop(0)})
    watch = rebuild_watch.LandingWatch(8080, vips=2)
    watch._poll()
    assert watch.landed == {} and watch.done_at is None
    watch._poll()
    assert list(watch.landed) == [1] and watch.done_at is None
    watch._poll()
    assert sorted(watch.landed) == [0, 1] and watch.done_at == max(watch.landed.values())
    assert len(watch.request_seconds) == 3
    mark_downs = {0: watch.landed[0] - 0.5, 1: watch.landed[1] - 0.25}
    assert watch.install_delays(mark_downs) == pytest.approx([0.25, 0.5])
    assert watch.install_delays({1: watch.landed[1] - 0.25}) == pytest.approx([0.25])


def test_the_health_view_says_who_is_down_and_since_when(monkeypatch):
    dead = rebuild_setup.DEAD["name"]
    view = {
        "vips": {
            "vip1": [
                {"backend": dead, "healthy": False, "since": 1000.25},
                {"backend": "vm2", "healthy": True, "since": 900.0},
            ],
            "vip2": [
                {"backend": dead, "healthy": True, "since": 900.0},
                {"backend": "vm2", "healthy": False, "since": 1001.5},
            ],
            "vip3": [{"backend": dead, "healthy": False, "since": 1002.0}],
        }
    }
    monkeypatch.setattr(procs, "rest_get", lambda port, path: json.dumps(view).encode())
    health = rebuild_watch.health_view(8080)
    assert health == (2, 1, {0: 1000.25, 2: 1002.0})
    assert rebuild.perf_times(health.marked_down, 990.0) == {0: 10.25, 2: 12.0}


def test_flows_to_the_dead_vm_count_after_their_own_vips_mark_down():
    """Flow i is for VIP i % 2.  VIP 0 marked the VM down at 10.0, VIP 1 at 20.0."""
    watched = [
        (0, 7, 4.0),  # before the kill (5.0): not counted
        (2, 7, 9.0),  # after the kill, before VIP 0's mark-down
        (4, 7, 10.001),  # within the clock margin of it: not after
        (6, 7, 10.5),  # after it: a flow to the dead VM after its mark-down
        (1, 8, 15.0),  # VIP 1, before its own mark-down
        (3, 8, 25.0),  # VIP 1, after it
        (5, 8, 26.0),
    ]
    mark_downs = {0: 10.0, 1: 20.0}
    assert rebuild.dead_vm_flows(watched, 2, 5.0, mark_downs) == (6, 3)
    assert rebuild.dead_vm_flows(watched, 2, 5.0, {0: 10.0}) == (6, 1)  # VIP 1 never marked it


def test_retirements_are_timed_from_the_mark_down_of_the_vip_the_backend_id_names():
    watched = [(0, 7, 1.0), (1, 8, 2.0), (2, 7, 3.0)]  # backend 7 in VIP 0, 8 in VIP 1 (of 2)
    deletes = {8: 31.0, 7: 22.0, 9: 5.0}  # 9: a backend id no flow on the VM named
    assert rebuild.retirements(watched, 2, deletes, {0: 10.0, 1: 20.0}) == [11.0, 12.0]
    assert rebuild.retirements(watched, 2, deletes, {1: 20.0}) == [11.0]


def test_a_failed_run_stops_the_controller_and_quotes_its_log(tmp_path):
    log = tmp_path / "c.log"
    controller = procs.Controller(
        "lockstep_native",
        [sys.executable, "-c", "print('listening', flush=True); import time; time.sleep(60)"],
        0,
        0,
        log,
    )
    process = procs.start(controller)
    deadline = time.monotonic() + 10
    while "listening" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    error = procs.failed(controller, process, ControllerError("no flow-mod"))
    assert process.poll() is not None, "the controller was stopped"
    assert str(error) == "lockstep_native: no flow-mod; its log ends:\n    listening"
