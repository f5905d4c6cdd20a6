"""The SYN-flood benchmark's pure parts: step planning, what a step's observations add up to,
the targets, the tables, the parsers of what OVS and ss print; and its small helpers run for
real on loopback (the legitimate client, the lab lock, the throw-away worktree)."""

from __future__ import annotations

import fcntl
import http.server
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from bench import bench_flood, floodbuilds, floodclient, floodlab, floodreport, floodwatch
from bench.floodreport import FLOOD
from bench.ovslab import Lab

ROOT = Path(__file__).resolve().parents[2]

# ---- planning ---------------------------------------------------------------------------------


def test_steps_are_multiples_of_the_capacity_paced_by_hping3_lanes():
    steps = floodreport.plan(5000, (1, 2, 4, FLOOD))
    assert [s.label for s in steps] == ["1x", "2x", "4x", "flood"]
    assert [s.rate for s in steps] == [5000, 10_000, 20_000, FLOOD]
    assert [s.lanes for s in steps] == [1, 2, 4, 1]
    # Each lane 5k/s: 200 us apart, less the 70 us hping3 adds itself.
    assert [s.interval_us for s in steps] == [130, 130, 130, None]


def test_multiples_parse_with_an_x_and_flood_and_refuse_nonsense():
    assert floodreport.parse_multiples("1, 2x,0.5,flood") == (1.0, 2.0, 0.5, FLOOD)
    for bad in ("0", "-1", "fast", ""):
        with pytest.raises(ValueError):
            floodreport.parse_multiples(bad)


def test_quick_and_default_runs_pick_their_own_steps_and_durations():
    quick = bench_flood.parse_args(["--quick"])
    assert (quick.multiples, quick.duration, quick.recovery) == ((2, FLOOD), 4.0, 8.0)
    full = bench_flood.parse_args([])
    assert (full.multiples, full.duration, full.recovery) == ((1, 2, 4, FLOOD), 8.0, 15.0)
    assert bench_flood.parse_args(["--quick", "--duration", "2"]).duration == 2.0
    with pytest.raises(SystemExit):
        bench_flood.parse_args(["--multiples", "0"])


# ---- summarising ------------------------------------------------------------------------------


def test_percentile_is_nearest_rank():
    values = list(range(1, 101))
    assert floodreport.percentile(values, 0.5) == 50
    assert floodreport.percentile(values, 0.99) == 99
    assert floodreport.percentile([7.0], 0.99) == 7.0
    assert floodreport.percentile([], 0.5) is None


def row(at, ok, connect_ms=None, ms=10.0):
    return {"at": at, "ok": ok, "connect_ms": connect_ms, "ms": ms}


def test_connections_count_only_those_started_during_the_flood():
    rows = [row(9.9, True, 1.0), row(10.0, True, 2.0), row(11.0, False), row(12.0, True, 1000.0)]
    rows.append(row(14.0, True, 3.0))  # after the flood's end
    figures = floodreport.connections(rows, 10.0, 14.0)
    assert figures["legit_n"] == 3
    assert figures["legit_ok_pct"] == pytest.approx(66.7)
    assert (figures["connect_p50_ms"], figures["connect_p99_ms"]) == (2.0, 1000.0)
    assert floodreport.connections(rows, 20.0, 21.0)["legit_ok_pct"] is None


UP3 = {"web/vm1": True, "web/vm2": True, "web/vm3": True}
DOWN3 = dict.fromkeys(UP3, False)


def test_flaps_count_each_backends_changes_and_the_answers_with_one_down():
    health = [(0, UP3), (1, {**UP3, "web/vm2": False}), (2, DOWN3), (3, UP3), (4, UP3)]
    # vm2 down, vm1+vm3 down, all three up: 1 + 2 + 3 changes; two answers showed one down.
    assert floodreport.flaps(health) == (6, 2)
    assert floodreport.flaps([(0, UP3), (1, UP3)]) == (0, 0)


def test_recovery_waits_for_a_new_connection_and_every_backend_up_for_good():
    rows = [row(9.0, True), row(10.2, False), row(10.5, True, ms=300.0)]
    # Never down: the first connection after the flood that succeeded (10.5 + 0.3).
    assert floodreport.recovery(10.0, rows, [(10.1, UP3), (10.6, UP3)], 20.0) == 0.8
    # Down until the answer at 12.0: that is later than the connection.
    health = [(10.1, DOWN3), (11.0, UP3), (11.5, DOWN3), (12.0, UP3), (12.5, UP3)]
    assert floodreport.recovery(10.0, rows, health, 20.0) == 2.0
    assert floodreport.recovery(10.0, rows, [(10.1, UP3), (10.6, DOWN3)], 20.0) is None
    assert floodreport.recovery(10.0, rows[:2], [(10.1, UP3)], 20.0) is None  # no success
    assert floodreport.recovery(10.0, rows, [(10.1, UP3)], 10.6) is None  # too late


