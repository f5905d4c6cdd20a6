"""The demo's report on synthetic results: the table, report.json, and the PNG plots (what
each plot shows, asked of its data and of its figure)."""

from __future__ import annotations

import copy
import json
import struct

import pytest
import report
import report_plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def spread() -> dict:
    return {
        "name": "spread",
        "title": "1,000 short connections spread over the VMs",
        "passed": True,
        "duration_s": 20.14,
        "checks": [
            {"what": "all connections succeeded", "ok": True, "detail": "1000/1000"},
            {"what": "each VM within 15% of its weight's share", "ok": True, "detail": "max 6.1%"},
        ],
        "figures": {"connections": 1000, "failed": 0, "max_share_error": 0.0612},
        "per_gateway_vm": {
            "gw1": {"vm1": 130, "vm2": 120, "vm3": 128, "vm4": 131},
            "gw2": {"vm1": 122, "vm2": 125, "vm3": 119, "vm4": 125},
        },
    }


def gateway_failure() -> dict:
    downloads = [
        {
            "name": f"download {n}",
            "ok": n != 7,
            "points": [
                [t / 2, min(t, 12 if n == 7 else 40) * 2**20 * (1 + n / 20)] for t in range(41)
            ],
            "gateway_moves": [5.0] if n % 2 else [],
        }
        for n in range(1, 21)
    ]
    return {
        "name": "gateway-failure",
        "title": "A gateway's next-hop removed mid-transfer",
        "passed": False,
        "duration_s": 31.0,
        "checks": [
            {"what": "all downloads completed", "ok": False, "detail": "19/20 (download 7: reset)"},
            {"what": "checksums match", "ok": True, "detail": "19/19"},
        ],
        "figures": {"downloads": 20, "completed": 19, "resets": 1, "detection_s": 1.234},
        "timeline": {
            "events": [
                {"t": 5.0, "kind": "failure", "label": "gw2 next-hop removed", "gateway": None},
                {"t": 5.4, "kind": "detection", "label": "peer gw2 gone", "gateway": "gw1"},
                {"t": 5.5, "kind": "detection", "label": "vm2 down", "gateway": "gw2"},
                {"t": 9.0, "kind": "action", "label": "weights reset", "gateway": None},
                {"t": 19.5, "kind": "recovery", "label": "gw2 next-hop restored", "gateway": None},
            ],
            "transfers": downloads,
        },
    }


def disagreement() -> dict:
    """No plot data; an informational check (ok null) that is not a failure."""
    return {
        "name": "disagreement",
        "title": "One VM cut off from one gateway only",
        "passed": True,
        "duration_s": 8.0,
        "checks": [{"what": "connections moved between gateways", "ok": None, "detail": "3 of 40"}],
        "figures": {"moved": 3, "broken": 2},
    }


@pytest.fixture
def results() -> dict:
    return {
        "started": "2026-11-26T14:20:00Z",
        "duration_s": 59.14,
        "topology": {
            "clients": 2,
            "gateways": ["gw1", "gw2"],
            "vms": ["vm1", "vm2", "vm3", "vm4"],
            "vip": "10.0.0.100:80",
            "weights": {"vm1": 1, "vm2": 1, "vm3": 1, "vm4": 1},
        },
        "passed": False,
        "scenarios": [spread(), gateway_failure(), disagreement()],
    }


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_table_has_a_row_per_scenario_and_the_failed_checks(results):
    table = report.summary_table(results)
    rows = {line.split()[1]: line for line in table.splitlines() if line[:1].isdigit()}
    assert set(rows) == {"spread", "gateway-failure", "disagreement"}
    assert "PASS" in rows["spread"] and "20.1 s" in rows["spread"]
    assert "FAIL" in rows["gateway-failure"]
    assert "connections=1000" in rows["spread"] and "max_share_error=0.0612" in rows["spread"]
    failed = table.split("Failed checks:")[1]
    assert "gateway-failure: all downloads completed: 19/20 (download 7: reset)" in failed
    assert "checksums match" not in failed
    assert "moved between gateways" not in failed  # ok None: a measurement, not a failure
    assert "FAIL: 2 of 3 scenarios passed in 59.1 s" in table
    assert "VIP 10.0.0.100:80" in table


def test_headline_names_the_mode_and_each_gateways(results):
    assert "mode" not in report.summary_table(results).split("\n\n")[0]  # a report before it
    results |= {"mode": "mixed", "gateway_modes": {"gw1": "controller", "gw2": "switch"}}
    headline = report.summary_table(results).split("\n\n")[0]
    assert "mixed mode (gw1 controller, gw2 switch)" in " ".join(headline.split())


