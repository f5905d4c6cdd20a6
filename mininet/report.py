"""The demo's report: a plain-text results table, report.json, and PNG plots.

Everything here reads one plain dict, the results that `demo.py` collects and saves as report.json::

    {
      "started": "2026-11-26T14:20:00Z", "duration_s": 123.4, "passed": true,
      "topology": {"clients": 2, "gateways": ["gw1", "gw2"], "vms": ["vm1", "vm2", "vm3", "vm4"],
                   "vip": "10.0.0.100:80", "weights": {"vm1": 1, ...}},
      "scenarios": [{
        "name": "spread", "title": "1,000 short connections spread over the VMs",
        "passed": true, "duration_s": 20.1,
        "checks": [{"what": "all connections succeeded", "ok": true, "detail": "1000/1000"}, ...],
        "figures": {"connections": 1000, "failed": 0, ...},      # free-form, shown in the table
        "per_gateway_vm": {"gw1": {"vm1": 130, ...}, ...},      # optional: connections plot
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
started. matplotlib is imported only by the plotting functions, so the table needs nothing beyond
the standard library.

    python mininet/report.py out/report.json [OUT_DIR]   # redraw the table and plots of a saved run
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import re
import sys
import textwrap
from pathlib import Path

TABLE_WIDTH = 100  # the README's code blocks
EVENT_COLOURS = {"failure": "tab:red", "action": "tab:blue", "recovery": "tab:green"}
DETECTION_SHADES = ("#ff7f0e", "#c45a00", "#ffa94d", "#8a3c00")  # one orange per gateway
DETECTION_DASHES = ("-", "--", "-.", ":")
OTHER_EVENT_COLOUR = "tab:gray"
TRANSFER_COLOUR = "tab:purple"
FAILED_TRANSFER_COLOUR = "black"
LABEL_GAP_PX = 8  # between two event labels on one row of the timeline's strip
LABEL_OFFSET_PT = 4  # from an event's marker to its label
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
    failures = _failed_checks(scenarios)
    if failures:
        out += ["", "Failed checks:", *failures]
    return "\n".join(_ascii(text) for text in out) + "\n"


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
                return f"{value:.{digits}f}".rstrip("0").rstrip(".")
        return f"{value:.3g}"
    if isinstance(value, list | tuple):
        return "/".join(_short(item) for item in value)
    return str(value).replace(" ", "_")


def _ascii(text: str) -> str:
    return text.translate(ASCII_SPELLINGS).encode("ascii", "replace").decode("ascii")


# ---------------------------------------------------------------------------------------------
# Plots


def _new_figure(width: float, height: float):
    """A figure drawn by Agg, without pyplot: no display, no global figure registry to leak into."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415 (optional)
    from matplotlib.figure import Figure  # noqa: PLC0415

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def plot_spread(scenario: dict, path: Path | str, weights: dict | None = None) -> None:
    """Grouped bars of connections per VM (one group) per gateway (one bar), with a marker at what
    each gateway would send to each VM if it split its connections exactly by weight.

    The weights are the scenario's own "weights" if it has them (a drain changes them), else the
    `weights` given (the topology's); without either there are no markers."""
    counts = scenario["per_gateway_vm"]
    weights = scenario.get("weights") or weights or {}
    gateways = sorted(counts, key=_natural)
    vms = sorted({vm for per_vm in counts.values() for vm in per_vm} | set(weights), key=_natural)
    total_weight = sum(weights.get(vm, 0) for vm in vms)
    grand_total = sum(sum(per_vm.values()) for per_vm in counts.values())

    figure = _new_figure(max(7.0, 1.9 * len(vms) + 2.5), 5.5)
    axes = figure.add_subplot()
    bar_width = 0.8 / max(len(gateways), 1)
    for index, gateway in enumerate(gateways):
        per_vm = counts[gateway]
        positions = [
            vm_at + (index - (len(gateways) - 1) / 2) * bar_width for vm_at in range(len(vms))
        ]
        served = [per_vm.get(vm, 0) for vm in vms]
        axes.bar(positions, served, bar_width * 0.92, label=gateway)
        gateway_total = sum(per_vm.values())
        expected = [gateway_total * weights.get(vm, 0) / (total_weight or 1) for vm in vms]
        markers = expected if total_weight else served
        for x, count, marker in zip(positions, served, markers, strict=True):
            axes.annotate(  # above the bar and its marker, so that the marker strikes no count
                str(count),
                (x, max(count, marker)),
                xytext=(0, 3),
                textcoords="offset points",
                ha="center",
                fontsize=8,
            )
        if total_weight:
            axes.hlines(
                expected,
                [x - bar_width / 2 for x in positions],
                [x + bar_width / 2 for x in positions],
                colors="black",
                linestyles="--",
                linewidth=1.5,
                label="expected from weights" if index == 0 else None,
            )

    def vm_label(vm: str) -> str:
        served = sum(per_vm.get(vm, 0) for per_vm in counts.values())
        share = f"{100 * served / grand_total:.1f}%" if grand_total else "-"
        if vm not in weights or not total_weight:
            return f"{vm}\n{share} of all"
        expected = 100 * weights[vm] / total_weight
        return f"{vm} (weight {_short(weights[vm])})\n{share} of all\nexpected {expected:.1f}%"

    axes.set_xticks(range(len(vms)), [vm_label(vm) for vm in vms], fontsize=9)
    axes.set_ylabel("connections")
    axes.set_title(_plot_title(scenario, f"{grand_total} connections per VM and gateway"))
    axes.margins(y=0.12)
    axes.grid(axis="y", alpha=0.3)
    axes.set_axisbelow(True)
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1), title="gateway")
    figure.savefig(path)