def test_a_transfer_reports_bytes_during_the_flood_its_longest_stall_and_completion():
    progress = [{"at": 9.5, "bytes": 100}, {"at": 10.5, "bytes": 200}, {"at": 11.0, "bytes": 200}]
    progress += [{"at": 13.0, "bytes": 200}, {"at": 13.5, "bytes": 900}]
    done = {"done": True, "ok": True, "error": None}
    figures = floodreport.transfer(progress, done, 10.0, 14.0)
    assert figures == {
        "transfer_bytes": 800,
        "transfer_stall_s": 3.0,  # no progress from 10.5 to 13.5
        "transfer_done": True,
        "transfer_error": None,
    }
    stuck = floodreport.transfer(progress[:1], {"ok": False, "error": "timeout"}, 10.0, 14.0)
    assert (stuck["transfer_bytes"], stuck["transfer_stall_s"]) == (0, 4.0)
    assert (stuck["transfer_done"], stuck["transfer_error"]) == (False, "timeout")
    assert floodreport.transfer([], None, 10.0, 14.0)["transfer_done"] is False


def test_deltas_keep_numbers_present_in_both_snapshots():
    before = {"packet_ins": 10, "meters": 1, "name": "a"}
    after = {"packet_ins": 25, "meters": 1, "name": "b", "new": 3}
    assert floodreport.deltas(before, after) == {"packet_ins": 15, "meters": 0}


# ---- targets and tables -----------------------------------------------------------------------


def step(label="2x", multiple=2, **changes) -> dict:
    figures = {
        "step": label, "multiple": multiple, "offered_per_s": 9800, "legit_ok_pct": 97.0,
        "connect_p50_ms": 1.5, "connect_p99_ms": 9.0, "transfer_bytes": 1_000_000,
        "transfer_stall_s": 0.3, "transfer_done": True, "flaps": 0, "down_polls": 0,
        "polls": 17, "down_lines": 0, "rest_p99_ms": 12.0, "packet_ins_per_s": 5000,
        "intake_lost": 0, "meters": 0, "meter_dropped": 0, "packet_in_overflow": 0,
        "rconn_overflow": 0, "dp_lost": 0, "disconnects": 0, "recovery_s": 0.4,
        "datapath_flows": 300, "spoofed_pins": 0,
    }  # fmt: skip
    return {**figures, **changes}


def test_targets_met_say_nothing_and_each_miss_is_named():
    assert floodreport.target_problems([step(), step("flood", FLOOD, legit_ok_pct=3.0)]) == []
    misses = floodreport.target_problems(
        [
            step(legit_ok_pct=60.0, flaps=6, down_lines=3, rest_p99_ms=150.0),
            step("flood", FLOOD, transfer_done=False, transfer_error="timeout", recovery_s=None),
        ]
    )
    assert misses == [
        "2x: 6 backend changes (3 DOWN lines)",
        "2x: REST p99 150.0 ms",
        "2x: legitimate connections 60.0% succeeded",
        "flood: the established transfer did not complete (timeout)",
        "flood: recovery None s",
    ]


def test_switch_mode_adds_issue_14s_targets_no_spoofed_pins_and_90_percent_in_the_flood():
    flood = step("flood", FLOOD, legit_ok_pct=92.0)
    assert floodreport.target_problems([step(), flood], "switch") == []
    # Controller mode is not held to them: the flood's rules and legit share are reported.
    missed = [step(spoofed_pins=12), step("flood", FLOOD, legit_ok_pct=70.7, spoofed_pins=3)]
    assert floodreport.target_problems(missed) == []
    assert floodreport.target_problems(missed, "switch") == [
        "2x: 12 pins from spoofed sources",
        "flood: 3 pins from spoofed sources",
        "flood: legitimate connections 70.7% succeeded (switch mode)",
    ]


def test_modes_parse_in_order_each_once():
    assert bench_flood.parse_modes("switch, controller") == ["switch", "controller"]
    assert bench_flood.parse_args([]).modes == ["controller", "switch"]
    for bad in ("", "switch,switch", "turbo"):
        with pytest.raises(ValueError):
            bench_flood.parse_modes(bad)


