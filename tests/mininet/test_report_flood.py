"""The flood scenario's figure (``mininet/report_flood.py``) and its place in the report: what the
plot shows, asked of its data and of its figure; the notes after the table."""

from __future__ import annotations

import report
import report_flood

UP, DOWN = {"healthy": True, "since": 1.0}, {"healthy": False, "since": 2.0}


def flood_scenario() -> dict:
    """gw1 flooded from 1.0 to 3.0 s; it loses vm2 from 2.0 to 3.0 s and answers nothing at
    3.0 s; gw2 keeps both up (and has no overload verdicts: an older build).  Four connections,
    one failed."""
    samples = []
    for step in range(9):
        t = step / 2
        gw1 = {"vm1": UP, "vm2": DOWN if 2.0 <= t < 3.0 else UP}
        samples.append(
            {
                "t": t,
                "offered": int(50_000 * min(max(t - 1.0, 0), 2.0)),
                "forwarded": int(40_000 * min(max(t - 1.0, 0), 2.0)),
                "uplink_rx": int(40_000 * min(max(t - 1.0, 0), 2.0)),
                "socket_dropped": int(35_000 * min(max(t - 1.0, 0), 2.0)),
                "gateways": {
                    "gw1": {"backends": None if t == 3.0 else gw1, "dropped_in_switch": step * 100}
                    | ({} if t == 3.0 else {"overloaded": 1.5 <= t < 3.0, "panic": t == 2.5}),
                    "gw2": {"backends": {"vm1": UP, "vm2": UP}, "dropped_in_switch": 0},
                },
            }
        )
    connections = [
        {"t": 0.5, "ok": True, "connect_ms": 1.2, "ms": 2.0},
        {"t": 1.5, "ok": False, "connect_ms": None, "ms": 2000.0},
        {"t": 2.5, "ok": True, "connect_ms": 1001.0, "ms": 1003.0},
        {"t": 3.5, "ok": True, "connect_ms": 1.0, "ms": 2.0},
    ]
    return {
        "name": "flood",
        "title": "SYN flood through gw1",
        "passed": False,
        "duration_s": 4.5,
        "checks": [{"what": "gw1 kept every backend up (no flap)", "ok": False, "detail": "x"}],
        "figures": {"flaps": 1},
        "notes": ["flood: 1 of 2 (50.0%) new connections ... Reported, not judged: ..."],
        "timeline": {
            "events": [{"t": 1.0, "kind": "failure", "label": "flood on", "gateway": "gw1"}],
            "transfers": [
                {"name": "c1/dl1", "ok": True, "points": [[0.5, 0], [4.0, 2_000_000]]},
                {"name": "c1/dl2", "ok": False, "points": [[0.5, 0], [2.0, 500_000]]},
            ],
        },
        "flood": {
            "victim": "gw1",
            "flooder": "flooder",
            "command": "hping3 -S --flood",
            "start": 1.0,
            "end": 3.0,
            "samples": samples,
            "connections": connections,
        },
    }


def test_the_plot_shows_rates_states_connections_and_transfers():
    plot = report_flood.flood_plot(flood_scenario())
    assert plot.victim == "gw1" and plot.window == (1.0, 3.0)
    assert dict(plot.offered)[1.5] == 50_000 and dict(plot.forwarded)[2.0] == 40_000
    assert dict(plot.read)[2.5] == 5_000 and dict(plot.read)[3.5] == 0
    assert dict(plot.dropped)[1.0] == 200  # over a second: the meters' own refresh
    assert plot.succeeded == [(0.5, 1.2), (2.5, 1001.0), (3.5, 1.0)]
    assert plot.failed == [1.5]
    assert plot.success == [(0.0, 100.0), (1.0, 0.0), (2.0, 100.0), (3.0, 100.0)]
    assert [ok for ok, _ in plot.transfers] == [True, False]
    assert plot.end == 4.0


def test_states_are_held_until_the_next_sample_and_merged():
    states = report_flood.flood_plot(flood_scenario()).states
    assert list(states) == ["gw1 load", "gw1 vm1", "gw1 vm2", "gw2 vm1", "gw2 vm2"]
    # gw1 calls itself overloaded from 1.5 s, its VIP in panic at 2.5 s; gw2 says nothing
    assert states["gw1 load"] == [(1.5, 2.5, "overloaded"), (2.5, 3.0, "panic")]
    assert states["gw1 vm2"] == [
        (0.0, 2.0, "up"),
        (2.0, 3.0, "down"),
        (3.0, 3.5, "no answer"),
        (3.5, 4.5, "up"),  # the last sample held for one interval
    ]
    assert states["gw2 vm1"] == [(0.0, 4.5, "up")]


def test_the_figure_has_its_four_panels_and_the_flood_window():
    plot = report_flood.flood_plot(flood_scenario())
    figure = report_flood.draw_flood(plot, "title")
    rate, health, connections, transfers, connect_times = figure.axes
    assert rate.get_title() == "title" and rate.get_yscale() == "symlog"
    assert [t.get_text() for t in health.get_yticklabels()] == list(plot.states)
    assert connect_times.get_yscale() == "log"
    assert transfers.get_xlim()[1] >= plot.end
    for axes in (rate, health, connections, transfers):
        edges = sorted(line.get_xdata()[0] for line in axes.lines if line.get_linestyle() == ":")
        assert edges == [1.0, 3.0]
    states = [text.get_text() for text in health.get_legend().get_texts()]
    assert states == ["up", "down", "no answer", "overloaded", "panic"]
    legend = [text.get_text() for text in rate.get_legend().get_texts()]
    assert legend == [
        "offered by the flooder",
        "router -> gw1",
        "read by gw1's switch",
        "dropped by gw1's flood guard (meter, polled 1/s)",
    ]


def test_write_all_draws_the_flood_figure_and_prints_the_notes(tmp_path):
    results = {"started": "2026-12-03T14:00:00Z", "passed": False, "scenarios": [flood_scenario()]}
    paths = report.write_all(results, tmp_path)
    assert tmp_path / "flood-flood.png" in paths
    assert (tmp_path / "flood-flood.png").read_bytes()[:4] == b"\x89PNG"
    table = (tmp_path / "summary.txt").read_text()
    assert "\nNotes:\n  flood: 1 of 2 (50.0%) new connections" in table
    assert table.index("Failed checks:") < table.index("Notes:")


def test_a_run_without_notes_has_no_notes_section():
    scenario = flood_scenario()
    del scenario["notes"]
    assert "Notes:" not in report.summary_table({"scenarios": [scenario]})
