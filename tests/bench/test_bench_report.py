"""The new-flow benchmark's report (``bench/report.py``, ``bench/rebuild_report.py``) on made-up
figures: the README's summary table and the rebuild phase's account say what the figures say."""

from __future__ import annotations

from collections import Counter

import pytest

from bench import rebuild_report, report
from bench.fakeswitch import SwitchCounters
from bench.phase import PhaseResult
from bench.rebuild import RebuildResult
from bench.rebuild_setup import RebuildPlan


def phase(flows_per_s: float, latencies=(0.1, 0.2, 0.3, 1.5), controller_cpu=0.7) -> PhaseResult:
    return PhaseResult(
        flows_per_s=flows_per_s,
        offered_per_s=flows_per_s / 2,
        latencies_ms=sorted(latencies),
        incomplete=0,
        no_flow_mod=0,
        not_offered=0,
        switch_cpu=0.3,
        controller_cpu=controller_cpu,
        other_cpu=0.05,
    )


def new_flow_result(flows_per_s: float, memory: bool) -> dict:
    result = {
        "sustained": phase(flows_per_s),
        "latency": phase(flows_per_s / 2),
        "counters": SwitchCounters(flow_cookie_kinds=Counter()),
        "log_problems": (0, []),
        "prefill_flows": 1_000_000 if memory else 0,
        "prefill_s": 20.0,
        "memory": None,
    }
    if memory:
        result["memory"] = {
            "before": phase(flows_per_s * 1.05),
            "rss_start": 50 * 2**20,
            "rss_before": 60 * 2**20,
            "rss_after": 60 * 2**20 + 146_000_000,
            "entries_before": 0,
            "entries_after": 1_000_000,
            "evictions": 0,
        }
    return result


@pytest.fixture
def results() -> dict:
    return {
        "lockstep_native": new_flow_result(48_465, memory=True),
        "reference": new_flow_result(1_912, memory=False),
    }


@pytest.fixture
def rebuilt() -> RebuildResult:
    return rebuild_result()


def rebuild_result() -> RebuildResult:
    kill = 100.0
    return RebuildResult(
        plan=RebuildPlan(vips=4, backends=5, interval=1.0, timeout=0.2, fall=2),
        rate=3000.0,
        sustained=6000.0,
        load=phase(4990.0),
        flows_before_kill=12_345,
        kill_at=kill,
        mark_downs=[kill + 2.1, kill + 2.2, kill + 2.3, kill + 2.4],
        landed_at=kill + 2.5,
        baseline_ms=[0.1, 0.2, 0.3],
        window_ms=[0.2, 0.4, 6.1, 15.4],
        rebuild_ms=[0.2, 0.3, 5.0],
        unanswered=3,
        sent_in_window=12_500,
        dead_flows=40,
        dead_flows_after_down=0,
        probes_per_s=20.0,
        dead_down_vips=4,
        install_delays=[0.05, 0.08, 0.1, 0.1],
        retirements=[1.25],
        request_seconds=[0.001, 0.002],
        swaps=4,
    )


def summary_rows(text: str) -> dict[str, list[str]]:
    rows = {}
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith(("| |", "| ---")):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def test_the_summary_has_a_column_per_controller_and_a_row_per_figure(results, rebuilt, capsys):
    report.print_summary(results, {"lockstep_native": rebuilt})
    text = capsys.readouterr().out
    header = next(line for line in text.splitlines() if line.startswith("| |"))
    assert header == "| | lockstep (native) | reference (os-ken) | target |"
    rows = summary_rows(text)
    assert rows["new flows/s (closed loop)"] == ["48,465", "1,912", ">= 20,000"]
    assert rows["first-packet p50 / p99 at half that rate"] == [
        "0.20 / 1.50 ms",
        "0.20 / 1.50 ms",
        "p99 <= 2 ms",
    ]
    assert rows["controller CPU per new flow"] == ["14 µs", "366 µs", ""]
    assert rows["new flows/s before / after 1,000,000 more flows"] == [
        "50,888 / 48,465",
        "",
        ">= 90% after",
    ]
    assert rows["resident bytes per flow-table entry"] == ["146", "", "<= 200"]
    assert rows["rebuild of 4 VIPs x 5 backends, kill -> all tables in: p50 / p99 / max"] == [
        "0.40 / 15.40 / 15.40 ms",
        "",
        "p99 <= 50 ms",
    ]
    assert rows["rebuild: last VIP marks the VM down / all tables in, after the kill"] == [
        "2.4 s / 2.5 s",
        "",
        "<= 2.2 s (interval x fall + timeout) /",
    ]
    assert rows["rebuild: flows to the dead VM after its mark-down"] == ["0", "", "0"]
    assert len(rows) == 10


