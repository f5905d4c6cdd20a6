"""The pure parts of ``bench/bench_ovs.py``: its load steps, a step's figures from the counters
at both ends and the generators' reports, and the tables (one per mode, then the modes side by
side with the ratio issue 14 asks about).  No I/O: the tests feed them made-up figures.
"""

from __future__ import annotations

import math

MAX = 0  # the rate that means "as fast as the generators go"
FULL_RATES = (2000, 5000, 10_000, 20_000, MAX)
QUICK_RATES = (5000, MAX)
LANE_MAX_RATE = 8000  # connections/s one generator process paces reliably here
MAX_LANES = 2  # unpaced: two generators (the machine has two cores)
MAX_INFLIGHT = 1000  # per unpaced generator
TARGET_RATIO = 3.0  # issue 14: switch mode >= 3x controller mode's new flows/s
SUCCESS_OK_PCT = 99.0  # a step "kept up" when this share of the handshakes completed


# ---- planning -----------------------------------------------------------------------------------


def step_label(rate: int) -> str:
    return "max" if rate == MAX else f"{rate / 1000:g}k/s"


def lanes_for(rate: int) -> int:
    """Generator processes for a rate (unpaced: ``MAX_LANES``)."""
    return MAX_LANES if rate == MAX else max(1, math.ceil(rate / LANE_MAX_RATE))


def parse_rates(text: str) -> list[int]:
    """``2000,5k,max`` -> [2000, 5000, MAX]."""
    rates = []
    for raw in text.split(","):
        item = raw.strip().lower()
        if item == "max":
            rates.append(MAX)
            continue
        rate = round(float(item[:-1]) * 1000) if item.endswith("k") else int(item)
        if rate <= 0:
            raise ValueError(f"rate {item!r} is not positive")
        rates.append(rate)
    return rates


def parse_modes(text: str) -> list[str]:
    """``controller,switch`` -> ["controller", "switch"]: VIP modes, each once, in order."""
    modes = [item.strip() for item in text.split(",") if item.strip()]
    if not modes or len(set(modes)) != len(modes) or set(modes) - {"controller", "switch"}:
        raise ValueError(f"{text!r}: give controller, switch or both, each once")
    return modes


# ---- a step's figures ---------------------------------------------------------------------------


def parse_passive_opens(snmp: str) -> int:
    """``/proc/net/snmp`` of a namespace: ``Tcp: PassiveOpens``, the handshakes its listeners
    completed (counted when the last ACK makes the child socket)."""
    lines = [line.split() for line in snmp.splitlines() if line.startswith("Tcp:")]
    if len(lines) < 2:
        raise ValueError("no Tcp: lines in /proc/net/snmp")
    return int(lines[1][lines[0].index("PassiveOpens")])


def combine_lanes(lanes: list[dict]) -> dict:
    """The generators' reports as one: counts summed, the longest run, the worst p99."""
    summed = ("started", "established", "failed", "timed_out", "behind", "cpu_s")
    total = {key: sum(lane[key] for lane in lanes) for key in summed}
    total["seconds"] = max((lane["seconds"] for lane in lanes), default=0.0)
    p50s = [lane["connect_p50_ms"] for lane in lanes if lane["connect_p50_ms"] is not None]
    p99s = [lane["connect_p99_ms"] for lane in lanes if lane["connect_p99_ms"] is not None]
    total["connect_p50_ms"] = max(p50s, default=None)
    total["connect_p99_ms"] = max(p99s, default=None)
    return total


def step_figures(before: dict, after: dict, load: dict, cpu: dict[str, float]) -> dict:
    """One step, flat (for the tables and the JSON): handshakes the VMs completed and the
    generators saw, the controller's and OVS's work, CPU in cores."""
    seconds = load["seconds"] or 1.0

    def delta(section: str, key: str) -> int:
        return round(after[section].get(key, 0) - before[section].get(key, 0))

    handshakes = after["passive_opens"] - before["passive_opens"]
    packet_ins = delta("metrics", "packet_ins_total")
    figures = {
        "seconds": round(seconds, 2),
        "started": load["started"],
        "started_per_s": round(load["started"] / seconds),
        "established": load["established"],
        "established_per_s": round(load["established"] / seconds),
        "success_pct": round(100 * load["established"] / load["started"], 1)
        if load["started"]
        else None,
        "failed": load["failed"],
        "timed_out": load["timed_out"],
        "behind": load["behind"],
        "connect_p50_ms": load["connect_p50_ms"],
        "connect_p99_ms": load["connect_p99_ms"],
        "handshakes": handshakes,
        "handshakes_per_s": round(handshakes / seconds),
        "packet_ins": packet_ins,
        "packet_ins_per_s": round(packet_ins / seconds),
        "flows_installed": delta("metrics", "flows_installed_total"),
        "upcalls": delta("pmd", "miss with success upcall"),
        "megaflow_hits": delta("pmd", "megaflow hits"),
        "rules_after": after["rules"],  # per-flow rules (installed or learned pins) at the end
        # upcall/show's "max": the most datapath flows since the lab's OVS started, not per step.
        "datapath_flows_max": after["upcall"].get("max", 0),
        "intake_lost": after["intake_dropped"] - before["intake_dropped"],
        "controller_errors": delta("metrics", "handler_errors_total"),
        "cpu_load": round(load["cpu_s"] / seconds, 2),
    }
    figures.update({f"cpu_{name}": round(value, 2) for name, value in cpu.items()})
    # The machine's busy time besides the gateway and the generators: the kernel's packet
    # work (veths, VXLAN, the VMs' and router's TCP/IP), the VMs' sinks, other processes.
    ours = cpu["ovs"] + cpu["controller"] + figures["cpu_load"]
    figures["cpu_rest"] = round(max(0.0, cpu["machine"] - ours), 2)
    # What one new flow cost the gateway (OVS and the controller), and OVS's main thread
    # (busy, not waiting): the capacity a gateway with its own cores would have follows.
    rate = figures["handshakes_per_s"]
    figures["gateway_us_per_flow"] = (
        round(1e6 * (cpu["ovs"] + cpu["controller"]) / rate) if rate else None
    )
    figures["main_us_per_flow"] = round(1e6 * cpu["ovs_main"] / rate) if rate else None
    return figures