def test_table_is_ascii_and_fits_the_readme(results):
    results["scenarios"][0]["figures"] |= {f"figure_{n}": n * 1.5 for n in range(30)}
    results["scenarios"][1]["checks"][0]["detail"] = "19/20 \u2014 download 7 \u2192 reset"
    table = report.summary_table(results)
    assert table.isascii()
    assert "19/20 - download 7 -> reset" in table
    assert max(len(line) for line in table.splitlines()) <= report.TABLE_WIDTH
    assert "figure_29=43.5" in table  # wrapped onto continuation lines, not cut


def test_table_names_a_failed_scenario_without_a_failed_check(results):
    results["scenarios"][2]["passed"] = False
    assert "disagreement: scenario failed" in report.summary_table(results)


def test_table_does_not_need_matplotlib(results, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)  # import now fails
    assert "spread" in report.summary_table(results)


@pytest.mark.parametrize(
    ("value", "shown"),
    [(1000, "1000"), (1000.0, "1000"), (1.234, "1.23"), (12.34, "12.3"), (0.0612, "0.0612")]
    + [(123.6, "124"), (1029.5, "1030"), (100.2, "100"), (1.5, "1.5"), (float("nan"), "nan")]
    + [(True, "yes"), ("no route", "no_route"), ([1.5, 2], "1.5/2")],
)
def test_figures_are_short(value, shown):
    assert report._short(value) == shown


def test_write_all_writes_the_json_the_table_and_the_plots(results, tmp_path):
    original = copy.deepcopy(results)
    paths = report.write_all(results, tmp_path / "out")
    names = [path.name for path in paths]
    assert names == [
        "report.json",
        "summary.txt",
        "spread-connections.png",
        "gateway-failure-timeline.png",
    ]
    assert json.loads((tmp_path / "out" / "report.json").read_text()) == original
    assert (tmp_path / "out" / "summary.txt").read_text() == report.summary_table(original)
    for path in paths[2:]:
        width, height = png_size(path)
        assert 400 <= width <= 3000 and 300 <= height <= 2000, (path, width, height)
        assert path.stat().st_size > 10_000
    assert results == original  # nothing written into the caller's dict


def test_a_scenario_without_plot_data_gets_no_png(results, tmp_path):
    results["scenarios"] = [disagreement(), disagreement() | {"timeline": {}}]
    paths = report.write_all(results, tmp_path)
    assert [path.name for path in paths] == ["report.json", "summary.txt"]
    assert list(tmp_path.glob("*.png")) == []


def test_file_names_are_safe_and_unique(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "plot_spread", lambda scenario, path, weights: path.touch())
    scenario = spread() | {"name": "drain / vm2"}
    results = {"scenarios": [scenario, scenario, spread() | {"name": ""}]}
    names = [path.name for path in report.write_all(results, tmp_path)][2:]
    assert names == [
        "drain-vm2-connections.png",
        "drain-vm2-2-connections.png",
        "scenario-3-connections.png",
    ]


def test_timeline_without_events_or_transfers_still_draws(tmp_path):
    """Events alone: the strip labels each of them and the plot says there were no transfers.
    Transfers alone: no strip, one line per transfer (the failed one dashed, marked)."""
    only_events = gateway_failure()
    only_events["timeline"]["transfers"] = []
    figure = report_plots.draw_timeline(only_events)
    strip, axes = figure.axes
    labels = [text.get_text() for text in strip.texts]
    assert labels == [
        "5.0 s gw2 next-hop removed",
        "5.4 s gw1: peer gw2 gone",
        "5.5 s gw2: vm2 down",
        "9.0 s weights reset",
        "19.5 s gw2 next-hop restored",
    ]
    assert [text.get_text() for text in axes.texts] == ["no transfers recorded"]
    assert len(axes.lines) == 5  # one line per event, none of a transfer

    only_transfers = gateway_failure()
    transfers = only_transfers["timeline"]["transfers"][5:8]  # downloads 6, 7 (failed) and 8
    only_transfers["timeline"] |= {"events": [], "transfers": transfers}
    (axes,) = report_plots.draw_timeline(only_transfers).axes
    dashed = [line for line in axes.lines if line.get_linestyle() == "--"]
    assert len(dashed) == 1 and max(dashed[0].get_ydata()) == pytest.approx(12 * 1.35)  # MiB
    assert [text.get_text() for text in axes.texts] == ["download 7 failed"]
    legend = [text.get_text() for text in axes.get_legend().get_texts()]
    assert legend == ["transfer (2 ok)", "failed transfer (1)", "flow moved to another gateway"]
    report.plot_timeline(only_transfers, tmp_path / "transfers.png")
    png_size(tmp_path / "transfers.png")


