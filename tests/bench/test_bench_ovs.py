"""The Open vSwitch new-flow benchmark: its parsers and verdict on canned input, and one
``--quick`` run end to end on a private OVS (root, Open vSwitch and hping3 needed)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import bench_ovs, ovscounters, ovslab, ovsverdict
from bench.bench_ovs import FLOOD

ROOT = Path(__file__).resolve().parents[2]

# ---- parsing what OVS, the controller and the kernel print ----------------------------------

COVERAGE_TEXT = """\
Event coverage, avg rate over last: 5 seconds, last minute, last hour,  hash=1d0c4a3e:
bridge_reconfigure         0.0/sec     0.000/sec        0.0000/sec   total: 5
rconn_overflow            12.4/sec     1.033/sec        0.0172/sec   total: 62
xlate_actions           9040.2/sec   753.350/sec       12.5558/sec   total: 45201
98 events never hit
"""

PMD_TEXT = """\
main thread:
  packets received: 12132
  packet recirculations: 0
  avg. datapath passes per packet: 1.00
  megaflow hits: 94
  avg. subtable lookups per megaflow hit: 3.38
  miss with success upcall: 12038
  miss with failed upcall: 0
"""

UPCALL_TEXT = """\
netdev@ovs-netdev:
  flows         : (current 3) (avg 86) (max 171) (limit 51000)
  dump duration : 12ms
  ufid enabled : true

  5: (keys 3)
