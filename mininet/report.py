"""The demo's report: a plain-text results table, report.json, and PNG plots.

Everything here reads one plain dict, the results that `demo.py` collects and saves as report.json::

    {
      "started": "2026-11-26T14:20:00Z", "duration_s": 123.4, "passed": true,
      "mode": "mixed", "gateway_modes": {"gw1": "controller", "gw2": "switch"},  # who places
      "topology": {"clients": 2, "gateways": ["gw1", "gw2"], "vms": ["vm1", "vm2", "vm3", "vm4"],
                   "vip": "10.0.0.100:80", "weights": {"vm1": 1, ...}},
      "scenarios": [{
        "name": "spread", "title": "1,000 short connections spread over the VMs",
        "passed": true, "duration_s": 20.1,
        "checks": [{"what": "all connections succeeded", "ok": true, "detail": "1000/1000"}, ...],
        "figures": {"connections": 1000, "failed": 0, ...},      # free-form, shown in the table
        "per_gateway_vm": {"gw1": {"vm1": 130, ...}, ...},      # optional: connections plot
        "notes": ["flood: ..."],                                # optional: printed after the table
        "tables": [{"title": "...", "columns": ["case", ...],  # optional: printed as they are,
                    "rows": [["drain+move", ...], ...]}],      # after the table
        "flood": {...},                              # optional: report_flood.py's plot (its format)
        "weights": {"vm1": 1, ...},                             # optional: overrides the topology's
        "timeline": {                                           # optional: timeline plot
          "events": [{"t": 3.2, "kind": "failure", "label": "vm2 service stopped",
                      "gateway": null}],          # kind: failure|detection|action|recovery
          "transfers": [{"name": "download 1", "ok": true, "points": [[t, bytes_received], ...],
                         "gateway_moves": [t, ...]}]}
      }, ...]
    }

A check whose "ok" is false is a broken promise; "ok": null marks a measurement that is reported
but not judged (the disagreement scenario's). Times in a timeline are seconds since the scenario
started. The plots are ``report_plots.py``'s; matplotlib is imported only when one is drawn, so
the table needs nothing beyond the standard library.

    python mininet/report.py out/report.json [OUT_DIR]   # redraw the table and plots of a saved run
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import textwrap
from pathlib import Path

from report_flood import plot_flood
from report_plots import plot_spread, plot_timeline

TABLE_WIDTH = 100  # the README's code blocks
# Typographic characters that titles and details may carry, spelled in ASCII for the table.
ASCII_SPELLINGS = str.maketrans(
    {"\u2013": "-", "\u2014": "-", "\u2192": "->", "\u2264": "<=", "\u2265": ">=", "\u00b1": "+/-"}
    | {"\u00b5": "u", "\u00d7": "x", "\u2026": "...", "\u2018": "'", "\u2019": "'"}
    | {"\u201c": '"', "\u201d": '"', "\u00a0": " "}
)


# ---------------------------------------------------------------------------------------------
# The table


def summary_table(results: dict) -> str:
    """The results as a fixed-width ASCII table, one row per scenario, then the failed checks."""
    scenarios = results.get("scenarios", [])
    header = ("#", "scenario", "result", "time", "figures")
    rows = [
        (
            str(number),
            scenario.get("name", "?"),
            _verdict(scenario.get("passed")),
            _seconds(scenario.get("duration_s")),
            _figures(scenario.get("figures") or {}),
        )
        for number, scenario in enumerate(scenarios, start=1)
    ]
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(4)]
    figures_at = sum(widths) + 2 * 4
    figures_width = max(TABLE_WIDTH - figures_at, 30)

    def line(cells: tuple[str, ...]) -> list[str]:
        fixed = "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=False))
        wrapped = textwrap.wrap(cells[4], figures_width, break_on_hyphens=False) or [""]
        continuation = [" " * figures_at + more for more in wrapped[1:]]
        return [f"{fixed}  {wrapped[0]}".rstrip(), *continuation]

    out = [*textwrap.wrap(_headline(results), TABLE_WIDTH, subsequent_indent="  "), ""]
    out += line(header)
    out.append("  ".join("-" * width for width in widths) + "  " + "-" * len("figures"))
    for row in rows:
        out += line(row)
    passed = sum(1 for scenario in scenarios if scenario.get("passed") is True)
    overall = results.get("passed", bool(scenarios) and passed == len(scenarios))
    out += [
        "",
        f"{_verdict(overall)}: {passed} of {len(scenarios)} scenarios passed"
        f" in {_seconds(results.get('duration_s'))}",
    ]
    for table in (t for scenario in scenarios for t in scenario.get("tables") or []):
        out += ["", *_text_table(table)]
    failures = _failed_checks(scenarios)
    if failures:
        out += ["", "Failed checks:", *failures]
    notes = [n for scenario in scenarios for n in scenario.get("notes") or []]
    if notes:
        out += ["", "Notes:", *(line for n in notes for line in _wrap(n, "  ", "    "))]
    return "\n".join(_ascii(text) for text in out) + "\n"


def _text_table(table: dict) -> list[str]:
    """A scenario's own table (its title, then fixed-width columns), never re-wrapped: a
    side-by-side comparison reads only if its columns stay aligned."""
    columns = [str(c) for c in table.get("columns") or []]
    rows = [[str(cell) for cell in row] for row in table.get("rows") or []]
    widths = [
        max(len(row[i]) for row in [columns, *rows] if i < len(row)) for i in range(len(columns))
    ]

    def line(cells: list[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=False))

    title = [table["title"]] if table.get("title") else []
    return [*title, line(columns).rstrip(), "  ".join("-" * w for w in widths)] + [
        line(row).rstrip() for row in rows
    ]


def _headline(results: dict) -> str:
    topology = results.get("topology") or {}
    parts = []
    if "clients" in topology:
        parts.append(f"{topology['clients']} clients")
    for key in ("gateways", "vms"):
        if topology.get(key):
            names = topology[key]
            label = "VMs" if key == "vms" else key
            parts.append(f"{len(names)} {label} ({', '.join(names)})")
    if topology.get("vip"):
        parts.append(f"VIP {topology['vip']}")
    if results.get("mode"):
        by_gateway = results.get("gateway_modes") or {}
        shown = ", ".join(f"{g} {m}" for g, m in by_gateway.items())
        parts.append(f"{results['mode']} mode" + (f" ({shown})" if shown else ""))
    started = results.get("started")
    return (
        "Lockstep demo"
        + (f", {started}" if started else "")
        + (": " if parts else "")
        + (", ".join(parts))
    )


def _failed_checks(scenarios: list[dict]) -> list[str]:
    """One entry per check whose ok is false; a failed scenario without one still gets a line."""
    lines = []
    for scenario in scenarios:
        name = scenario.get("name", "?")
        failed = [check for check in scenario.get("checks") or [] if check.get("ok") is False]
        if not failed and scenario.get("passed") is False:
            failed = [{"what": "scenario failed", "detail": "no failed check was recorded"}]
        for check in failed:
            text = f"{name}: {check.get('what', '?')}"
            first, *rest = str(check.get("detail") or "").strip().splitlines() or [""]
            lines += _wrap(f"{text}: {first}" if first else text, "  ", "      ")
            for more in rest:
                lines += _wrap(more, "      ", "      ")
    return lines


def _wrap(text: str, indent: str, subsequent_indent: str) -> list[str]:
    return textwrap.wrap(
        text,
        TABLE_WIDTH,
        initial_indent=indent,
        subsequent_indent=subsequent_indent,
        break_on_hyphens=False,
    )


def _verdict(passed: object) -> str:
    return {True: "PASS", False: "FAIL"}.get(passed, "-")


def _seconds(value: object) -> str:
    return f"{value:.1f} s" if isinstance(value, int | float) else "-"


def _figures(figures: dict) -> str:
    """In key order, as report.json stores them: a table redrawn from it reads the same."""
    return " ".join(f"{key}={_short(figures[key])}" for key in sorted(figures))


def _short(value: object) -> str:
    """Numbers to about three significant digits, without exponents for ordinary magnitudes."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        for limit, digits in ((100, 0), (10, 1), (1, 2)):
            if abs(value) >= limit:
                text = f"{value:.{digits}f}"  # no zeros to strip without a decimal point
                return text.rstrip("0").rstrip(".") if digits else text
        return f"{value:.3g}"
    if isinstance(value, list | tuple):
        return "/".join(_short(item) for item in value)
    return str(value).replace(" ", "_")