def plot_timeline(scenario: dict, path: Path | str) -> None:
    """Bytes received over time per transfer, under a strip that labels every event; each event is
    also a vertical line through the transfers (failure red, detection orange with one shade and
    dash per gateway, action blue, recovery green)."""
    from matplotlib.lines import Line2D  # noqa: PLC0415 (optional dependency)

    timeline = scenario.get("timeline") or {}
    events = sorted(timeline.get("events") or [], key=lambda event: event["t"])
    transfers = timeline.get("transfers") or []
    detection_gateways = sorted(
        {str(e.get("gateway")) for e in events if e.get("kind") == "detection"}, key=_natural
    )

    def style(event: dict) -> tuple[str, str, str]:
        """(colour, dash, legend label) of an event."""
        kind = event.get("kind", "other")
        if kind == "detection":
            at = detection_gateways.index(str(event.get("gateway")))
            colour = DETECTION_SHADES[at % len(DETECTION_SHADES)]
            dash = DETECTION_DASHES[at % len(DETECTION_DASHES)]
            return colour, dash, f"detection by {event.get('gateway')}"
        return EVENT_COLOURS.get(kind, OTHER_EVENT_COLOUR), "-", kind

    figure = _new_figure(12.0, 6.0)
    if events:
        strip, axes = figure.subplots(2, 1, sharex=True, height_ratios=[1.2, 4])
    else:
        strip, axes = None, figure.add_subplot()

    # Transfers.
    top = max((b for transfer in transfers for _, b in transfer.get("points") or []), default=0)
    divisor, unit = _byte_unit(top)
    failed_count = 0
    moves_drawn = False
    for transfer in transfers:
        points = transfer.get("points") or []
        times = [t for t, _ in points]
        amounts = [b / divisor for _, b in points]
        if transfer.get("ok", True):
            axes.plot(times, amounts, color=TRANSFER_COLOUR, linewidth=1.2, alpha=0.75)
        else:
            failed_count += 1
            axes.plot(times, amounts, color=FAILED_TRANSFER_COLOUR, linewidth=2, linestyle="--")
            if points:
                axes.plot(times[-1], amounts[-1], "X", color=FAILED_TRANSFER_COLOUR, markersize=9)
                axes.annotate(
                    f"{transfer.get('name', '?')} failed",
                    (times[-1], amounts[-1]),
                    xytext=(6, -4),
                    textcoords="offset points",
                    fontsize=8,
                )
        moves = [t for t in transfer.get("gateway_moves") or [] if points]
        if moves:
            moves_drawn = True
            axes.plot(
                moves,
                [_interpolate(times, amounts, t) for t in moves],
                "o",
                markerfacecolor="white",
                markeredgecolor="black",
                markersize=6,
                zorder=3,
            )
    if not transfers:
        axes.text(0.5, 0.5, "no transfers recorded", transform=axes.transAxes, ha="center")

    # Events: a line through the transfers (and the strip), a marker and a label in the strip.
    legend: dict[str, Line2D] = {}
    for event in events:
        colour, dash, name = style(event)
        axes.axvline(event["t"], color=colour, linestyle=dash, linewidth=1.3, alpha=0.85)
        legend.setdefault(name, Line2D([], [], color=colour, linestyle=dash, linewidth=1.5))

    if transfers:
        legend[f"transfer ({len(transfers) - failed_count} ok)"] = Line2D(
            [], [], color=TRANSFER_COLOUR, linewidth=1.2
        )
    if failed_count:
        legend[f"failed transfer ({failed_count})"] = Line2D(
            [], [], color=FAILED_TRANSFER_COLOUR, linewidth=2, linestyle="--", marker="X"
        )
    if moves_drawn:
        legend["flow moved to another gateway"] = Line2D(
            [], [], linestyle="", marker="o", markerfacecolor="white", markeredgecolor="black"
        )
    latest = max(
        [event["t"] for event in events]
        + [t for transfer in transfers for t, _ in transfer.get("points") or []],
        default=1.0,
    )
    earliest = min([0.0] + [event["t"] for event in events])
    axes.set_xlim(earliest, latest * 1.03 or 1.0)
    axes.set_ylim(bottom=0)
    axes.set_xlabel("seconds since the scenario started")
    axes.set_ylabel(f"received ({unit})")
    axes.grid(alpha=0.3)
    axes.legend(
        legend.values(), legend.keys(), loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=9
    )
    title = _plot_title(scenario, "transfers, failures and detections over time")
    if strip is None:
        axes.set_title(title)
    else:
        strip.set_title(title)
        _label_events(figure, strip, events, style)
    figure.savefig(path)