"""

METRICS_TEXT = """\
# HELP lockstep_packet_ins_total Packet-ins received.
# TYPE lockstep_packet_ins_total counter
lockstep_packet_ins_total 12126
lockstep_malformed_packets_total{reason="truncated"} 2
lockstep_malformed_packets_total{reason="vlan"} 3
lockstep_backend_up{vip="web",backend="vm1"} 1
"""


def test_coverage_totals_are_read_and_unlisted_counters_are_absent():
    totals = ovscounters.parse_coverage(COVERAGE_TEXT)
    assert totals == {"bridge_reconfigure": 5, "rconn_overflow": 62, "xlate_actions": 45201}


def test_pmd_stats_keep_every_numeric_line():
    stats = ovscounters.parse_pmd_stats(PMD_TEXT)
    assert stats["packets received"] == 12132
    assert stats["miss with success upcall"] == 12038
    assert stats["avg. subtable lookups per megaflow hit"] == pytest.approx(3.38)
    assert "main thread" not in stats


def test_pmd_stats_sum_over_threads():
    two = PMD_TEXT + PMD_TEXT.replace("main thread", "pmd thread numa_id 0 core_id 1")
    assert ovscounters.parse_pmd_stats(two)["packets received"] == 2 * 12132


def test_upcall_show_gives_datapath_flows_and_their_limit():
    assert ovscounters.parse_upcall_show(UPCALL_TEXT) == {
        "current": 3,
        "max": 171,
        "limit": 51000,
        "dump_ms": 12,
    }


def test_aggregate_counts():
    text = "OFPST_AGGREGATE reply (OF1.3) (xid=0x2): packet_count=18 byte_count=972 flow_count=3991"
    assert ovscounters.parse_aggregate(text) == (3991, 18)
    assert ovscounters.parse_aggregate("nothing") == (0, 0)


def test_metrics_sum_labelled_samples_and_drop_the_prefix():
    metrics = ovscounters.parse_metrics(METRICS_TEXT)
    assert metrics == {"packet_ins_total": 12126, "malformed_packets_total": 5, "backend_up": 1}


def test_controller_queue_counts_unread_bytes_of_the_listening_port():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = server.accept()
            with accepted:
                assert ovscounters.controller_queue_bytes(port) == 0
                client.sendall(b"x" * 1000)
                time.sleep(0.1)
                assert ovscounters.controller_queue_bytes(port) == 1000
                accepted.recv(1000)
                assert ovscounters.controller_queue_bytes(port) == 0


# ---- offering a rate ------------------------------------------------------------------------


def test_rates_parse_with_k_suffix_and_flood():
    assert bench_ovs.parse_rates("1000, 2k,1.5k,flood") == [1000, 2000, 1500, FLOOD]
    for bad in ("0", "-5", "fast", ""):
        with pytest.raises(ValueError):
            bench_ovs.parse_rates(bad)


def test_lanes_share_a_rate_and_the_flood_is_one_process():
    assert bench_ovs.lanes_for(1000) == 1
    assert bench_ovs.lanes_for(bench_ovs.LANE_MAX_RATE) == 1
    assert bench_ovs.lanes_for(20_000) == 4
    assert bench_ovs.lanes_for(FLOOD) == 1


def test_interval_leaves_room_for_hping3s_own_overhead():
    # 2 lanes for 10k/s: 200 us apart each, of which hping3 adds 70 itself.
    assert bench_ovs.interval_us(10_000, 2, 70.0) == 130
    assert bench_ovs.interval_us(1_000_000, 1, 70.0) == 1  # never below 1 us


def test_a_warm_up_corrects_the_overhead_it_measured():
    # Asked for 130 us, got 8,000/s from 2 lanes: each lane slept 250 us, 120 more than asked.
    overhead = bench_ovs.measured_overhead(8000.0, 2, 130)
    assert overhead == pytest.approx(120.0)
    assert bench_ovs.interval_us(10_000, 2, overhead) == 80
    assert bench_ovs.measured_overhead(1e9, 1, 130) == 0.0  # clamped, never negative


# ---- one step's figures and its verdict -----------------------------------------------------


def snapshot(offered, vm, pmd_received, packet_ins, packet_outs, rules, **coverage):
    return {
        "offered": offered,
        "veth_dropped": 0,
        "vm": {"vm1": vm // 2, "vm2": vm - vm // 2},
        "metrics": {
            "packet_ins_total": packet_ins,
            "flows_installed_total": packet_outs,
            "packet_outs_total": packet_outs,
        },
        "coverage": coverage,
        "pmd": {"packets received": pmd_received, "miss with success upcall": pmd_received},
        "upcall": {"current": 3, "max": 100, "limit": 200000, "dump_ms": 1},
        "rules": rules,
        "rule_packets": 0,
        "all_rules": rules + 10,
    }


CPU = {
    "ovs_main": 0.5,
    "ovs_revalidators": 0.1,
    "ovs": 0.7,
    "controller": 0.4,
    "controller_wait": 0.0,
    "ovs_main_wait": 0.0,
    "bench": 0.02,
    "machine": 1.5,
    "softirq": 0.05,
    "steal": 0.0,
    "hping3": 0.2,
    "other": 0.1,
}


def test_figures_are_deltas_and_losses_are_split_by_stage():
    before = snapshot(100, 50, 100, 100, 100, 100, rconn_overflow=5)
    # 10,000 offered; OVS read 9,000; 8,000 packet-ins (700 of the lost dropped in the queue to
    # the controller); 7,900 packet-outs; 7,800 reached the VMs.
    after = snapshot(10_100, 7_850, 9_100, 8_100, 8_000, 8_000, rconn_overflow=705)
    window = ovsverdict.Window(2.0, 7_000, 0.4, 4096, CPU)
    figures = ovsverdict.step_figures(5000, 1, 130, before, after, window)
    assert figures["offered"] == 10_000
    assert figures["offered_per_s"] == 5000
    assert figures["delivered"] == 7_800
    assert figures["conn_per_s"] == 3_500
    assert figures["loss_pct"] == pytest.approx(22.0)
    assert (
        figures["lost_intake"],
        figures["lost_to_controller"],
        figures["lost_at_controller"],
        figures["lost_delivery"],
    ) == (1_000, 1_000, 100, 100)
    assert figures["ovs_rconn_overflow"] == 700
    assert figures["ovs_packet_in_overflow"] == 0  # never hit: not listed by OVS
    assert figures["rules_added"] == 7_900
    assert figures["per_vm"] == {"vm1": 3_900, "vm2": 3_900}
    assert figures["cpu_controller"] == 0.4
    assert figures["bottleneck"] in ovsverdict.LABELS


def test_a_probe_counted_at_a_vm_does_not_make_the_loss_negative():
    before = snapshot(100, 50, 100, 100, 100, 100)
    after = snapshot(1_100, 1_051, 1_100, 1_100, 1_100, 1_100)
    window = ovsverdict.Window(1.0, 1_001, 0.0, 0, CPU)
    assert ovsverdict.step_figures(1000, 1, 930, before, after, window)["loss_pct"] == 0.0


def step(**changes) -> dict:
    """A step that kept up at its 5,000/s target; ``changes`` make it not."""
    figures = {
        "target_per_s": 5000,
        "offered": 10_000,
        "offered_per_s": 5000,
        "conn_per_s": 5000,
        "loss_pct": 0.0,
        "drain_s": 0.1,
        "queue_max_bytes": 0,
        "lost_intake": 0,
        "lost_to_controller": 0,
        "lost_at_controller": 0,
        "lost_delivery": 0,
        "upcalls_failed": 0,
        "ovs_rconn_overflow": 0,
        "ovs_packet_in_overflow": 0,
        "ovs_upcall_flow_limit_hit": 0,
        "ovs_packets_per_receive": 2.0,
        **{f"cpu_{role}": value for role, value in CPU.items()},
    }
    return {**figures, **changes}


def test_a_step_that_kept_up_has_no_bottleneck():
    assert ovsverdict.verdict(step(), 2)[0] == "none"


def test_a_rate_hping3_could_not_offer_is_the_generators():
    name, line = ovsverdict.verdict(step(offered_per_s=3000, conn_per_s=3000, cpu_hping3=1.0), 2)
    assert name == "generator"
    assert "3,000 of 5,000/s" in line


def test_a_backlog_that_drained_still_names_a_bottleneck():
    # Nothing lost in the end, but only half arrived while offered: a queue built up.
    lagging = step(conn_per_s=2500, drain_s=3.0, cpu_controller=0.98, queue_max_bytes=1 << 20)
    name, line = ovsverdict.verdict(lagging, 2)
    assert name == "controller"
    assert "whole core (98% on a CPU)" in line and "1,024 KiB unread" in line


def test_packet_ins_dropped_for_a_slow_controller_name_the_controller():
    lost = step(loss_pct=30.0, conn_per_s=3500, lost_to_controller=3000, ovs_rconn_overflow=3000)
    name, line = ovsverdict.verdict(lost, 2)
    assert name == "controller"
    assert "3,000 packet-ins dropped in OVS's queue to it" in line


def test_syns_ovs_never_read_name_ovs():
    lost = step(loss_pct=40.0, conn_per_s=3000, lost_intake=4000, cpu_ovs_main=0.95)
    name, line = ovsverdict.verdict(lost, 2)
    assert name == "ovs"
    assert "4,000 SYNs never read from the uplink" in line and "(95% on a CPU)" in line


def test_full_receive_batches_say_the_main_loop_set_the_intake():
    lost = step(loss_pct=40.0, conn_per_s=3000, lost_intake=4000, ovs_packets_per_receive=31.5)
    assert "it read 31.5 packets per pass of its loop" in ovsverdict.verdict(lost, 2)[1]


def test_a_thread_kept_off_the_cpu_by_others_still_counts_as_saturated():
    starved = step(loss_pct=40.0, conn_per_s=3000, cpu_ovs_main=0.5, cpu_ovs_main_wait=0.45)
    name, line = ovsverdict.verdict(starved, 2)
    assert name == "ovs"
    assert "whole core (50% on a CPU, 45% waiting for one)" in line
    calm = {**starved, "cpu_ovs_main_wait": 0.1, "cpu_machine": 1.95}
    assert ovsverdict.verdict(calm, 2)[0] == "machine"


def test_with_signs_on_both_sides_the_bigger_loss_wins():
    both = step(loss_pct=40.0, conn_per_s=3000, cpu_controller=0.95, cpu_ovs_main=0.95)
    controller_lost = ovsverdict.verdict({**both, "lost_at_controller": 3000}, 2)
    ovs_lost = ovsverdict.verdict({**both, "lost_intake": 3000, "lost_at_controller": 100}, 2)
    assert (controller_lost[0], ovs_lost[0]) == ("controller", "ovs")


def test_losses_without_a_saturated_component_blame_a_busy_machine_or_nothing():
    lost = step(loss_pct=10.0, conn_per_s=4500, lost_delivery=1000)
    assert ovsverdict.verdict({**lost, "cpu_machine": 1.95}, 2)[0] == "machine"
    assert ovsverdict.verdict({**lost, "cpu_machine": 1.0}, 2)[0] == "unclear"


def test_other_load_and_a_short_generator_are_mentioned_beside_the_bottleneck():
    lost = step(loss_pct=40.0, conn_per_s=2000, offered_per_s=4000, lost_intake=4000)
    _, line = ovsverdict.verdict({**lost, "cpu_other": 0.8}, 2)
    assert "hping3 offered 4,000 of 5,000/s" in line
    assert "other processes used 0.80 cores" in line


# ---- end to end -----------------------------------------------------------------------------


def test_quick_run_through_a_real_ovs_reaches_the_vms_and_leaves_nothing_behind():
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_ovs.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        cwd=ROOT,
    )
    took = time.monotonic() - started
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["error"] is None
    assert summary["leftovers"] == []
    assert summary["controller_log_errors"] == 0
    assert took < 60, f"--quick took {took:.0f} s"
    steps = summary["steps"]
    assert [s["target_per_s"] for s in steps] == list(bench_ovs.QUICK_RATES)
    cores = os.cpu_count()
    for s in steps:
        assert s["offered"] > 0.5 * s["target_per_s"] * s["seconds"], s
        # SYNs reached every VM, each one a flow of its own (no repeats in the flow table).  A
        # health probe (at most one per VM in a step: the interval is an hour, the first probe
        # at a random point of it) may reach a VM too.
        probes = len(s["per_vm"])
        assert 0 < s["delivered"] <= s["offered"] + probes
        assert all(count > 0 for count in s["per_vm"].values()), s["per_vm"]
        assert s["flow_table_hits"] == 0
        # What reached the VMs went by packet-out or by a rule (or was a probe).
        assert s["delivered"] <= s["packet_outs"] + s["rule_packets"] + probes
        assert s["packet_outs"] == s["flows_installed"] <= s["packet_ins"]
        assert s["rules_added"] == s["flows_installed"]
        assert s["upcalls"] > 0 and s["ovs_received"] >= s["packet_ins"]
        assert 0 <= s["loss_pct"] < 100
        for role in ("ovs_main", "ovs", "controller", "hping3", "machine"):
            assert 0 <= s[f"cpu_{role}"] <= cores + 0.5, (role, s[f"cpu_{role}"])
        assert s["cpu_ovs"] > 0 and s["cpu_controller"] > 0
        assert s["bottleneck"] in ovsverdict.LABELS and s["verdict"]
    # The first, slow step reaches the VMs almost whole (a loose bound: the machine is shared).
    assert steps[0]["loss_pct"] < 20, steps[0]
    # Nothing of the run is left: namespaces, links, processes.
    prefix = summary["prefix"]
    namespaces = subprocess.check_output(["ip", "netns", "list"], text=True)
    assert prefix not in namespaces
    assert not [link for link in os.listdir("/sys/class/net") if link.startswith(prefix)]
    assert {name for _, name in summary["pids"]} >= {"ovs-vswitchd", "ovsdb-server", "hping3"}
    assert not [pid for pid, name in summary["pids"] if ovslab.alive(pid, name)]