# ---- tables -------------------------------------------------------------------------------------


def _n(value, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


COLUMNS = (  # heading, width, how to show a step
    ("step", 6, lambda s: s["step"]),
    ("started/s", 9, lambda s: _n(s["started_per_s"])),
    ("hs/s", 7, lambda s: _n(s["handshakes_per_s"])),
    ("ok %", 6, lambda s: _n(s["success_pct"], 1)),
    ("timeout", 7, lambda s: _n(s["timed_out"])),
    ("p99 ms", 7, lambda s: _n(s["connect_p99_ms"], 1)),
    ("pkt-in/s", 8, lambda s: _n(s["packet_ins_per_s"])),
    ("upcalls", 8, lambda s: _n(s["upcalls"])),
    ("rules", 7, lambda s: _n(s["rules_after"])),
    ("dp peak", 7, lambda s: _n(s["datapath_flows_max"])),
    ("intake lost", 11, lambda s: _n(s["intake_lost"])),
    ("ovs-main", 8, lambda s: _n(s["cpu_ovs_main"], 2)),
    ("(waited)", 8, lambda s: _n(s["cpu_ovs_main_wait"], 2)),
    ("revalid.", 8, lambda s: _n(s["cpu_ovs_revalidators"], 2)),
    ("ovs", 5, lambda s: _n(s["cpu_ovs"], 2)),
    ("ctrl", 5, lambda s: _n(s["cpu_controller"], 2)),
    ("load gen", 8, lambda s: _n(s["cpu_load"], 2)),
    ("rest", 5, lambda s: _n(s["cpu_rest"], 2)),
    ("machine", 7, lambda s: _n(s["cpu_machine"], 2)),
)


def table(steps: list[dict]) -> list[str]:
    """A heading and one line per step (CPU in cores)."""
    lines = [" ".join(f"{head:>{width}s}" for head, width, _ in COLUMNS)]
    for s in steps:
        lines.append(" ".join(f"{show(s):>{width}s}" for _, width, show in COLUMNS))
    return lines


def peak(steps: list[dict]) -> dict | None:
    """The step with the most handshakes/s: the mode's new-flow capacity here."""
    return max(steps, key=lambda s: s["handshakes_per_s"], default=None)


def ratio(switch: float, controller: float) -> float | None:
    return round(switch / controller, 2) if controller else None


SIDE_BY_SIDE = (  # heading, how to show a step
    ("handshakes/s", lambda s: _n(s["handshakes_per_s"])),
    ("ok %", lambda s: _n(s["success_pct"], 1)),
    ("pkt-in/s", lambda s: _n(s["packet_ins_per_s"])),
    ("ovs-vswitchd cores", lambda s: _n(s["cpu_ovs"], 2)),
    ("controller cores", lambda s: _n(s["cpu_controller"], 2)),
    ("gateway us/flow", lambda s: _n(s["gateway_us_per_flow"])),
    ("ovs-main us/flow", lambda s: _n(s["main_us_per_flow"])),
)


def side_by_side(controller: list[dict], switch: list[dict]) -> list[str]:
    """Each figure as "controller / switch" per step (matched by label), the handshakes'
    ratio, then the peaks' ratio against issue 14's target."""
    other = {s["step"]: s for s in controller}
    rows = [["step", *(head for head, _ in SIDE_BY_SIDE), "ratio"]]
    for s in switch:
        c = other.get(s["step"])
        cells = [f"{show(c) if c else '-'} / {show(s)}" for _, show in SIDE_BY_SIDE]
        r = ratio(s["handshakes_per_s"], c["handshakes_per_s"]) if c else None
        rows.append([s["step"], *cells, "-" if r is None else f"{r:.2f}x"])
    top_c, top_s = peak(controller), peak(switch)
    if top_c and top_s:
        r = ratio(top_s["handshakes_per_s"], top_c["handshakes_per_s"])
        cells = [f"{show(top_c)} / {show(top_s)}" for _, show in SIDE_BY_SIDE]
        rows.append(["peak", *cells, "-" if r is None else f"{r:.2f}x"])
    rows.append(["target", *([""] * len(SIDE_BY_SIDE)), f">={TARGET_RATIO:g}x"])
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return [
        " ".join(f"{cell:>{width}s}" for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]


def ratio_verdict(controller: list[dict], switch: list[dict]) -> str:
    """One line: the peaks' ratio against the target."""
    top_c, top_s = peak(controller), peak(switch)
    if not (top_c and top_s):
        return "ratio: not measured (a mode has no steps)"
    r = ratio(top_s["handshakes_per_s"], top_c["handshakes_per_s"])
    met = r is not None and r >= TARGET_RATIO
    return (
        f"peak new flows/s: controller {top_c['handshakes_per_s']:,} ({top_c['step']}), "
        f"switch {top_s['handshakes_per_s']:,} ({top_s['step']}): {r}x "
        f"({'meets' if met else 'MISSES'} the >= {TARGET_RATIO:g}x target)"
    )
