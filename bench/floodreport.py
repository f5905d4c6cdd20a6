"""The pure parts of ``bench/bench_flood.py``: which steps to run, what a step's raw
observations add up to, whether the issue's targets are met, and the tables.  No I/O: the
tests feed them made-up observations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Pacing hping3 (measured here by the SYN-only bench_ovs of issue 13): one process offers
# ~LANE_MAX_RATE SYN/s reliably, paced with -i u<N>, and sleeps ~HPING_OVERHEAD_US longer than
# asked (corrected); FLOOD (0) means --flood.
FLOOD = 0
LANE_MAX_RATE = 5000
HPING_OVERHEAD_US = 70.0

FULL_MULTIPLES: tuple[float, ...] = (1, 2, 4, FLOOD)
QUICK_MULTIPLES: tuple[float, ...] = (2, FLOOD)

# Issue 13's targets on this 2-core machine.
TARGET_FLAPS = 0
TARGET_REST_P99_MS = 100.0
TARGET_LEGIT_PCT = 95.0
TARGET_LEGIT_AT = 2  # ... at this multiple of the capacity
TARGET_RECOVERY_S = 3.0
# Issue 14's, for a switch-mode gateway: under the unbounded flood ...
TARGET_SWITCH_LEGIT_PCT = 90.0  # ... this share of the legitimate client's connections
TARGET_SWITCH_SPOOFED_PINS = 0  # ... and no per-flow state from spoofed SYNs


# ---- planning -----------------------------------------------------------------------------------


def lanes_for(rate: int) -> int:
    """hping3 processes for a rate: one paced process offers ~LANE_MAX_RATE reliably."""
    return 1 if rate == FLOOD else max(1, math.ceil(rate / LANE_MAX_RATE))


def interval_us(rate: int, lanes: int, overhead_us: float) -> int:
    """hping3's ``-i u<N>`` for each of ``lanes`` processes to offer ``rate`` together, given
    how much longer than asked hping3 sleeps."""
    return max(1, round(lanes * 1e6 / rate - overhead_us))


@dataclass(frozen=True)
class Step:
    label: str  # "2x" or "flood"
    rate: int  # SYN/s asked of hping3; FLOOD: --flood
    lanes: int  # hping3 processes
    interval_us: int | None  # each one's -i u<N>; None: --flood


def plan(capacity: int, multiples) -> list[Step]:
    """One step per multiple of the gateway's new-flow capacity (``FLOOD``: unbounded)."""
    steps = []
    for multiple in multiples:
        if multiple == FLOOD:
            steps.append(Step("flood", FLOOD, 1, None))
            continue
        rate = round(capacity * multiple)
        lanes = lanes_for(rate)
        steps.append(
            Step(f"{multiple:g}x", rate, lanes, interval_us(rate, lanes, HPING_OVERHEAD_US))
        )
    return steps


def parse_multiples(text: str) -> tuple[float, ...]:
    """``1,2,4,flood`` -> (1.0, 2.0, 4.0, FLOOD)."""
    multiples = []
    for raw in text.split(","):
        item = raw.strip().lower().removesuffix("x")
        if item == "flood":
            multiples.append(FLOOD)
            continue
        value = float(item)
        if value <= 0:
            raise ValueError(f"multiple {raw.strip()!r} is not positive")
        multiples.append(value)
    return tuple(multiples)


# ---- summarising --------------------------------------------------------------------------------


def percentile(values, fraction: float) -> float | None:
    """Nearest-rank percentile (None for no values)."""
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


def connections(rows: list[dict], start: float, end: float) -> dict:
    """The legitimate client's connections that started in [start, end): how many, the share
    that succeeded, and the connect times (ms) of those that connected."""
    inside = [row for row in rows if start <= row["at"] < end]
    times = [row["connect_ms"] for row in inside if row.get("connect_ms") is not None]
    ok = sum(1 for row in inside if row["ok"])
    return {
        "legit_n": len(inside),
        "legit_ok_pct": round(100.0 * ok / len(inside), 1) if inside else None,
        "connect_p50_ms": percentile(times, 0.5),
        "connect_p99_ms": percentile(times, 0.99),
    }


def flaps(health: list[tuple[float, dict[str, bool]]]) -> tuple[int, int]:
    """From ``/v1/health`` answers in time order: (state changes of any backend between two
    answers, answers that showed some backend down)."""
    changes = down = 0
    previous: dict[str, bool] = {}
    for _, states in health:
        changes += sum(1 for key, up in states.items() if key in previous and previous[key] != up)
        down += not all(states.values())
        previous = states
    return changes, down