def test_the_table_has_a_line_per_step_aligned_with_its_heading_and_targets():
    lines = floodreport.table([step("1x", 1), step(meters=1, meter_dropped=5996, flaps=2)])
    assert len(lines) == 4
    assert len({len(line) for line in lines}) == 1  # every column as wide as its heading
    assert lines[0].split()[:2] == ["step", "offered/s"]
    assert "no meter" in lines[1] and "5,996" in lines[2]
    assert lines[3].startswith("target") and ">=95@2x" in lines[3] and "<100" in lines[3]


def test_side_by_side_takes_any_number_of_runs_in_order():
    runs = [[step(legit_ok_pct=10.0)], [step(legit_ok_pct=50.0)], [step(spoofed_pins=7)]]
    lines = floodreport.side_by_side(*runs)
    assert "10 / 50 / 97" in lines[1] and "0 / 0 / 7" in lines[1]


def test_side_by_side_pairs_steps_by_label():
    before = [step(legit_ok_pct=58.0, flaps=6), step("flood", FLOOD, recovery_s=None)]
    after = [step(), step("flood", FLOOD), step("4x", 4)]
    lines = floodreport.side_by_side(before, after)
    assert len(lines) == 5
    assert "58 / 97" in lines[1] and "6 / 0" in lines[1]
    assert "never / 0.4" in lines[2]
    assert "- / " in lines[3]  # no 4x step before
    assert lines[4].lstrip().startswith("target")
    assert len({len(line) for line in lines}) == 1


# ---- parsers of what OVS and ss print ---------------------------------------------------------

METER_STATS = """\
OFPST_METER reply (OF1.3) (xid=0x2):
meter:1 flow_count:1 packet_in_count:230690 byte_in_count:12459802 duration:13.665s bands:
0: packet_count:217950 byte_count:11769942
meter:2 flow_count:0 packet_in_count:5 byte_in_count:300 duration:1.0s bands:
0: packet_count:1 byte_count:60
1: packet_count:2 byte_count:120
"""

DPCTL_SHOW = """\
netdev@ovs-netdev:
  lookups: hit:255868 missed:21912 lost:17
  flows: 4728
  port 0: ovs-netdev (tap)
"""

SS_PACKET = """\
Netid Recv-Q Send-Q Local Address:Port  Peer Address:Port Process
p_raw 8320   0                  *:o1234gu             *     ino:17828195 sk:1209
\t ver:0 cpy_thresh:0 flags( running ) skmem:(r8320,rb8192,t0,tb212992,f0,w0,o0,bl0,d1991)
p_raw 0      0                  *:o1234gu2            *     ino:17828196 sk:120a
\t ver:0 cpy_thresh:0 flags( 0 ) skmem:(r0,rb212992,t0,tb212992,f0,w0,o0,bl0,d50)
p_raw 0      0                [0]:o1234gu             *     ino:17828197 sk:120b
\t ver:0 cpy_thresh:0 flags( 0 ) skmem:(r0,rb212992,t0,tb212992,f0,w0,o0,bl0,d9)
"""


def test_meter_stats_give_packets_in_and_dropped_over_all_bands():
    assert floodwatch.parse_meter_stats(METER_STATS) == {
        1: {"packets_in": 230690, "dropped": 217950},
        2: {"packets_in": 5, "dropped": 3},
    }
    assert floodwatch.parse_meter_stats("OFPST_METER reply (OF1.3) (xid=0x2):\n") == {}


def test_dpctl_show_gives_the_lost_upcalls():
    assert floodwatch.parse_dpctl_lost(DPCTL_SHOW) == 17
    assert floodwatch.parse_dpctl_lost("") == 0


def test_socket_drops_are_summed_for_the_named_interface_only():
    assert floodwatch.parse_socket_drops(SS_PACKET, "o1234gu") == 1991 + 9
    assert floodwatch.parse_socket_drops(SS_PACKET, "o1234gu2") == 50
    assert floodwatch.parse_socket_drops(SS_PACKET, "o9999gu") == 0


PINS_DUMP = """\
 cookie=0x4c53010000000001, duration=1.2s, table=0, n_packets=3, n_bytes=180, idle_timeout=3600, priority=200,tcp,in_port=1,nw_src=10.1.0.11,nw_dst=10.0.0.100,tp_src=40000,tp_dst=80 actions=set_field:02:00:00:00:01:01->eth_dst,output:2
 cookie=0x4c53010000000002, duration=1.1s, table=0, n_packets=1, n_bytes=60, idle_timeout=3600, priority=200,tcp,in_port=1,nw_src=77.3.9.1,nw_dst=10.0.0.100,tp_src=1234,tp_dst=80 actions=output:2
 cookie=0x4c53010000000003, duration=1.0s, table=0, n_packets=1, n_bytes=60, idle_timeout=3600, priority=200,tcp,in_port=1,nw_src=10.1.0.11,nw_dst=10.0.0.100,tp_src=40002,tp_dst=80 actions=output:2
"""  # noqa: E501 - as ovs-ofctl prints it


