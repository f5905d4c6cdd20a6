"""The Open vSwitch new-flow benchmark: its parsers, step figures and tables on canned input,
its generator and sink on loopback, and one ``--quick`` run of both modes end to end on a
private OVS (root and Open vSwitch needed)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import acceptsink, bench_ovs, connload, ovscounters, ovslab, ovsreport
from bench.ovsreport import MAX

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


# ---- planning the steps -----------------------------------------------------------------------


def test_rates_parse_with_k_suffix_and_max():
    assert ovsreport.parse_rates("2000, 5k,1.5k,max") == [2000, 5000, 1500, MAX]
    for bad in ("0", "-5", "fast", ""):
        with pytest.raises(ValueError):
            ovsreport.parse_rates(bad)


def test_modes_are_controller_switch_or_both_each_once():
    assert ovsreport.parse_modes("controller,switch") == ["controller", "switch"]
    assert ovsreport.parse_modes(" switch ") == ["switch"]
    for bad in ("", "switch,switch", "hybrid", "controller,hash"):
        with pytest.raises(ValueError):
            ovsreport.parse_modes(bad)


def test_generators_share_a_rate_and_max_runs_two_unpaced():
    assert ovsreport.lanes_for(2000) == 1
    assert ovsreport.lanes_for(ovsreport.LANE_MAX_RATE) == 1
    assert ovsreport.lanes_for(20_000) == 3
    assert ovsreport.lanes_for(MAX) == ovsreport.MAX_LANES == 2
    paced = bench_ovs.generator(20_000, 3, 5.0)
    assert paced[paced.index("--rate") + 1] == f"{20_000 / 3:g}"
    unpaced = bench_ovs.generator(MAX, 2, 5.0)
    assert unpaced[unpaced.index("--rate") + 1] == "0"
    assert ovsreport.step_label(MAX) == "max" and ovsreport.step_label(2500) == "2.5k/s"


def test_quick_and_default_runs_pick_their_own_steps_and_both_modes():
    quick = bench_ovs.parse_args(["--quick"])
    assert (quick.rates, quick.duration, quick.modes) == (
        [5000, MAX],
        3.0,
        ["controller", "switch"],
    )
    full = bench_ovs.parse_args(["--modes", "switch"])
    assert (full.rates, full.duration, full.modes) == (list(ovsreport.FULL_RATES), 5.0, ["switch"])
    with pytest.raises(SystemExit):
        bench_ovs.parse_args(["--modes", "both"])


# ---- a step's figures and the tables ----------------------------------------------------------

SNMP_TEXT = """\
Ip: Forwarding DefaultTTL InReceives
Ip: 2 64 1234
Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets
Tcp: 1 200 120000 -1 3 4711 0 2
Udp: InDatagrams NoPorts
Udp: 0 0
"""


def test_passive_opens_are_read_by_column_name():
    assert ovsreport.parse_passive_opens(SNMP_TEXT) == 4711
    with pytest.raises(ValueError):
        ovsreport.parse_passive_opens("Ip: Forwarding\nIp: 2\n")


def lane(started, established, timed_out=0, p99=2.0, seconds=5.0, cpu_s=1.0):
    return {"started": started, "established": established, "failed": 0,
            "timed_out": timed_out, "behind": 0, "seconds": seconds, "cpu_s": cpu_s,
            "connect_p50_ms": 0.5, "connect_p99_ms": p99}  # fmt: skip


def test_lanes_add_up_and_keep_the_worst_p99_and_the_longest_run():
    total = ovsreport.combine_lanes([lane(100, 90, 10, 3.0, 5.0), lane(50, 50, 0, 9.0, 5.2)])
    assert (total["started"], total["established"], total["timed_out"]) == (150, 140, 10)
    assert (total["connect_p99_ms"], total["seconds"], total["cpu_s"]) == (9.0, 5.2, 2.0)


def counters(passive_opens, packet_ins, upcalls, rules, dropped=0):
    return {
        "passive_opens": passive_opens,
        "metrics": {"packet_ins_total": packet_ins, "flows_installed_total": packet_ins},
        "pmd": {"miss with success upcall": upcalls, "megaflow hits": 0},
        "upcall": {"max": 900},
        "rules": rules,
        "intake_dropped": dropped,
    }


STEP_CPU = {"ovs_main": 0.5, "ovs_main_wait": 0.1, "ovs_revalidators": 0.2, "ovs": 0.8,
            "controller": 0.2, "controller_wait": 0.0, "bench": 0.0, "machine": 1.9,
            "softirq": 0.1, "steal": 0.0}  # fmt: skip


def test_new_flows_are_the_handshakes_the_vms_completed_not_the_syns_sent():
    before, after = counters(1000, 10, 0, 0, 5), counters(21_000, 20_010, 40_000, 20_000, 105)
    figures = ovsreport.step_figures(before, after, lane(25_000, 20_500, 4_500), STEP_CPU)
    assert figures["handshakes"] == 20_000 and figures["handshakes_per_s"] == 4_000
    assert figures["started_per_s"] == 5_000 and figures["established_per_s"] == 4_100
    assert figures["success_pct"] == 82.0
    assert figures["packet_ins_per_s"] == 4_000 and figures["upcalls"] == 40_000
    assert figures["intake_lost"] == 100
    # One core of the gateway (OVS 0.8, controller 0.2) for 4,000 flows/s: 250 us a flow.
    assert figures["gateway_us_per_flow"] == 250 and figures["main_us_per_flow"] == 125
    assert figures["cpu_load"] == 0.2 and figures["cpu_rest"] == 0.7  # 1.9 - 0.8 - 0.2 - 0.2


def test_a_step_with_no_handshakes_has_no_cost_per_flow():
    figures = ovsreport.step_figures(counters(5, 0, 0, 0), counters(5, 0, 0, 0),
                                     lane(0, 0), STEP_CPU)  # fmt: skip
    assert figures["success_pct"] is None and figures["gateway_us_per_flow"] is None


def made_step(label, handshakes_per_s, **changes):
    rate = handshakes_per_s
    figures = {"step": label, "started_per_s": rate, "handshakes_per_s": rate,
               "success_pct": 100.0, "timed_out": 0, "connect_p99_ms": 1.0,
               "packet_ins_per_s": 0, "upcalls": 0, "rules_after": 0, "datapath_flows_max": 0,
               "intake_lost": 0, "cpu_load": 0.2, "cpu_rest": 0.3, "gateway_us_per_flow": 100,
               "main_us_per_flow": 50,
               **{f"cpu_{role}": value for role, value in STEP_CPU.items()}}  # fmt: skip
    return {**figures, **changes}


def test_the_side_by_side_table_pairs_steps_and_gives_each_ratio_and_the_peaks():
    controller = [made_step("2k/s", 2000), made_step("max", 5000)]
    switch = [made_step("2k/s", 2000), made_step("max", 16_000), made_step("40k/s", 9000)]
    lines = ovsreport.side_by_side(controller, switch)
    assert len(lines) == 1 + 3 + 2  # heading, 3 steps, peak, target
    assert "2,000 / 2,000" in lines[1] and lines[1].endswith("1.00x")
    assert "5,000 / 16,000" in lines[2] and lines[2].endswith("3.20x")
    assert "- / 9,000" in lines[3] and lines[3].endswith("-")
    assert lines[4].split()[0] == "peak" and lines[4].endswith("3.20x")
    assert lines[5].endswith(">=3x")
    assert "meets" in ovsreport.ratio_verdict(controller, switch)
    assert "MISSES" in ovsreport.ratio_verdict(controller, switch[:1])
    assert "not measured" in ovsreport.ratio_verdict([], switch)


def test_a_modes_table_has_a_line_per_step_under_its_heading():
    lines = ovsreport.table([made_step("5k/s", 4900), made_step("max", 6000)])
    assert len(lines) == 3 and "hs/s" in lines[0]
    assert "4,900" in lines[1] and lines[2].split()[0] == "max"
    assert len({len(line) for line in lines}) == 1  # columns aligned


# ---- the generator and the sink, on loopback --------------------------------------------------


def test_pacing_wants_what_the_rate_owes_and_unpaced_wants_all_it_can():
    assert connload.due(1000, 0.5, 0) == 500
    assert connload.due(1000, 0.5, 480) == 20
    assert connload.due(1000, 0.5, 600) == 0
    assert connload.due(0, 0.5, 10**6) > 10**9


def test_the_generator_completes_handshakes_with_the_sink_and_counts_a_refusal():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sink = subprocess.Popen([sys.executable, acceptsink.__file__, "--port", str(port)])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and ovslab_listening(port) is False:
            time.sleep(0.05)
        args = ["--vip", "127.0.0.1", "--port", str(port), "--rate", "500", "--seconds", "0.4"]
        out = subprocess.run([sys.executable, connload.__file__, *args], capture_output=True,
                             text=True, timeout=30, check=True).stdout  # fmt: skip
    finally:
        sink.terminate()
        sink.wait(timeout=5)
    figures = json.loads(out.strip().splitlines()[-1])
    assert 150 <= figures["started"] <= 210 and figures["established"] == figures["started"]
    assert figures["failed"] == figures["timed_out"] == 0
    # The sink is gone: every connection is refused now.
    args = ["--vip", "127.0.0.1", "--port", str(port), "--rate", "100", "--seconds", "0.2"]
    out = subprocess.run([sys.executable, connload.__file__, *args], capture_output=True,
                         text=True, timeout=30, check=True).stdout  # fmt: skip
    refused = json.loads(out.strip().splitlines()[-1])
    assert refused["started"] > 0 and refused["established"] == 0
    assert refused["failed"] == refused["started"]


def ovslab_listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


# ---- end to end -------------------------------------------------------------------------------


def test_quick_run_through_a_real_ovs_reaches_the_vms_and_leaves_nothing_behind():
    """Both modes, quick: handshakes completed at the VMs in both, packet-ins only in
    controller mode (switch mode's switch places and pins by itself), nothing left behind."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_ovs.py"), "--quick", "--rates", "2k",
         "--duration", "2"],
        capture_output=True, text=True, timeout=240, check=False, cwd=ROOT,
    )  # fmt: skip
    took = time.monotonic() - started
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert took < 120, f"took {took:.0f} s"
    by_mode = {m["mode"]: m for m in summary["modes"]}
    assert list(by_mode) == ["controller", "switch"]
    cores = os.cpu_count()
    for mode, run in by_mode.items():
        assert run["error"] is None and run["leftovers"] == [], run
        assert run["controller_log_errors"] == 0
        (s,) = run["steps"]
        # Handshakes reached the VMs (a loose bound: the machine is shared) ...
        assert s["started"] > 0.5 * 2000 * s["seconds"], s
        assert 0 < s["handshakes"] <= s["started"] + 3, s  # (+ a probe per VM at most)
        assert s["established"] > 0.5 * s["started"], s
        for role in ("ovs_main", "ovs", "controller", "machine"):
            assert 0 <= s[f"cpu_{role}"] <= cores + 0.5, (role, s[f"cpu_{role}"])
        # ... placed by the controller, or by the switch alone.
        if mode == "controller":
            assert s["packet_ins"] >= s["handshakes"] and s["flows_installed"] > 0
        else:
            assert s["packet_ins"] == 0 and s["flows_installed"] == 0
            assert s["upcalls"] > 0  # each flow's first ACK, learning its pin
        prefix = run["prefix"]
        assert prefix not in subprocess.check_output(["ip", "netns", "list"], text=True)
        assert not [link for link in os.listdir("/sys/class/net") if link.startswith(prefix)]
        assert not [pid for pid, name in run["pids"] if ovslab.alive(pid, name)]
    assert "side by side" in result.stdout and "ratio" in result.stdout
