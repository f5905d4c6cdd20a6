"""The before/after comparison (``bench/before_after.py``) on made-up runs: it reads the figures
the scripts print, takes the medians, and says what changed only when the rounds agree."""

from __future__ import annotations

from collections import Counter

from bench import before_after, report
from bench.before_after import FIGURES, Figure, Row
from bench.fakeswitch import PhaseResult, SwitchCounters

SCRIPT_OUTPUT = """Lockstep mapping benchmark  (Python 3.11.2, 2 cores)
  build    100 backends @ 65537:    22.7 ms (best 22.6)   reference    68.9 ms   x3.0
| | lockstep (native) | reference (os-ken) |
{"build_ms": {"10": 18.07, "100": 22.74}, "lookups_per_s": 9158631, "python": "3.11.2"}
{not json, a stray brace}
"""


def mapping(build_100: float, lookups: float) -> dict:
    return {"build_ms": {"10": 18.0, "100": build_100, "1000": 30.0}, "lookups_per_s": lookups}


def newflow(flows_per_s: float, p99_ms: float) -> dict:
    return {"lockstep_flows_per_s": flows_per_s, "lockstep_p99_ms": p99_ms}


def row_of(rows: list[Row], key: str) -> Row:
    return next(row for row in rows if row.figure.key == key)


def test_the_figures_are_the_last_json_object_a_script_prints():
    summary = before_after.last_json(SCRIPT_OUTPUT)

    assert summary == {
        "build_ms": {"10": 18.07, "100": 22.74},
        "lookups_per_s": 9158631,
        "python": "3.11.2",
    }
    assert before_after.last_json("Traceback (most recent call last):\n  ...\n") is None


def test_a_figure_is_found_by_its_dotted_path_and_only_numbers_count():
    summary = {"build_ms": {"100": 22.74}, "failures": [], "rate_kept": True, "hub": "native"}

    assert before_after.figure_value(summary, "build_ms.100") == 22.74
    assert before_after.figure_value(summary, "build_ms.1000") is None
    assert before_after.figure_value(summary, "lookups_per_s") is None
    assert before_after.figure_value(summary, "hub") is None
    assert before_after.figure_value(summary, "rate_kept") is None


def test_each_side_goes_first_in_half_the_rounds():
    firsts = [before_after.round_order(index)[0] for index in range(4)]

    assert firsts == ["before", "after", "before", "after"]
    assert all(set(before_after.round_order(index)) == {"before", "after"} for index in range(4))


def test_medians_spread_and_rounds_come_from_every_run_that_gave_the_figure():
    summaries = {
        "before": {"mapping": [mapping(30.0, 9e6), mapping(20.0, 8e6), mapping(25.0, 1e7)]},
        "after": {
            "mapping": [mapping(21.0, 9e6), mapping(19.0, 9e6), mapping(20.0, 9e6)],
            # The second round's Lockstep failed: its figures are missing, not zero.
            "newflow": [newflow(80_000, 2.0), {"failures": ["lockstep_native"]}],
        },
    }

    rows = before_after.summarise(summaries)

    build = row_of(rows, "build_ms.100")
    assert (build.before, build.after) == (25.0, 20.0)
    assert build.spread == (30.0 - 20.0) / 25.0  # before's spread, the larger of the two
    assert build.rounds == (3, 3)
    flows = row_of(rows, "lockstep_flows_per_s")
    assert (flows.before, flows.after, flows.rounds) == (None, 80_000, (0, 1))
    assert flows.spread is None  # one value: nothing known of the noise


def test_a_change_is_called_only_when_it_is_larger_than_the_rounds_spread():
    faster = Figure("newflow", "lockstep_flows_per_s", "flows/s", True)
    slower_is_better = Figure("mapping", "build_ms.100", "build (ms)", False)
    control = Figure("newflow", "reference_flows_per_s", "control", None)

    assert before_after.verdict(Row(faster, 100.0, 120.0, 0.1, (3, 3))) == "better"
    assert before_after.verdict(Row(faster, 100.0, 80.0, 0.1, (3, 3))) == "WORSE"
    assert before_after.verdict(Row(faster, 100.0, 108.0, 0.1, (3, 3))) == "within noise"
    assert before_after.verdict(Row(faster, 100.0, 101.0, 0.0, (3, 3))) == "within noise"
    assert before_after.verdict(Row(slower_is_better, 25.0, 20.0, 0.1, (3, 3))) == "better"
    assert before_after.verdict(Row(slower_is_better, 20.0, 25.0, 0.1, (3, 3))) == "WORSE"
    assert before_after.verdict(Row(faster, 100.0, 120.0, None, (1, 1))) == "?"
    assert before_after.verdict(Row(control, 100.0, 50.0, 0.1, (3, 3))) == ""
    assert before_after.verdict(Row(faster, None, 50.0, None, (0, 1))) == ""


def test_the_table_shows_both_medians_their_ratio_the_spread_and_missing_rounds():
    build = Figure("mapping", "build_ms.100", "Maglev build, 100 backends (ms)", False)
    flows = Figure("newflow", "lockstep_flows_per_s", "Lockstep new flows/s", True)
    rows = [Row(build, 25.0, 20.0, 0.1, (3, 3)), Row(flows, None, 80_000.0, None, (0, 1))]

    lines = before_after.format_table(rows).splitlines()

    assert lines[0].startswith("| figure | before | after | after/before | spread |")
    assert lines[2] == "| Maglev build, 100 backends (ms) | 25.0 | 20.0 | 0.80x | 10% | better |"
    assert lines[3] == "| Lockstep new flows/s (rounds 0/1) | - | 80,000 | - | - |  |"


def test_options_are_read_from_a_help_text_and_the_entry_module_from_a_main():
    shown = "  --quick               short phases\n  --no-rest-load        skip ...\n"

    assert before_after.known_options(shown) == {"--quick", "--no-rest-load"}
    before = '"""doc"""\n\nimport sys\n\nfrom ryu_app.launcher import main\n\nsys.exit(main())\n'
    assert before_after.entry_module(before) == "ryu_app.launcher"
    assert before_after.entry_module(before.replace(".launcher", ".shell.launcher")) == (
        "ryu_app.shell.launcher"
    )
    assert before_after.entry_module("import sys\n") is None


def test_every_new_flow_figure_is_a_key_bench_newflow_reports():
    """The table's keys are the names ``bench/report.py`` gives (bench_newflow's JSON): a renamed
    figure would otherwise show as "-" on both sides, silently."""
    phase = PhaseResult(
        flows_per_s=1000.0,
        offered_per_s=500.0,
        latencies_ms=[0.1, 0.2],
        incomplete=0,
        no_flow_mod=0,
        not_offered=0,
        switch_cpu=0.3,
        controller_cpu=0.5,
        other_cpu=0.1,
    )
    result = {
        "sustained": phase,
        "latency": phase,
        "counters": SwitchCounters(flow_cookie_kinds=Counter()),
        "log_problems": (0, []),
        "prefill_flows": 0,
        "prefill_s": 0.0,
        "memory": None,
    }
    reported = set()
    for controller in ("lockstep", "reference", "null"):
        reported |= set(report.summarise(controller, result))

    wanted = {figure.key for figure in FIGURES if figure.bench == "newflow"}
    assert wanted <= reported, wanted - reported
