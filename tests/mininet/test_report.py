"""The demo's report on synthetic results: the table, report.json, and the PNG plots."""

from __future__ import annotations

import copy
import json
import struct

import pytest
import report

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
    + [(123.6, "124"), (1.5, "1.5"), (float("nan"), "nan")]
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
    only_events = gateway_failure()
    only_events["timeline"]["transfers"] = []
    only_transfers = gateway_failure()
    only_transfers["timeline"] |= {
        "events": [],
        "transfers": only_transfers["timeline"]["transfers"][5:8],
    }
    for number, scenario in enumerate((only_events, only_transfers)):
        path = tmp_path / f"{number}.png"
        report.plot_timeline(scenario, path)
        png_size(path)


def test_spread_uses_the_scenarios_own_weights(tmp_path):
    """A drained VM (weight 0) is expected to get nothing; no weights at all draws no markers."""
    drained = spread() | {"weights": {"vm1": 1, "vm2": 0, "vm3": 1, "vm4": 1}}
    report.plot_spread(drained, tmp_path / "drained.png", {"vm1": 1, "vm2": 1})
    report.plot_spread(spread(), tmp_path / "unweighted.png")
    png_size(tmp_path / "drained.png")
    png_size(tmp_path / "unweighted.png")


def test_interpolate():
    assert report._interpolate([0, 2, 4], [0, 10, 10], 1) == 5
    assert report._interpolate([0, 2, 4], [0, 10, 10], -1) == 0
    assert report._interpolate([0, 2, 4], [0, 10, 12], 9) == 12


def test_main_redraws_a_saved_report(results, tmp_path, capsys):
    results["scenarios"] = [disagreement()]  # the plots have tests of their own
    report.write_all(results, tmp_path / "run")
    assert report.main([str(tmp_path / "run" / "report.json"), str(tmp_path / "again")]) == 0
    assert capsys.readouterr().out == report.summary_table(results)
    assert (tmp_path / "again" / "summary.txt").read_text() == report.summary_table(results)