def test_the_summary_without_a_rebuild_or_memory_phase_has_only_the_new_flow_rows(results, capsys):
    results["lockstep_native"]["memory"] = None
    report.print_summary(results, {})
    rows = summary_rows(capsys.readouterr().out)
    assert list(rows) == [
        "new flows/s (closed loop)",
        "first-packet p50 / p99 at half that rate",
        "controller CPU per new flow",
    ]


def test_the_rebuild_account(rebuilt, capsys):
    rebuild_report.print_rebuild("lockstep_native", rebuilt)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (
        "  lockstep (native): 4 VIPs x 5 backends (4 distinct tables), health every 1 s "
        "(timeout 0.2 s, fall 2): 20 probes/s"
    )
    assert lines[1] == "    load: 3,000 new flows/s (half of 6,000/s sustained), 4,990/s answered"
    assert (
        "    4 mark-downs (GET /v1/health: the VM's state since) 2.10-2.40 s after the kill; all "
        "tables in 0.40 s after the first, 0.10 s after the last (2.50 s after the kill)"
    ) in lines
    assert (
        "    each VIP's table in after its mark-down: p50 0.08 s, max 0.10 s (seen for 4 VIPs by "
        "GET /v1/status every 50 ms: 2 requests taking p50 1.00 ms, max 2.00 ms; 4 tables "
        "swapped in all)"
    ) in lines
    assert (
        "    the VM's rules deleted in 1 VIP(s) before the phase ended, 1.25-1.25 s after their "
        "mark-down (grace 1.2 s; 0 sooner)"
    ) in lines
    assert (
        "    latency, kill -> landed: 4 flows, p50 0.40 ms, p99 15.40 ms, max 15.40 ms"
    ) in lines
    assert not [line for line in lines if "WARNING" in line or "NOT COMPLETE" in line]
    assert lines[-3].startswith("    flows sent to the dead VM after the kill: 40, 0 after their")


def test_a_rebuild_that_fell_behind_says_so_first(rebuilt, capsys):
    rebuilt.others_down = 2
    rebuilt.problem = "not every table landed"
    rebuild_report.print_rebuild("lockstep_native", rebuilt)
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].startswith("    WARNING: the controller fell behind its probes")
    assert lines[3] == "    NOT COMPLETE: not every table landed"


def test_a_load_that_overloads_the_gateway_says_so(rebuilt, capsys):
    rebuilt.rate = 4990.0  # with 20 probe answers/s: 5,010 packet-ins/s
    rebuild_report.print_rebuild("lockstep_native", rebuilt)
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].startswith("    WARNING: the load and the probes' answers reach the gateway's")


def test_the_rebuild_targets_name_flows_after_the_mark_down_and_rules_deleted_too_soon(rebuilt):
    verdicts = {text: (met, figure) for text, met, figure in report.targets("x", None, rebuilt)}
    assert verdicts["no flow to the dead VM after it was marked down"] == (True, "0")
    kept = "its earlier flows' rules kept for the grace (1.2 s)"
    assert verdicts[kept] == (True, "0 of 1 deletes sooner")
    rebuilt.retired_early, rebuilt.dead_flows_after_down = 1, 2
    verdicts = {text: (met, figure) for text, met, figure in report.targets("x", None, rebuilt)}
    assert verdicts[kept] == (False, "1 of 1 deletes sooner")
    assert verdicts["no flow to the dead VM after it was marked down"] == (False, "2")