def recovery(flood_end: float, rows: list[dict], health, window_end: float) -> float | None:
    """Seconds from the flood's end until both a connection started after it has succeeded
    and every backend is up for good (in every later answer); None if not by ``window_end``."""
    done = [row["at"] + row["ms"] / 1000 for row in rows if row["at"] >= flood_end and row["ok"]]
    connected = min(done, default=None)
    if connected is None or connected > window_end:
        return None
    after = [(at, states) for at, states in health if at >= flood_end]
    if not after or not all(after[-1][1].values()):
        return None
    up_since = flood_end
    for index, (_, states) in enumerate(after):
        if not all(states.values()):
            up_since = after[index + 1][0]
    return round(max(connected, up_since) - flood_end, 2)


def transfer(progress: list[dict], result: dict | None, start: float, end: float) -> dict:
    """An established download's figures: bytes it received during the flood, the longest
    time without progress then, and whether it completed."""
    during = [line for line in progress if start <= line["at"] <= end]
    before = [line["bytes"] for line in progress if line["at"] < start]
    first = before[-1] if before else 0
    last = during[-1]["bytes"] if during else first
    stall, since, seen = 0.0, start, first
    for line in during:
        if line["bytes"] > seen:
            stall, since, seen = max(stall, line["at"] - since), line["at"], line["bytes"]
    stall = max(stall, end - since)
    return {
        "transfer_bytes": last - first,
        "transfer_stall_s": round(stall, 2),
        "transfer_done": bool(result and result.get("ok")),
        "transfer_error": None if result is None else result.get("error"),
    }


def deltas(before: dict, after: dict) -> dict:
    """Counter differences between two snapshots (numbers only)."""
    return {
        key: after[key] - before[key]
        for key in after
        if isinstance(after[key], int | float) and isinstance(before.get(key), int | float)
    }


# ---- targets and tables -------------------------------------------------------------------------


def target_problems(steps: list[dict], mode: str = "controller") -> list[str]:
    """What misses issue 13's targets (and in switch mode issue 14's), in words (empty: all
    met)."""
    problems = []
    for s in steps:
        if mode == "switch":
            problems += switch_problems(s)
        label = s["step"]
        if s["flaps"] > TARGET_FLAPS or s["down_lines"] > 0:
            problems.append(f"{label}: {s['flaps']} backend changes ({s['down_lines']} DOWN lines)")
        if not s["transfer_done"]:
            error = s.get("transfer_error") or "still running"
            problems.append(f"{label}: the established transfer did not complete ({error})")
        if s["rest_p99_ms"] is None or s["rest_p99_ms"] >= TARGET_REST_P99_MS:
            problems.append(f"{label}: REST p99 {_n(s['rest_p99_ms'], 1)} ms")
        if s["recovery_s"] is None or s["recovery_s"] > TARGET_RECOVERY_S:
            problems.append(f"{label}: recovery {s['recovery_s']} s")
        pct = s["legit_ok_pct"]
        if s["multiple"] == TARGET_LEGIT_AT and (pct is None or pct < TARGET_LEGIT_PCT):
            problems.append(f"{label}: legitimate connections {pct}% succeeded")
    return problems


def switch_problems(s: dict) -> list[str]:
    """Issue 14's targets for one step of a switch-mode gateway: no pins from spoofed SYNs at
    any rate; the legitimate client's share under the unbounded flood."""
    problems = []
    if s.get("spoofed_pins", 0) > TARGET_SWITCH_SPOOFED_PINS:
        problems.append(f"{s['step']}: {s['spoofed_pins']:,} pins from spoofed sources")
    pct = s["legit_ok_pct"]
    if s["multiple"] == FLOOD and (pct is None or pct < TARGET_SWITCH_LEGIT_PCT):
        problems.append(f"{s['step']}: legitimate connections {pct}% succeeded (switch mode)")
    return problems