def _ascii(text: str) -> str:
    return text.translate(ASCII_SPELLINGS).encode("ascii", "replace").decode("ascii")


# ---------------------------------------------------------------------------------------------
# Files


def write_all(results: dict, out_dir: Path | str) -> list[Path]:
    """Write report.json, summary.txt and each scenario's plots into out_dir; return their paths.

    The JSON and the table are written first, so that they are there even if a plot fails."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = out_dir / "report.json"
    report.write_text(json.dumps(results, sort_keys=True, indent=2) + "\n")
    summary = out_dir / "summary.txt"
    summary.write_text(summary_table(results))
    written = [report, summary]
    weights = (results.get("topology") or {}).get("weights")
    used: set[str] = set()
    for number, scenario in enumerate(results.get("scenarios", []), start=1):
        stem = _file_stem(scenario.get("name", ""), number, used)
        if scenario.get("per_gateway_vm"):
            path = out_dir / f"{stem}-connections.png"
            plot_spread(scenario, path, weights)
            written.append(path)
        if scenario.get("flood"):
            path = out_dir / f"{stem}-flood.png"
            plot_flood(scenario, path)
            written.append(path)
        timeline = scenario.get("timeline") or {}
        if timeline.get("events") or timeline.get("transfers"):
            path = out_dir / f"{stem}-timeline.png"
            plot_timeline(scenario, path)
            written.append(path)
    return written


def _file_stem(name: str, number: int, used: set[str]) -> str:
    """A file-name-safe form of the scenario's name, unique among the run's scenarios."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or f"scenario-{number}"
    unique, again = stem, 2
    while unique in used:
        unique, again = f"{stem}-{again}", again + 1
    used.add(unique)
    return unique


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="a report.json that the demo wrote")
    parser.add_argument("out_dir", type=Path, nargs="?", help="default: the report's folder")
    args = parser.parse_args(argv)
    results = json.loads(args.report.read_text())
    for path in write_all(results, args.out_dir or args.report.parent):
        print(f"wrote {path}", file=sys.stderr)
    print(summary_table(results), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
