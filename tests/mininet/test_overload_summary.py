"""The flood scenario's verdict (``mininet/overload_summary.py``) on made-up samples: what counts
as a flap, as recovery, as the flood's rate; and what is judged and what only reported."""

from __future__ import annotations

import overload_summary as summary
import pytest

PROC_NET_DEV = """\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0
flooder-eth0:     936      14    0    0    0     0          0         0 96000000 1500000    0   25    0     0       0          0
r1-flooder: 96000000 1499990    0   10    0     0          0         0      936      14    0    0    0     0       0          0
"""  # noqa: E501 - the kernel's own layout

UP = {"healthy": True, "since": 100.0}
START, END = 2.0, 6.0  # the flood


def view(backends: dict | None = None, **counters) -> dict:
    return {"rest_ms": 3.0, "backends": backends, **counters}


def calm(vm: str = "vm1") -> dict:
    return {vm: UP, "vm2": UP}


def samples_every_half_second(until: float, gateways) -> list[dict]:
    """``gateways(t)`` -> the sample's gateways; offered grows 100k/s during the flood."""
    rows = []
    for step in range(int(until * 2) + 1):
        t = step / 2
        offered = 100_000 * min(max(t - START, 0), END - START)
        rows.append({"t": t, "offered": offered, "forwarded": offered, "gateways": gateways(t)})
    return rows


def steady_gateways(t: float) -> dict:
    dropped = int(97_000 * min(max(t - START, 0), END - START))
    return {
        "gw1": view(calm(), dropped_in_switch=dropped, guard_rate=3000),
        "gw2": view(calm(), dropped_in_switch=0, guard_rate=3000),
    }


def connections(ok_during: bool = True) -> list[dict]:
    """One every 0.5 s from 0 to 9.5 s; during the flood they succeed only if ``ok_during``."""
    rows = []
    for step in range(20):
        t = step / 2
        ok = ok_during or not START <= t < END
        rows.append({"t": t, "ok": ok, "connect_ms": 1.5 if ok else None, "ms": 3.0})
    return rows


def test_interface_packets_counts_what_it_sent_and_its_queue_dropped():
    assert summary.interface_packets(PROC_NET_DEV, "flooder-eth0") == 1_500_025
    assert summary.interface_packets(PROC_NET_DEV, "r1-flooder") == 14
    assert summary.interface_packets(PROC_NET_DEV, "flooder") is None


def test_port_rx_packets_reads_ovs_ofctl_dump_ports():
    text = (
        "OFPST_PORT reply (OF1.3) (xid=0x2): 1 ports\n"
        '  port  "gw1-eth0": rx pkts=90123, bytes=5408000, drop=0, errs=0, frame=0, over=0,'
        " crc=0\n           tx pkts=77, bytes=9000, drop=0, errs=0, coll=0\n"
    )
    assert summary.port_rx_packets(text) == 90123
    assert summary.port_rx_packets("ovs-ofctl: gw1: failed to connect") is None


def test_socket_drops_add_up_the_packet_sockets_of_one_interface():
    text = (
        "Netid Recv-Q Send-Q Local Address:Port Peer Address:PortProcess\n"
        "p_raw 0      0                   *:gw1-eth0             *        \n"
        "\t skmem:(r0,rb212992,t0,tb212992,f0,w0,o0,bl0,d7000) ino:1 sk:1\n"
        "p_raw 0      0                   *:gw1-eth0             *        \n"
        "\t skmem:(r0,rb212992,t0,tb212992,f0,w0,o0,bl0,d25) ino:2 sk:2\n"
        "p_raw 0      0                   *:gw1-eth01            *        \n"
        "\t skmem:(r0,rb212992,t0,tb212992,f0,w0,o0,bl0,d999) ino:3 sk:3\n"
    )
    assert summary.socket_drops(text, "gw1-eth0") == 7025
    assert summary.socket_drops(text, "gw2-eth0") is None


def test_what_the_switch_read_is_what_its_port_received_less_its_socket_dropped():
    rows = [
        {"t": 0.0, "uplink_rx": 100, "socket_dropped": 0},
        {"t": 0.5, "uplink_rx": 50_100, "socket_dropped": None},
        {"t": 1.0, "uplink_rx": 100_100, "socket_dropped": 90_000},
    ]
    assert summary.read_by_switch(rows) == [(0.0, 100), (1.0, 10_100)]


def test_the_longest_stall_is_the_longest_stretch_without_progress():
    steady = {"points": [[0.25, 1000], [0.5, 2000], [0.75, 3000]]}
    stalled = {"points": [[0.25, 1000], [0.5, 1000], [2.0, 1000], [3.5, 1500], [3.75, 1600]]}
    assert summary.longest_stall([steady]) == 0.25
    assert summary.longest_stall([steady, stalled]) == 3.25  # from 0.25 to 3.5
    assert summary.longest_stall([]) is None


