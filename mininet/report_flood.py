"""The flood scenario's figure (``plot_flood``): four panels over the scenario's time, the
flood's window shaded in each: packets per second (offered by the flooder, passed by the router
to the flooded gateway, read by its switch from its uplink, dropped by its flood guard's meter),
each gateway's view of each backend (up, down, no answer) and of its own load (overloaded, a
VIP in panic), the legitimate client's connections (success per second and each one's connect
time), and the downloads' progress.  ``flood_plot`` computes what is drawn without matplotlib
(the tests ask it); ``draw_flood`` returns the figure.

It reads the scenario's ``flood`` (its ``timeline`` for the downloads)::

    {"victim": "gw1", "flooder": "flooder", "command": "hping3 ...", "start": 2.1, "end": 6.1,
     "samples": [...], "connections": [...]}     # in overload_summary.py's format
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import overload_summary as summary
from report_plots import _byte_unit, _natural, _new_figure, _plot_title

STATE_COLOURS = {
    "up": "tab:green",
    "down": "tab:red",
    "no answer": "tab:gray",
    "overloaded": "tab:orange",  # the gateway's own verdict: silence is inconclusive
    "panic": "tab:purple",  # too few backends look healthy: the VIP serves them all
}
FLOOD_SHADE = "#f4c7c3"


class FloodPlot(NamedTuple):
    victim: str
    window: tuple[float, float]  # the flood: start, end (seconds since the scenario started)
    offered: list[tuple[float, float]]  # (t, SYN/s) from the flooder
    forwarded: list[tuple[float, float]]  # (t, packets/s) the router sent to the victim
    read: list[tuple[float, float]]  # (t, packets/s) the victim's switch read from its uplink
    dropped: list[tuple[float, float]]  # (t, packets/s) the victim's guard dropped in its switch
    states: dict[str, list[tuple[float, float, str]]]  # "gw1 vm1", "gw1 load" -> (from, to, state)
    succeeded: list[tuple[float, float]]  # (t, connect ms) of each successful connection
    failed: list[float]  # start times of the failed ones
    success: list[tuple[float, float]]  # (second, percent) per second
    transfers: list[tuple[bool, list[tuple[float, float]]]]  # (ok, (t, bytes))
    end: float  # the last time anything was recorded


def flood_plot(scenario: dict) -> FloodPlot:
    flood = scenario["flood"]
    samples, connections = flood["samples"], flood["connections"]
    victim = flood["victim"]
    transfers = [
        (bool(t.get("ok", True)), [tuple(p) for p in t.get("points") or []])
        for t in (scenario.get("timeline") or {}).get("transfers") or []
    ]
    latest = [s["t"] for s in samples] + [c["t"] for c in connections]
    latest += [t for _, points in transfers for t, _ in points]
    return FloodPlot(
        victim,
        (flood["start"], flood["end"]),
        summary.rate_series(summary.series(samples, "offered")),
        summary.rate_series(summary.series(samples, "forwarded")),
        summary.rate_series(summary.read_by_switch(samples)),
        summary.rate_series(summary.series(samples, "dropped_in_switch", victim), span=1.0),
        state_segments(samples),
        [(c["t"], c["connect_ms"]) for c in connections if c["ok"] and c.get("connect_ms")],
        [c["t"] for c in connections if not c["ok"]],
        summary.success_buckets(connections),
        transfers,
        max(latest, default=flood["end"]),
    )


def state_segments(samples: list[dict]) -> dict[str, list[tuple[float, float, str]]]:
    """Per "gateway backend" row, the state each sample saw, held until the next sample (the
    last one held for one more interval's worth), neighbouring equal states merged; and per
    gateway that says so, a "gateway load" row of its overload and panic verdicts (nothing
    drawn while it has neither)."""
    rows: dict[str, list[tuple[float, float, str]]] = {}
    times = [s["t"] for s in samples]
    step = min((b - a for a, b in zip(times, times[1:], strict=False)), default=0.5)

    def hold(name: str, t: float, until: float, state: str | None) -> None:
        segments = rows.setdefault(name, [])
        if state is None:
            return
        if segments and segments[-1][2] == state and segments[-1][1] == t:
            segments[-1] = (segments[-1][0], until, state)
        else:
            segments.append((t, until, state))

    judged = {g for s in samples for g, v in s["gateways"].items() if "overloaded" in (v or {})}
    for index, sample in enumerate(samples):
        t = sample["t"]
        until = times[index + 1] if index + 1 < len(times) else t + step
        for gateway, seen in sorted(sample["gateways"].items()):
            backends = (seen or {}).get("backends")
            for backend in backends or _known_backends(samples, gateway):
                state = "no answer"
                if backends is not None:
                    state = "up" if backends[backend]["healthy"] else "down"
                hold(f"{gateway} {backend}", t, until, state)
            if gateway in judged:
                hold(f"{gateway} load", t, until, _load(seen or {}))
    return {name: rows[name] for name in sorted(rows, key=_natural)}


def _load(view: dict) -> str | None:
    if view.get("panic"):
        return "panic"
    return "overloaded" if view.get("overloaded") else None


def _known_backends(samples: list[dict], gateway: str) -> list[str]:
    for sample in samples:
        backends = (sample["gateways"].get(gateway) or {}).get("backends")
        if backends:
            return sorted(backends, key=_natural)
    return []


def plot_flood(scenario: dict, path: Path | str) -> None:
    title = _plot_title(scenario, "SYN flood: offered rate, health, new connections, transfers")
    draw_flood(flood_plot(scenario), title).savefig(path)


def draw_flood(plot: FloodPlot, title: str):
    """The four panels of ``plot``, sharing the time axis."""
    rows = max(len(plot.states), 1)
    figure = _new_figure(12.0, 10.0 + 0.12 * rows)
    rate, health, connections, transfers = figure.subplots(
        4, 1, sharex=True, height_ratios=[2.2, 0.5 + 0.22 * rows, 2.0, 2.0]
    )
    for axes in (rate, health, connections, transfers):
        axes.axvspan(*plot.window, color=FLOOD_SHADE, alpha=0.6, zorder=0)
        for edge in plot.window:  # over the bars, which hide the shade
            axes.axvline(edge, color="tab:red", linestyle=":", linewidth=1.2, zorder=4)
        axes.grid(alpha=0.3)
    rate.set_title(title)
    _draw_rates(rate, plot)
    _draw_states(health, plot)
    _draw_connections(connections, plot)
    _draw_transfers(transfers, plot)
    transfers.set_xlim(0, plot.end * 1.02 or 1.0)
    transfers.set_xlabel("seconds since the scenario started (flood shaded)")
    return figure


def _draw_rates(axes, plot: FloodPlot) -> None:
    for points, label, style in (
        (plot.offered, "offered by the flooder", {"color": "tab:red"}),
        (plot.forwarded, f"router -> {plot.victim}", {"color": "tab:orange", "linestyle": "--"}),
        (plot.read, f"read by {plot.victim}'s switch", {"color": "tab:blue"}),
        (
            plot.dropped,
            f"dropped by {plot.victim}'s flood guard (meter, polled 1/s)",
            {"color": "black"},
        ),
    ):
        if points:
            # each rate is over the time up to its point: drawn back from there
            axes.step([t for t, _ in points], [v for _, v in points], where="pre",
                      label=label, **style)  # fmt: skip
    axes.set_yscale("symlog", linthresh=100)
    axes.set_ylim(bottom=0)
    axes.set_ylabel("packets/s")
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)


def _draw_states(axes, plot: FloodPlot) -> None:
    names = list(plot.states)
    for row, name in enumerate(names):
        for state, colour in STATE_COLOURS.items():
            spans = [(a, b - a) for a, b, s in plot.states[name] if s == state]
            if spans:
                axes.broken_barh(spans, (row - 0.4, 0.8), color=colour)
    axes.set_yticks(range(len(names)), names, fontsize=7)
    axes.set_ylim(len(names) - 0.5, -0.5)
    axes.set_ylabel("backend\nstate")
    from matplotlib.patches import Patch  # noqa: PLC0415 (optional dependency)

    shown = [s for s in STATE_COLOURS if s in ("up", "down") or _appears(plot, s)]
    axes.legend(
        [Patch(color=STATE_COLOURS[s]) for s in shown],
        shown,
        loc="upper left",
        bbox_to_anchor=(1.01, 1),
        fontsize=8,
    )


def _appears(plot: FloodPlot, state: str) -> bool:
    return any(s == state for segments in plot.states.values() for _, _, s in segments)


def _draw_connections(axes, plot: FloodPlot) -> None:
    if plot.success:
        axes.step([t for t, _ in plot.success], [p for _, p in plot.success], where="post",
                  color="tab:blue", label="succeeded, per second (%)")  # fmt: skip
    if plot.failed:
        axes.plot(plot.failed, [0] * len(plot.failed), "x", color="tab:red",
                  label=f"failed ({len(plot.failed)})", clip_on=False)  # fmt: skip
    axes.set_ylim(-5, 105)
    axes.set_ylabel(f"new connections\nthrough {plot.victim} (%)")
    times = axes.twinx()
    if plot.succeeded:
        times.plot([t for t, _ in plot.succeeded], [ms for _, ms in plot.succeeded], ".",
                   color="tab:cyan", markersize=4, label="connect time (ms)")  # fmt: skip
        times.set_yscale("log")
    times.set_ylabel("connect ms")
    handles, labels = axes.get_legend_handles_labels()
    more, more_labels = times.get_legend_handles_labels()
    axes.legend(handles + more, labels + more_labels, loc="upper left",
                bbox_to_anchor=(1.06, 1), fontsize=8)  # fmt: skip


def _draw_transfers(axes, plot: FloodPlot) -> None:
    top = max((b for _, points in plot.transfers for _, b in points), default=0)
    divisor, unit = _byte_unit(top)
    failed = 0
    for ok, points in plot.transfers:
        failed += not ok
        axes.plot([t for t, _ in points], [b / divisor for _, b in points],
                  color="tab:purple" if ok else "black", linestyle="-" if ok else "--",
                  linewidth=1.1, alpha=0.8)  # fmt: skip
    axes.set_ylim(bottom=0)
    axes.set_ylabel(f"downloads ({unit})")
    label = f"{len(plot.transfers) - failed} downloads completed"
    if failed:
        label += f", {failed} failed (dashed)"
    axes.text(0.01, 0.95, label, transform=axes.transAxes, va="top", fontsize=8)
