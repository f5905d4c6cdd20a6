"""The demo report's plots (PNG, drawn by matplotlib's Agg backend without pyplot): connections
per VM and gateway (``plot_spread``), and transfers with the scenario's events over time
(``plot_timeline``).  Each is computed, then drawn, then saved, so that tests can ask what a
plot shows: ``spread_plot`` is the connections plot's data without matplotlib, and
``draw_spread`` / ``draw_timeline`` return the figure.  matplotlib is imported only here, and
only when a plot is drawn: the report's table needs nothing beyond the standard library.
"""

from __future__ import annotations

import bisect
import re
from pathlib import Path
from typing import NamedTuple

EVENT_COLOURS = {"failure": "tab:red", "action": "tab:blue", "recovery": "tab:green"}
DETECTION_SHADES = ("#ff7f0e", "#c45a00", "#ffa94d", "#8a3c00")  # one orange per gateway
DETECTION_DASHES = ("-", "--", "-.", ":")
OTHER_EVENT_COLOUR = "tab:gray"
TRANSFER_COLOUR = "tab:purple"
FAILED_TRANSFER_COLOUR = "black"
LABEL_GAP_PX = 8  # between two event labels on one row of the timeline's strip
LABEL_OFFSET_PT = 4  # from an event's marker to its label


def _new_figure(width: float, height: float):
    """A figure drawn by Agg, without pyplot: no display, no global figure registry to leak into."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415 (optional)
    from matplotlib.figure import Figure  # noqa: PLC0415

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


class SpreadPlot(NamedTuple):
    """What the connections plot shows, computed without matplotlib: per gateway, the
    connections each VM served and (with weights) what it would have served had the gateway
    split its connections exactly by weight."""

    gateways: list[str]
    vms: list[str]
    served: dict[str, list[int]]  # gateway -> connections per VM, in ``vms`` order
    expected: dict[str, list[float]] | None  # the same by weight; None: no weights, no markers
    tick_labels: list[str]  # per VM: name, weight, share of all, expected share
    total: int  # connections in all


def spread_plot(scenario: dict, weights: dict | None = None) -> SpreadPlot:
    """The scenario's own "weights" if it has them (a drain changes them), else the
    ``weights`` given (the topology's); without either there are no expected values."""
    counts = scenario["per_gateway_vm"]
    weights = scenario.get("weights") or weights or {}
    gateways = sorted(counts, key=_natural)
    vms = sorted({vm for per_vm in counts.values() for vm in per_vm} | set(weights), key=_natural)
    total_weight = sum(weights.get(vm, 0) for vm in vms)
    total = sum(sum(per_vm.values()) for per_vm in counts.values())
    served = {gateway: [counts[gateway].get(vm, 0) for vm in vms] for gateway in gateways}
    expected = None
    if total_weight:
        expected = {
            gateway: [
                sum(counts[gateway].values()) * weights.get(vm, 0) / total_weight for vm in vms
            ]
            for gateway in gateways
        }

    def tick_label(vm: str) -> str:
        vm_served = sum(per_vm.get(vm, 0) for per_vm in counts.values())
        share = f"{100 * vm_served / total:.1f}%" if total else "-"
        if vm not in weights or not total_weight:
            return f"{vm}\n{share} of all"
        should = 100 * weights[vm] / total_weight
        return f"{vm} (weight {weights[vm]:g})\n{share} of all\nexpected {should:.1f}%"

    return SpreadPlot(gateways, vms, served, expected, [tick_label(vm) for vm in vms], total)


def plot_spread(scenario: dict, path: Path | str, weights: dict | None = None) -> None:
    """Grouped bars of connections per VM (one group) per gateway (one bar), with a marker at what
    each gateway would send to each VM if it split its connections exactly by weight
    (``spread_plot``)."""
    plot = spread_plot(scenario, weights)
    title = _plot_title(scenario, f"{plot.total} connections per VM and gateway")
    draw_spread(plot, title).savefig(path)


def draw_spread(plot: SpreadPlot, title: str):
    """The figure of ``plot``: a bar per gateway and VM, a dashed marker per bar at its expected
    value (if any), each bar's count above it."""
    figure = _new_figure(max(7.0, 1.9 * len(plot.vms) + 2.5), 5.5)
    axes = figure.add_subplot()
    bar_width = 0.8 / max(len(plot.gateways), 1)
    for index, gateway in enumerate(plot.gateways):
        offset = (index - (len(plot.gateways) - 1) / 2) * bar_width
        positions = [vm_at + offset for vm_at in range(len(plot.vms))]
        served = plot.served[gateway]
        axes.bar(positions, served, bar_width * 0.92, label=gateway)
        markers = plot.expected[gateway] if plot.expected else served
        for x, count, marker in zip(positions, served, markers, strict=True):
            axes.annotate(  # above the bar and its marker, so that the marker strikes no count
                str(count),
                (x, max(count, marker)),
                xytext=(0, 3),
                textcoords="offset points",
                ha="center",
                fontsize=8,
            )
        if plot.expected:
            axes.hlines(
                plot.expected[gateway],
                [x - bar_width / 2 for x in positions],
                [x + bar_width / 2 for x in positions],
                colors="black",
                linestyles="--",
                linewidth=1.5,
                label="expected from weights" if index == 0 else None,
            )
    axes.set_xticks(range(len(plot.vms)), plot.tick_labels, fontsize=9)
    axes.set_ylabel("connections")
    axes.set_title(title)
    axes.margins(y=0.12)
    axes.grid(axis="y", alpha=0.3)
    axes.set_axisbelow(True)
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1), title="gateway")
    return figure