def _label_events(figure, strip, events: list[dict], style) -> None:
    """Labels beside the event markers in the strip, each on the first row where it overlaps no
    other label, and a line from each marker down to the plot below (so that it crosses no later
    label); the strip (and the figure) grow to give every row its height."""
    strip.set_yticks([])
    strip.tick_params(axis="x", length=0)
    for side in ("left", "right", "top"):
        strip.spines[side].set_visible(False)
    texts = []
    for event in events:
        colour, dash, _ = style(event)
        marker = strip.plot(event["t"], 0, "o", color=colour, markersize=5, clip_on=False)[0]
        line = strip.plot([event["t"]] * 2, [0, 0], color=colour, linestyle=dash, linewidth=1.3)[0]
        label = str(event.get("label", ""))
        gateway = event.get("gateway")
        if gateway and not label.startswith(str(gateway)):
            label = f"{gateway}: {label}"
        text = strip.annotate(
            f"{event['t']:.1f} s {label}",
            (event["t"], 0),
            xytext=(LABEL_OFFSET_PT, 0),
            textcoords="offset points",
            fontsize=8,
            va="center",
            bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none"},
            zorder=3,  # above the lines of other events, which a label may have to cross
        )
        texts.append((event["t"], marker, line, text))

    figure.get_layout_engine().execute(figure)  # now data and pixels correspond
    renderer = figure.canvas.get_renderer()
    right_edge = strip.get_window_extent(renderer).x1
    row_ends: list[float] = []  # per row, the pixel where its last label ends
    offset = LABEL_OFFSET_PT * figure.dpi / 72
    rows_of: list[tuple[int, object]] = []
    for t, marker, line, text in texts:
        x = strip.transData.transform((t, 0))[0]
        width = text.get_window_extent(renderer).width + offset
        if x + width > right_edge:  # no room on the right: the label goes left of its line
            text.set_horizontalalignment("right")
            text.xyann = (-LABEL_OFFSET_PT, 0)
            start, end = x - width, x
        else:
            start, end = x, x + width
        row = next(
            (r for r, ends_at in enumerate(row_ends) if ends_at + LABEL_GAP_PX < start),
            len(row_ends),
        )
        if row == len(row_ends):
            row_ends.append(end)
        row_ends[row] = max(row_ends[row], end)
        text.xy = (t, row)
        marker.set_ydata([row])
        rows_of.append((row, line))
    rows = max(len(row_ends), 1)
    strip.set_ylim(rows - 0.4, -0.6)  # row 0 on top
    for row, line in rows_of:
        line.set_ydata([row, rows - 0.4])
    strip_height = 0.5 + 0.22 * rows
    width, _ = figure.get_size_inches()
    figure.set_size_inches(width, strip_height + 4.6)
    strip.get_subplotspec().get_gridspec().set_height_ratios([strip_height, 4.0])


def _plot_title(scenario: dict, what: str) -> str:
    verdict = {True: "passed", False: "FAILED"}.get(scenario.get("passed"), "")
    name = scenario.get("title") or scenario.get("name", "")
    return f"{name}\n{what}" + (f" ({verdict})" if verdict else "")


def _byte_unit(largest: float) -> tuple[float, str]:
    for divisor, unit in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if largest >= 2 * divisor:
            return divisor, unit
    return 1, "bytes"


def _interpolate(times: list[float], values: list[float], t: float) -> float:
    """The value at t on the polyline through (times, values), clamped at both ends."""
    after = bisect.bisect_left(times, t)
    if after == 0:
        return values[0]
    if after == len(times):
        return values[-1]
    t0, t1, v0, v1 = times[after - 1], times[after], values[after - 1], values[after]
    return v1 if t1 == t0 else v0 + (v1 - v0) * (t - t0) / (t1 - t0)


def _natural(name: str) -> list:
    """Sort key putting vm2 before vm10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(name))]


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
