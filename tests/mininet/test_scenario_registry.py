"""The demo's scenario registry (``mininet/scenarios.py``) and the result every scenario builds
(``mininet/scenario_result.py``), without Mininet: a scenario written in a family module but
not registered, or registered with the wrong signature, fails here rather than silently never
running in the demo."""

from __future__ import annotations

import importlib
import inspect
import time
from pathlib import Path

import scenarios
from scenario_result import Counts, Result, finish_downloads

MININET_SCRIPTS = Path(__file__).resolve().parents[2] / "mininet"
FAMILIES = sorted(path.stem for path in MININET_SCRIPTS.glob("scenarios_*.py"))


def scenarios_defined_in(module_name: str) -> set:
    """The public functions a family module defines (not those it imports)."""
    module = importlib.import_module(module_name)
    return {
        function
        for name, function in inspect.getmembers(module, inspect.isfunction)
        if not name.startswith("_") and function.__module__ == module_name
    }


def test_the_families_are_found():
    assert FAMILIES == [
        "scenarios_double",
        "scenarios_gateways",
        "scenarios_overload",
        "scenarios_spread",
        "scenarios_vms",
    ]


def test_every_scenario_of_every_family_is_registered_once():
    defined = set().union(*(scenarios_defined_in(family) for family in FAMILIES))
    registered = list(scenarios.SCENARIOS.values())
    assert set(registered) == defined
    assert len(registered) == len(defined)


def test_every_scenario_takes_the_world_and_the_counts():
    for name, scenario in scenarios.SCENARIOS.items():
        assert list(inspect.signature(scenario).parameters) == ["world", "counts"], name


def test_a_scenario_that_needs_a_spare_gateway_is_registered():
    assert scenarios.NEED_A_SPARE_GATEWAY.issubset(scenarios.SCENARIOS)


def test_the_quick_counts_are_smaller():
    quick, full = Counts.quick(), Counts()
    assert quick.connections < full.connections and quick.downloads < full.downloads
    assert quick.flood_seconds < full.flood_seconds


class FinishedDownloads:
    """Stands in for ``world.Downloads``: final records by name, as ``traffic.py`` reports."""

    def __init__(self, finals: dict[str, dict]):
        self.finals = finals

    def wait(self) -> dict[str, dict]:
        return self.finals


def test_finish_downloads_passes_when_every_download_completed():
    result = Result("drain", "a drain")
    batches = [
        FinishedDownloads({"c1:40000+/0": {"ok": True}}),
        FinishedDownloads({"c1:40001+/0": {"ok": True}}),
    ]
    finals = finish_downloads(result, batches, expected=2)
    assert set(finals) == {"c1:40000+/0", "c1:40001+/0"}
    summary = result.as_dict()
    assert summary["passed"] is True
    assert summary["figures"] == {"downloads": 2, "completed": 2, "resets": 0}


def test_finish_downloads_fails_on_a_reset_or_a_missing_download():
    result = Result("gateway-kill", "a kill")
    reset = {"ok": False, "reset": True, "error": "ECONNRESET"}
    finish_downloads(result, [FinishedDownloads({"a": {"ok": True}, "b": reset})], expected=3)
    summary = result.as_dict()
    assert summary["passed"] is False
    assert summary["figures"] == {"downloads": 3, "completed": 1, "resets": 1}
    broken = {check["what"]: check["detail"] for check in summary["checks"] if not check["ok"]}
    assert broken == {
        "every download completed with the right checksum": "1/3; b: ECONNRESET",
        "no connection was reset": "b",
    }


def test_a_result_keeps_its_timeline_only_when_it_has_one():
    plain = Result("spread", "connections")
    plain.check("every connection succeeded", True)
    assert "timeline" not in plain.as_dict()
    timed = Result("drain", "a drain", started=time.monotonic() - 1.0)
    timed.event("action", "weight 0", gateway="gw1")
    (event,) = timed.as_dict()["timeline"]["events"]
    assert event["kind"] == "action" and event["gateway"] == "gw1" and event["t"] >= 1.0


def test_a_check_without_a_verdict_is_reported_and_not_judged():
    result = Result("double-change", "measured")
    result.check("downloads with second chance off", None, "3 broken")
    result.check("[] is falsy, but a verdict", [])
    summary = result.as_dict()
    assert [check["ok"] for check in summary["checks"]] == [None, False]
    assert summary["passed"] is False
    result.checks.pop()
    assert result.as_dict()["passed"] is True