def test_rates_between_points_and_over_a_span():
    points = [(0.0, 0), (0.5, 0), (1.0, 1000), (1.5, 1000), (2.0, 2000)]
    assert summary.rate_series(points) == [(0.5, 0), (1.0, 2000), (1.5, 0), (2.0, 2000)]
    # A counter refreshed every second, read every half second, over one second: steady.
    assert summary.rate_series(points, span=1.0) == [(1.0, 1000), (1.5, 1000), (2.0, 1000)]
    assert summary.rate_series([(0.0, 5), (1.0, 2)]) == []  # restarted: no rate


def test_series_skips_samples_without_the_counter():
    rows = [
        {"t": 0.0, "offered": 1, "gateways": {"gw1": view(dropped_in_switch=None)}},
        {"t": 0.5, "offered": None, "gateways": {"gw1": view(dropped_in_switch=7)}},
    ]
    assert summary.series(rows, "offered") == [(0.0, 1)]
    assert summary.series(rows, "dropped_in_switch", "gw1") == [(0.5, 7)]


def test_growth_spans_the_flood_from_the_points_around_it():
    points = [(1.5, 10), (2.5, 50), (5.5, 300), (6.5, 400), (7.0, 400)]
    assert summary.growth(points, START, END) == 390
    assert summary.growth(points[1:], START, END) is None


def test_a_backend_seen_down_is_one_change_until_it_is_up_again():
    down, again = {"healthy": False, "since": 103.0}, {"healthy": True, "since": 104.5}
    views = [calm(), {"vm1": down, "vm2": UP}, {"vm1": down, "vm2": UP}]
    views += [{"vm1": again, "vm2": UP}, {"vm1": again, "vm2": UP}]
    rows = [{"t": i / 2, "gateways": {"gw1": view(b)}} for i, b in enumerate(views)]
    assert summary.backend_changes(rows, "gw1") == [summary.Change(0.5, "gw1", "vm1", "down")]


def test_a_flap_between_two_polls_is_seen_by_its_since():
    views = [calm(), calm(), {"vm1": {"healthy": True, "since": 102.0}, "vm2": UP}]
    rows = [{"t": i / 2, "gateways": {"gw1": view(b)}} for i, b in enumerate(views)]
    assert summary.backend_changes(rows, "gw1") == [summary.Change(1.0, "gw1", "vm1", "changed")]


def test_a_poll_without_an_answer_is_no_change_but_is_counted():
    rows = [{"t": i / 2, "gateways": {"gw1": view(b)}} for i, b in enumerate([calm(), None])]
    rows.append({"t": 1.0, "gateways": {"gw1": view(calm())}})
    assert summary.backend_changes(rows, "gw1") == []
    assert summary.unanswered(rows, "gw1") == 1
    assert not summary.all_healthy(rows[1]) and summary.all_healthy(rows[2])


def test_share_percentile_and_buckets():
    rows = connections(ok_during=False)
    during = summary.share(rows, START, END)
    assert during == (0, 8) and during.percent == 0.0
    assert summary.share(rows, 0, START).percent == 100.0
    assert summary.share([], 0, 1).percent is None
    assert summary.percentile([5, 1, 3, 2, 4], 0.95) == 5
    assert summary.percentile([5, 1, 3, 2, 4], 0.5) == 3
    assert summary.percentile([], 0.5) is None
    buckets = dict(summary.success_buckets(rows))
    assert buckets[1.0] == 100 and buckets[3.0] == 0 and len(buckets) == 10


def test_recovery_is_the_later_of_a_new_connection_and_every_backend_up():
    rows = samples_every_half_second(10, steady_gateways)
    rows[12]["gateways"]["gw2"] = view(None)  # t 6.0: gw2 silent, then vm1 down until 7.5
    for row in rows[13:15]:
        row["gateways"]["gw2"] = view({"vm1": {"healthy": False, "since": 106}, "vm2": UP})
    clients = [{"t": 6.0, "ok": False, "ms": 2000}, {"t": 6.1, "ok": True, "ms": 1200.0}]
    assert summary.recovery_seconds(rows, clients, END) == 1.5  # all up at 7.5
    assert summary.recovery_seconds(rows, clients[:1], END) is None  # no new connection yet


