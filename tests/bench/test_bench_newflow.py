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


def test_landing_watch_sees_each_table_by_lookups_and_the_rest_by_metrics(monkeypatch):
    """VIPs 0 and 1 have a witness (a flow they gave the dead VM); VIP 2 has none: its table
    is known to be in when /metrics counts every swap."""
    switch = SimpleNamespace(
        witnesses={0: (10, 7), 1: (11, 8)}, backend_deletes={7: 1.0, 8: 1.1, 9: 1.2}
    )
    answers = {0: ["vm2"], 1: [rebuild_setup.DEAD["name"], "vm3"]}
    swaps = [2.0, 3.0]
    monkeypatch.setattr(rebuild_watch, "lookup", lambda port, vip, index: answers[vip].pop(0))
    monkeypatch.setattr(rebuild_watch, "rebuilds_total", lambda port: swaps.pop(0))
    watch = rebuild_watch.LandingWatch(switch, 8080, vips=3, swaps_target=3.0)
    watch._poll()
    assert list(watch.landed) == [0] and watch.done_at is None
    watch._poll()  # VIP 1's table is in now; VIP 2's: /metrics says 2 swaps of 3
    assert sorted(watch.landed) == [0, 1] and watch.done_at is None
    watch._poll()
    assert watch.done_at is not None and watch.done_at >= max(watch.landed.values())
    assert watch.marked == {0: 1.0, 1: 1.1}
    assert len(watch.install_delays()) == 2 and len(watch.request_seconds) == 5
    watch._pool.shutdown()


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