def plot_timeline(scenario: dict, path: Path | str) -> None:
    """Bytes received over time per transfer, under a strip that labels every event; each event is
    also a vertical line through the transfers (failure red, detection orange with one shade and
    dash per gateway, action blue, recovery green)."""
    draw_timeline(scenario).savefig(path)


def draw_timeline(scenario: dict):
    """The figure of ``plot_timeline``: the transfers' axes last, the events' strip (if there
    are events) first."""
    timeline = scenario.get("timeline") or {}
    events = sorted(timeline.get("events") or [], key=lambda event: event["t"])
    transfers = timeline.get("transfers") or []
    style = _event_style(events)
    figure = _new_figure(12.0, 6.0)
    if events:
        strip, axes = figure.subplots(2, 1, sharex=True, height_ratios=[1.2, 4])
    else:
        strip, axes = None, figure.add_subplot()
    top = max((b for transfer in transfers for _, b in transfer.get("points") or []), default=0)
    divisor, unit = _byte_unit(top)
    transfers_legend = _draw_transfers(axes, transfers, divisor)
    legend: dict = {}
    for event in events:  # a line through the transfers (and the strip)
        colour, dash, name = style(event)
        axes.axvline(event["t"], color=colour, linestyle=dash, linewidth=1.3, alpha=0.85)
        legend.setdefault(name, _legend_line(color=colour, linestyle=dash, linewidth=1.5))
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
    legend |= transfers_legend  # after the events'
    axes.legend(
        legend.values(), legend.keys(), loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=9
    )
    title = _plot_title(scenario, "transfers, failures and detections over time")
    if strip is None:
        axes.set_title(title)
    else:
        strip.set_title(title)
        _label_events(figure, strip, events, style)
    return figure


def _event_style(events: list[dict]):
    """``style(event)`` -> (colour, dash, legend label): one shade and dash per detecting
    gateway, a colour per other kind."""
    detection_gateways = sorted(
        {str(e.get("gateway")) for e in events if e.get("kind") == "detection"}, key=_natural
    )

    def style(event: dict) -> tuple[str, str, str]:
        kind = event.get("kind", "other")
        if kind == "detection":
            at = detection_gateways.index(str(event.get("gateway")))
            colour = DETECTION_SHADES[at % len(DETECTION_SHADES)]
            dash = DETECTION_DASHES[at % len(DETECTION_DASHES)]
            return colour, dash, f"detection by {event.get('gateway')}"
        return EVENT_COLOURS.get(kind, OTHER_EVENT_COLOUR), "-", kind

    return style


def _draw_transfers(axes, transfers: list[dict], divisor: float) -> dict:
    """Each transfer's bytes over time (a failed one dashed, marked and named where it ended,
    a flow's moves to another gateway as circles); returns their legend entries."""
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
            _draw_failed_transfer(axes, transfer, times, amounts)
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
    legend = {}
    if transfers:
        legend[f"transfer ({len(transfers) - failed_count} ok)"] = _legend_line(
            color=TRANSFER_COLOUR, linewidth=1.2
        )
    if failed_count:
        legend[f"failed transfer ({failed_count})"] = _legend_line(
            color=FAILED_TRANSFER_COLOUR, linewidth=2, linestyle="--", marker="X"
        )
    if moves_drawn:
        legend["flow moved to another gateway"] = _legend_line(
            linestyle="", marker="o", markerfacecolor="white", markeredgecolor="black"
        )
    return legend


def _draw_failed_transfer(axes, transfer: dict, times: list, amounts: list) -> None:
    axes.plot(times, amounts, color=FAILED_TRANSFER_COLOUR, linewidth=2, linestyle="--")
    if times:
        axes.plot(times[-1], amounts[-1], "X", color=FAILED_TRANSFER_COLOUR, markersize=9)
        axes.annotate(
            f"{transfer.get('name', '?')} failed",
            (times[-1], amounts[-1]),
            xytext=(6, -4),
            textcoords="offset points",
            fontsize=8,
        )


def _legend_line(**style):
    from matplotlib.lines import Line2D  # noqa: PLC0415 (optional dependency)

    return Line2D([], [], **style)


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