def test_a_calm_flood_passes_and_reports_the_legitimate_client_without_judging_it():
    rows = samples_every_half_second(10, steady_gateways)
    verdict = summary.assess(rows, connections(ok_during=False), START, END, "gw1")
    checks = {check["what"]: check for check in verdict.checks}
    assert [c["ok"] for c in verdict.checks] == [True, True, True, True, None]
    assert checks["the flood offered more than gw1's flood guard passes (3,000/s)"]["ok"]
    legit = checks["new connections through gw1 during the flood (reported, not judged)"]
    assert legit["detail"].startswith("0/8 (0.0%)")
    assert verdict.figures["offered_per_s"] == 100_000
    assert verdict.figures["dropped_in_switch"] == 97_000 * 4
    assert verdict.figures["flaps"] == 0 and verdict.figures["recovery_s"] == 0.0
    assert verdict.figures["legit_during_pct"] == 0.0
    (note,) = verdict.notes
    assert "Reported, not judged" in note and ">= 95% at 2x" in note
    # what the switch read is unknown here
    assert "the router sent gw1 100,000 SYN/s (the rest died in its uplink's" in note
    assert note.endswith("packet socket) and its meter passed at most 3,000/s.")
    assert [e["kind"] for e in verdict.events] == ["recovery"]
    assert "download_stall_max_s" not in verdict.figures  # no transfers given


def test_in_switch_mode_the_note_says_the_switch_placed_the_syns_without_the_meter():
    rows = samples_every_half_second(10, steady_gateways)
    verdict = summary.assess(rows, connections(), START, END, "gw1", by_switch=True)
    (note,) = verdict.notes
    assert "In switch mode gw1 places new flows in its switch" in note
    assert note.endswith("packet socket) and placed them by its slot rules, without the meter.")
    assert "meter budget" not in note
    assert [c["ok"] for c in verdict.checks] == [True, True, True, True, None]  # same judgements


def test_a_long_download_stall_is_reported_and_not_judged():
    rows = samples_every_half_second(10, steady_gateways)
    for row in rows:
        row["uplink_rx"], row["socket_dropped"] = row["offered"], row["offered"] * 9 // 10
    transfers = [{"points": [[1.0, 10], [2.0, 20], [7.5, 20], [8.0, 40]]}]
    verdict = summary.assess(rows, connections(), START, END, "gw1", transfers)
    assert verdict.figures["download_stall_max_s"] == 6.0
    assert verdict.figures["read_by_switch_per_s"] == 10_000
    assert all(check["ok"] is not False for check in verdict.checks)
    assert "a download stood still for up to 6 s" in verdict.notes[1]
    assert "100,000 SYN/s, its switch read 10,000/s of them" in verdict.notes[0]
    quick = [{"points": [[1.0, 10], [1.5, 20], [2.0, 30]]}]
    assert len(summary.assess(rows, connections(), START, END, "gw1", quick).notes) == 1


def test_flaps_on_any_gateway_fail_it_and_become_detection_events():
    def flapping(t: float) -> dict:
        gateways = steady_gateways(t)
        if 3.0 <= t < 4.5:
            gateways["gw2"]["backends"] = {"vm1": {"healthy": False, "since": 103}, "vm2": UP}
        elif t >= 4.5:
            gateways["gw2"]["backends"] = {"vm1": {"healthy": True, "since": 104.5}, "vm2": UP}
        return gateways

    verdict = summary.assess(samples_every_half_second(10, flapping), connections(), 2, 6, "gw1")
    broken = [c for c in verdict.checks if c["ok"] is False]
    assert [c["what"] for c in broken] == ["gw2 kept every backend up (no flap)"]
    assert broken[0]["detail"] == "vm1 down at 3.0 s"
    assert verdict.figures["flaps"] == 1
    assert {"t": 3.0, "kind": "detection", "label": "vm1 down", "gateway": "gw2"} in verdict.events


@pytest.mark.parametrize(
    ("guard_rate", "offered", "ok"), [(3000, 100_000, True), (3000, 2000, False), (None, 5, True)]
)
def test_a_flood_must_offer_more_than_the_guard_passes(guard_rate, offered, ok):
    def gateways(t: float) -> dict:
        return {"gw1": view(calm(), dropped_in_switch=0, guard_rate=guard_rate)}

    rows = samples_every_half_second(8, gateways)
    for row in rows:
        row["offered"] = offered * min(max(row["t"] - START, 0), END - START)
    verdict = summary.assess(rows, connections(), START, END, "gw1")
    assert verdict.checks[0]["ok"] is ok


def test_no_recovery_in_what_was_recorded_fails():
    verdict = summary.assess(
        samples_every_half_second(6, steady_gateways), connections()[:12], START, END, "gw1"
    )
    (recovery,) = [c for c in verdict.checks if c["what"].startswith("recovered")]
    assert recovery["ok"] is False and recovery["detail"] == "not within what was recorded"
    assert "recovery_s" not in verdict.figures