def _n(value, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    return f"{value:,.{digits}f}"


COLUMNS = (  # heading, width, how to show a step
    ("step", 6, lambda s: s["step"]),
    ("offered/s", 9, lambda s: _n(s["offered_per_s"])),
    ("legit ok%", 9, lambda s: _n(s["legit_ok_pct"], 1)),
    ("conn p50", 8, lambda s: _n(s["connect_p50_ms"], 1)),
    ("p99 ms", 7, lambda s: _n(s["connect_p99_ms"], 0)),
    ("xfer KB", 7, lambda s: _n(s["transfer_bytes"] / 1000)),
    ("stall", 5, lambda s: _n(s["transfer_stall_s"], 1)),
    ("done", 4, lambda s: _n(s["transfer_done"])),
    ("flaps", 5, lambda s: _n(s["flaps"])),
    ("down", 5, lambda s: f"{s['down_polls']}/{s['polls']}"),
    ("DOWN", 4, lambda s: _n(s["down_lines"])),
    ("REST p99", 8, lambda s: _n(s["rest_p99_ms"], 1)),
    ("pkt-in/s", 8, lambda s: _n(s["packet_ins_per_s"])),
    ("intake lost", 11, lambda s: _n(s["intake_lost"])),
    ("meter drop", 10, lambda s: _n(s["meter_dropped"]) if s["meters"] else "no meter"),
    ("pin ovfl", 8, lambda s: _n(s["packet_in_overflow"] + s["rconn_overflow"])),
    ("dp lost", 7, lambda s: _n(s["dp_lost"])),
    ("dp flows", 8, lambda s: _n(s.get("datapath_flows"))),
    ("spoof pins", 10, lambda s: _n(s.get("spoofed_pins"))),
    ("disc", 4, lambda s: _n(s["disconnects"])),
    ("recovery", 8, lambda s: "never" if s["recovery_s"] is None else f"{s['recovery_s']:.1f}s"),
)
TARGET_ROW = {
    "legit ok%": f">={TARGET_LEGIT_PCT:g}@{TARGET_LEGIT_AT}x",
    "done": "yes",
    "flaps": str(TARGET_FLAPS),
    "DOWN": "0",
    "REST p99": f"<{TARGET_REST_P99_MS:g}",
    "disc": "0",
    "recovery": f"<={TARGET_RECOVERY_S:g}s",
    "spoof pins": "0 (switch)",
}


def table(steps: list[dict]) -> list[str]:
    """One line per step, a heading and the targets' line."""
    lines = [" ".join(f"{head:>{width}s}" for head, width, _ in COLUMNS)]
    for s in steps:
        lines.append(" ".join(f"{show(s):>{width}s}" for _, width, show in COLUMNS))
    lines.append(" ".join(f"{TARGET_ROW.get(head, ''):>{width}s}" for head, width, _ in COLUMNS))
    lines[-1] = "target" + lines[-1][6:]
    return lines


SIDE_BY_SIDE = (  # heading, how to show a step, the target's text
    ("offered/s", lambda s: _n(s["offered_per_s"]), ""),
    ("legit ok%", lambda s: _n(s["legit_ok_pct"], 0),
     f">={TARGET_LEGIT_PCT:g} at 2x; switch >={TARGET_SWITCH_LEGIT_PCT:g} in flood"),
    ("conn p99 ms", lambda s: _n(s["connect_p99_ms"], 0), ""),
    ("flaps", lambda s: _n(s["flaps"]), "0"),
    ("xfer done", lambda s: _n(s["transfer_done"]), "yes"),
    ("REST p99 ms", lambda s: _n(s["rest_p99_ms"], 0), f"<{TARGET_REST_P99_MS:g}"),
    ("pkt-in/s", lambda s: _n(s["packet_ins_per_s"]), ""),
    ("dp flows", lambda s: _n(s.get("datapath_flows")), ""),
    ("spoofed pins", lambda s: _n(s.get("spoofed_pins")), "0 (switch)"),
    ("recovery s", lambda s: "never" if s["recovery_s"] is None else f"{s['recovery_s']:.1f}",
     f"<={TARGET_RECOVERY_S:g}"),
)  # fmt: skip


def side_by_side(*runs: list[dict]) -> list[str]:
    """Each figure as "first / second [/ ...]" (builds, or modes, in run order), one line per
    step of the last run (matched by label), then targets; each column as wide as its widest
    cell."""
    by_label = [{s["step"]: s for s in run} for run in runs[:-1]]
    rows = [["step", *(head for head, _, _ in SIDE_BY_SIDE)]]
    for s in runs[-1]:
        matched = [earlier.get(s["step"]) for earlier in by_label] + [s]
        cells = [" / ".join(show(m) if m else "-" for m in matched) for _, show, _ in SIDE_BY_SIDE]
        rows.append([s["step"], *cells])
    rows.append(["target", *(target for _, _, target in SIDE_BY_SIDE)])
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return [
        " ".join(f"{cell:>{width}s}" for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