def test_pins_are_counted_by_their_client_address():
    assert floodwatch.parse_pin_sources(PINS_DUMP) == {"10.1.0.11": 2, "77.3.9.1": 1}
    assert floodwatch.parse_pin_sources("NXST_FLOW reply (xid=0x4):\n") == {}


def test_port_rx_and_health_states_and_log_events():
    ports = "OFPST_PORT reply (OF1.3) (xid=0x2): 1 ports\n  port  1: rx pkts=2439789, bytes=?"
    assert floodwatch.parse_port_rx(ports) == 2439789
    body = {
        "vips": {"web": [{"backend": "vm1", "healthy": True}, {"backend": "vm2", "healthy": False}]}
    }
    assert floodwatch.health_states(body) == {"web/vm1": True, "web/vm2": False}
    lines = [
        "INFO backend vm1 of VIP web is DOWN (no answer)",
        "INFO backend vm1 of VIP web is UP",
        "WARNING switch 0x1 disconnected",
    ]
    assert floodwatch.count_events(lines, floodwatch.CONTROLLER_EVENTS) == {
        "down": 1, "up": 1, "disconnect": 1,
    }  # fmt: skip


def test_a_log_cursor_reads_only_what_was_added(tmp_path):
    log = tmp_path / "gw.log"
    cursor = floodwatch.LogCursor(log)
    assert cursor.new_lines() == []
    log.write_text("one\ntwo\n")
    assert cursor.new_lines() == ["one", "two"]
    with log.open("a") as more:
        more.write("three\n")
    assert cursor.new_lines() == ["three"]


# ---- helpers run for real ---------------------------------------------------------------------


class Named(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"vm7\n")

    def log_message(self, *args):
        pass


def test_the_legitimate_client_reports_each_connection(capsys):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Named)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        floodclient.main(["--vip", "127.0.0.1", "--port", str(port), "--every", "0.05",
                          "--seconds", "0.22"])  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert 4 <= len(rows) <= 6
    assert all(r["ok"] and r["vm"] == "vm7" and r["connect_ms"] is not None for r in rows)
    floodclient.one("127.0.0.1", port, 1.0)  # the server is gone: refused
    refused = json.loads(capsys.readouterr().out)
    assert (refused["ok"], refused["error"], refused["connect_ms"]) == (
        False, "ConnectionRefusedError", None,
    )  # fmt: skip


def test_the_lab_lock_is_exclusive_and_known_when_a_flock_command_holds_it(tmp_path):
    lock = tmp_path / "lab.lock"
    with floodbuilds.ovs_lock(lock), lock.open("a") as other, pytest.raises(BlockingIOError):
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    with lock.open("a") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released
    ask = f"from bench.floodbuilds import held_by_ancestor as h; print(h({str(lock)!r}))"
    command = [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r}); {ask}"]
    under = subprocess.run(
        ["flock", str(lock), *command], capture_output=True, text=True, check=True
    )
    alone = subprocess.run(command, capture_output=True, text=True, check=True)
    assert (under.stdout.strip(), alone.stdout.strip()) == ("True", "False")


def test_a_before_build_is_a_worktree_that_is_gone_afterwards():
    with floodbuilds.worktree("HEAD") as tree:
        assert (tree / "ryu_app" / "__main__.py").exists()
        assert str(tree) in floodbuilds.git("worktree", "list")
        assert floodbuilds.describe(tree) == floodbuilds.git("rev-parse", "--short", "HEAD")
    assert not tree.exists()
    assert str(tree) not in floodbuilds.git("worktree", "list")
    with pytest.raises(RuntimeError), floodbuilds.worktree("no-such-revision-here"):
        pass


def test_the_labs_deployment_follows_the_mode_and_the_flood_guard_setting(tmp_path):
    lab = Lab(tmp_path)
    plain = floodlab.config(lab, 6653, 8080, floodlab.Settings())
    vip, gateway = plain["vips"][0], plain["gateways"][0]
    # Controller mode leaves the new keys out (a build from before them runs too).
    assert not {"mode", "placement", "table_size"} & vip.keys()
    assert "flood_guard" not in gateway and vip["health"] == floodlab.HEALTH
    settings = floodlab.Settings(mode="switch", flood_guard={"rate": 0})
    switch = floodlab.config(lab, 6653, 8080, settings)
    vip = switch["vips"][0]
    assert (vip["mode"], vip["placement"], vip["table_size"]) == ("switch", "port-bits", 256)
    assert switch["gateways"][0]["flood_guard"] == {"rate": 0}