def drain_spread() -> dict:
    """vm2 drained (weight 0) before the connections: it served none."""
    counts = {
        "gw1": {"vm1": 150, "vm2": 0, "vm3": 160, "vm4": 140},
        "gw2": {"vm1": 170, "vm2": 0, "vm3": 145, "vm4": 135},
    }
    weights = {"vm1": 1, "vm2": 0, "vm3": 1, "vm4": 1}
    return spread() | {"name": "drain", "per_gateway_vm": counts, "weights": weights}


def group_of(x: float) -> int:
    """The VM (index) whose group of bars is around ``x``."""
    return round(x)


def test_a_drained_vm_is_expected_to_get_nothing_and_is_drawn_so():
    """The scenario's own weights win over the topology's: vm2, weight 0, is expected to get
    none of either gateway's connections, its label says 0%, the others share each gateway's
    connections equally; the plot draws its bars and its expected markers at 0."""
    plot = report_plots.spread_plot(drain_spread(), {"vm1": 1, "vm2": 1, "vm3": 1, "vm4": 1})
    assert plot.vms == ["vm1", "vm2", "vm3", "vm4"] and plot.gateways == ["gw1", "gw2"]
    assert plot.served == {"gw1": [150, 0, 160, 140], "gw2": [170, 0, 145, 135]}
    assert plot.expected == {"gw1": [150, 0, 150, 150], "gw2": [150, 0, 150, 150]}
    assert plot.tick_labels[1] == "vm2 (weight 0)\n0.0% of all\nexpected 0.0%"
    assert plot.tick_labels[0] == "vm1 (weight 1)\n35.6% of all\nexpected 33.3%"
    assert plot.total == 900

    axes = report_plots.draw_spread(plot, "drain").axes[0]
    bars = {(group_of(bar.get_x() + bar.get_width() / 2), bar.get_height()) for bar in axes.patches}
    assert {height for vm, height in bars if vm == 1} == {0}
    assert {height for vm, height in bars if vm != 1} == {150, 160, 140, 170, 145, 135}
    markers = [segment for lines in axes.collections for segment in lines.get_segments()]
    assert len(markers) == 8  # one per bar
    assert {y for (x0, y), (x1, _) in markers if group_of((x0 + x1) / 2) == 1} == {0}
    assert {y for (x0, y), (x1, _) in markers if group_of((x0 + x1) / 2) != 1} == {150}


def test_without_weights_nothing_is_expected_and_no_marker_is_drawn():
    plot = report_plots.spread_plot(spread())
    assert plot.expected is None
    assert plot.tick_labels[1] == "vm2\n24.5% of all"
    assert len(report_plots.draw_spread(plot, "unweighted").axes[0].collections) == 0


def test_the_topologys_weights_are_used_when_the_scenario_has_none():
    plot = report_plots.spread_plot(spread(), {"vm1": 2, "vm2": 1, "vm3": 1, "vm4": 0})
    total_gw1 = sum(spread()["per_gateway_vm"]["gw1"].values())
    assert plot.expected["gw1"] == pytest.approx([total_gw1 / 2, total_gw1 / 4, total_gw1 / 4, 0])


def test_interpolate():
    assert report_plots._interpolate([0, 2, 4], [0, 10, 10], 1) == 5
    assert report_plots._interpolate([0, 2, 4], [0, 10, 10], -1) == 0
    assert report_plots._interpolate([0, 2, 4], [0, 10, 12], 9) == 12


def test_main_redraws_a_saved_report(results, tmp_path, capsys):
    results["scenarios"] = [disagreement()]  # the plots have tests of their own
    report.write_all(results, tmp_path / "run")
    assert report.main([str(tmp_path / "run" / "report.json"), str(tmp_path / "again")]) == 0
    assert capsys.readouterr().out == report.summary_table(results)
    assert (tmp_path / "again" / "summary.txt").read_text() == report.summary_table(results)


def test_a_scenarios_own_table_is_printed_aligned_and_not_rewrapped():
    scenario = spread()
    long_cell = "vm1 x3, vm2 x1, vm3 x7, " * 3
    scenario["tables"] = [
        {
            "title": "side by side",
            "columns": ["case", "second chance", "broken on"],
            "rows": [["drain+move", "off", long_cell], ["drain+move", "on", "-"]],
        }
    ]
    lines = report.summary_table({"scenarios": [scenario]}).splitlines()
    start = lines.index("side by side")
    header, rule, off, on = lines[start + 1 : start + 5]
    assert header == "case        second chance  broken on"
    assert rule.startswith("----------  -------------  ---")
    assert off == "drain+move  off            " + long_cell.rstrip()  # one line, however long
    assert on == "drain+move  on             -"
    assert lines[start - 1] == ""
