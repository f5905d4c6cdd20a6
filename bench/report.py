"""The new-flow benchmark's report: tables, checks, targets, a summary for the README, JSON.

Figures come in as the phases left them (``bench_newflow.bench_controller``'s dicts,
``RebuildResult``); nothing here measures.  The rebuild phase's own account is
``rebuild_report.py``'s; its targets and its rows of the README's summary are here, beside the
new-flow phases'.
"""

from __future__ import annotations

import os

from bench.phase import PhaseResult, percentile
from bench.procs import DEFAULT_HUB
from bench.rebuild import RebuildResult
from ryu_app.core.pipeline import COOKIE_KIND_SHIFT, COOKIE_TAG, KIND_FLOW

TARGET_FLOWS_PER_S = 20_000
TARGET_P99_MS = 2.0
TARGET_BYTES_PER_ENTRY = 200
TARGET_RATE_HOLDS = 0.9  # "the rate holds": with the big table, at least this share of before
TARGET_REBUILD_P99_MS = 50.0
OTHER_LOAD_WARNING = 0.15  # cores busy outside the switch and the controller
LOCKSTEP_FLOW_COOKIE = (COOKIE_TAG >> COOKIE_KIND_SHIFT) | KIND_FLOW  # cookie >> 40 of its rules


def label(name: str) -> str:
    """The label of a run: lockstep_native -> lockstep (native)."""
    if name.startswith("lockstep_"):
        return f"lockstep ({name.removeprefix('lockstep_')})"
    return {"reference": "reference (os-ken)", "null": "null (the tool)"}.get(name, name)


# ---- the new-flow phases ----------------------------------------------------------------------


def ms(value: float | None) -> str:
    return f"{value:7.2f} ms" if value is not None else "      - ms"


def p50_p99(phase: PhaseResult) -> tuple[float | None, float | None]:
    return phase.percentile_ms(0.5), phase.percentile_ms(0.99)


def cpu_per_flow_us(phase: PhaseResult) -> float:
    """Controller CPU per new flow: unlike flows/s, barely moved by other load on the machine."""
    return phase.controller_cpu / phase.flows_per_s * 1e6 if phase.flows_per_s else 0.0


def bytes_per_entry(memory: dict) -> float | None:
    """Resident bytes the controller gained per entry its flow table gained in the prefill."""
    added = memory["entries_after"] - memory["entries_before"]
    if not added or memory["rss_after"] is None or memory["rss_before"] is None:
        return None
    return (memory["rss_after"] - memory["rss_before"]) / added


def rate_kept(result: dict) -> float | None:
    """Sustained flows/s with the prefilled table over the rate before the prefill."""
    before = result["memory"].get("before")
    if before is None or not before.flows_per_s:
        return None
    return result["sustained"].flows_per_s / before.flows_per_s


def summarise(name: str, result: dict) -> dict:
    sustained, latency, counters = result["sustained"], result["latency"], result["counters"]
    p50, p99 = p50_p99(latency)
    summary = {
        "flows_per_s": round(sustained.flows_per_s),
        "closed_loop_p50_ms": round(sustained.percentile_ms(0.5) or 0, 3),
        "latency_rate_per_s": round(latency.offered_per_s),
        "latency_achieved_per_s": round(latency.flows_per_s),
        "p50_ms": round(p50 or 0, 3),
        "p99_ms": round(p99 or 0, 3),
        "max_ms": round(latency.latencies_ms[-1] if latency.latencies_ms else 0, 3),
        "incomplete": sustained.incomplete + latency.incomplete,
        "no_flow_mod": sustained.no_flow_mod + latency.no_flow_mod,
        "not_offered": latency.not_offered,
        "duplicates": counters.duplicates,
        "foreign_packet_outs": counters.foreign_packet_outs,
        "controller_cpu": round(sustained.controller_cpu, 2),
        "controller_us_per_flow": round(cpu_per_flow_us(sustained), 1),
        "switch_cpu": round(sustained.switch_cpu, 2),
        "other_cpu": round(max(sustained.other_cpu, latency.other_cpu), 2),
        "log_errors": result["log_problems"][0],
        "prefill_flows": result["prefill_flows"],
        "prefill_s": round(result["prefill_s"], 1),
    }
    if name.startswith("lockstep"):
        kinds = counters.flow_cookie_kinds
        summary["wrong_cookies"] = sum(n for k, n in kinds.items() if k != LOCKSTEP_FLOW_COOKIE)
    memory = result["memory"]
    if memory:
        per_entry = bytes_per_entry(memory)
        summary.update(
            flows_per_s_before_prefill=round(memory["before"].flows_per_s),
            rate_kept=round(rate_kept(result) or 0, 3),
            rss_start_mb=round((memory["rss_start"] or 0) / 2**20, 1),
            rss_before_mb=round((memory["rss_before"] or 0) / 2**20, 1),
            rss_after_mb=round((memory["rss_after"] or 0) / 2**20, 1),
            entries_before=memory["entries_before"],
            entries_after=memory["entries_after"],
            evictions=memory["evictions"],
            bytes_per_entry=None if per_entry is None else round(per_entry),
        )
    return {f"{name}_{key}": value for key, value in summary.items()}


def print_table(results: dict) -> None:
    print(
        f"  {'':20s} {'new flows/s':>11s} {'latency at':>11s} {'p50':>10s} {'p99':>10s} "
        f"{'max':>10s} {'CPU/flow':>9s}   cores: controller switch other"
    )
    for name, result in results.items():
        sustained, latency = result["sustained"], result["latency"]
        p50, p99 = p50_p99(latency)
        worst = latency.latencies_ms[-1] if latency.latencies_ms else None
        print(
            f"  {label(name):20s} {sustained.flows_per_s:11,.0f} {latency.offered_per_s:9,.0f}/s "
            f"{ms(p50)} {ms(p99)} {ms(worst)} {cpu_per_flow_us(sustained):6.0f} us"
            f"   {sustained.controller_cpu:16.2f} "
            f"{sustained.switch_cpu:6.2f} {max(sustained.other_cpu, latency.other_cpu):5.2f}"
        )
    ours = default_lockstep(results)
    if ours and "reference" in results:
        mine, ref = results[ours], results["reference"]
        (p50, p99), (ref_p50, ref_p99) = p50_p99(mine["latency"]), p50_p99(ref["latency"])
        print(
            f"  {ours.removeprefix('lockstep_') + ' / reference':20s} "
            f"{ratio(mine['sustained'].flows_per_s, ref['sustained'].flows_per_s):>11s} "
            f"{'':11s} {ratio(p50, ref_p50):>10s} {ratio(p99, ref_p99):>10s} {'':10s} "
            f"{ratio(cpu_per_flow_us(mine['sustained']), cpu_per_flow_us(ref['sustained'])):>9s}"
        )


def default_lockstep(results: dict) -> str | None:
    """The Lockstep run the unqualified ``lockstep_*`` figures are: the default hub's, else
    the first one measured."""
    names = [name for name in results if name.startswith("lockstep_")]
    preferred = f"lockstep_{DEFAULT_HUB}"
    return preferred if preferred in names else (names[0] if names else None)


def ratio(ours: float | None, reference: float | None) -> str:
    return f"{ours / reference:.2f}x" if ours and reference else "-"


def print_checks(results: dict) -> None:
    """What came back besides the answers, and anything wrong with the answers."""
    for name, result in results.items():
        counters, sustained, latency = result["counters"], result["sustained"], result["latency"]
        errors, first = result["log_problems"]
        print(
            f"  {name}: {counters.flow_mods:,} flow-mods, {counters.packet_outs:,} packet-outs "
            f"({counters.foreign_packet_outs} not for a SYN of ours), "
            f"{counters.duplicates} duplicates, {sustained.incomplete + latency.incomplete} "
            f"incomplete ({sustained.no_flow_mod + latency.no_flow_mod} without flow-mod), "
            f"{latency.not_offered} not offered, {errors} error line(s) in its log"
        )
        if name.startswith("lockstep"):
            kinds = {f"{k << 40:#x}": n for k, n in counters.flow_cookie_kinds.items()}
            if set(counters.flow_cookie_kinds) - {LOCKSTEP_FLOW_COOKIE}:
                print(f"      per-flow rules with a cookie outside Lockstep's flow kind: {kinds}")
        for line in first:
            print(f"      log: {line[:160]}")
        if counters.other_messages or counters.errors:
            print(f"      other messages {dict(counters.other_messages)}, errors {counters.errors}")
        if latency.flows_per_s < 0.95 * latency.offered_per_s:
            print(
                f"      overloaded: {latency.offered_per_s:,.0f}/s offered, "
                f"{latency.flows_per_s:,.0f}/s answered; the latency is queueing"
            )
        if sustained.switch_cpu > 0.8:
            print("      warning: the fake switch was busy >80%: the figure may be the tool's")
        other = max(sustained.other_cpu, latency.other_cpu)
        if other > OTHER_LOAD_WARNING:
            print(
                f"      warning: other processes kept {other:.1f} cores busy meanwhile "
                f"(of {os.cpu_count()}): figures are skewed, latency tails most"
            )


def mb(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:,.1f} MB"


def print_memory(results: dict) -> None:
    for name, result in results.items():
        memory = result["memory"]
        if not memory:
            continue
        per_entry, kept = bytes_per_entry(memory), rate_kept(result)
        added = memory["entries_after"] - memory["entries_before"]
        print(
            f"  {label(name)}: resident {mb(memory['rss_start'])} at start, "
            f"{mb(memory['rss_before'])} with {memory['entries_before']:,} entries, "
            f"{mb(memory['rss_after'])} with {memory['entries_after']:,} "
            f"({memory['evictions']:,} evicted at capacity)"
        )
        print(
            f"    {'-' if per_entry is None else f'{per_entry:,.0f}'} bytes per entry "
            f"(resident memory gained / {added:,} entries gained); new flows/s "
            f"{memory['before'].flows_per_s:,.0f} before the prefill, "
            f"{result['sustained'].flows_per_s:,.0f} after "
            f"({'-' if kept is None else f'{kept:.0%}'})"
        )


def targets(name: str, result: dict | None, rebuilt: RebuildResult | None) -> list:
    """(label, met, figure) of issue 5's targets for one Lockstep hub."""
    verdicts = []
    if result:
        sustained, latency = result["sustained"], result["latency"]
        p99 = latency.percentile_ms(0.99)
        prefilled = f" with {result['prefill_flows']:,} flows" if result["prefill_flows"] else ""
        verdicts += [
            (
                f">= {TARGET_FLOWS_PER_S:,} new flows/s{prefilled}",
                sustained.flows_per_s >= TARGET_FLOWS_PER_S,
                f"{sustained.flows_per_s:,.0f}",
            ),
            (
                f"p99 <= {TARGET_P99_MS} ms at {latency.offered_per_s:,.0f}/s",
                p99 is not None and p99 <= TARGET_P99_MS,
                ms(p99).strip(),
            ),
        ]
        if result["memory"]:
            per_entry, kept = bytes_per_entry(result["memory"]), rate_kept(result)
            verdicts += [
                (
                    f"<= {TARGET_BYTES_PER_ENTRY} bytes per flow-table entry",
                    per_entry is not None and per_entry <= TARGET_BYTES_PER_ENTRY,
                    "-" if per_entry is None else f"{per_entry:,.0f}",
                ),
                (
                    f"the rate holds{prefilled} (>= {TARGET_RATE_HOLDS:.0%} of before)",
                    kept is not None and kept >= TARGET_RATE_HOLDS,
                    "-" if kept is None else f"{kept:.0%}",
                ),
            ]
    if rebuilt:
        plan = rebuilt.plan
        for span, values in (
            ("kill -> all tables in", rebuilt.window_ms),
            ("first mark-down -> all tables in", rebuilt.rebuild_ms),
        ):
            p99 = percentile(values, 0.99)
            verdicts.append(
                (
                    f"p99 <= {TARGET_REBUILD_P99_MS:g} ms while {plan.vips} VIPs x "
                    f"{plan.backends} backends are rebuilt ({span})",
                    p99 is not None and p99 <= TARGET_REBUILD_P99_MS and not rebuilt.problem,
                    ms(p99).strip(),
                )
            )
        verdicts += [
            (
                "no flow to the dead VM after it was marked down",
                rebuilt.dead_flows_after_down == 0 and not rebuilt.problem,
                f"{rebuilt.dead_flows_after_down}",
            ),
            (
                f"its earlier flows' rules kept for the grace ({plan.grace_s:g} s)",
                rebuilt.retired_early == 0 and not rebuilt.problem,
                f"{rebuilt.retired_early} of {len(rebuilt.retirements)} deletes sooner",
            ),
        ]
    return verdicts


def print_targets(results: dict, rebuilds: dict) -> None:
    for name in dict.fromkeys([n for n in results if n.startswith("lockstep")] + list(rebuilds)):
        verdicts = targets(name, results.get(name), rebuilds.get(name))
        print(f"targets ({label(name)}):")
        for text, met, figure in verdicts:
            print(f"  {text}: {'met' if met else 'NOT met'} ({figure})")


class SummaryRows:
    """The README's summary table: a column per controller, a row per figure; a row is kept
    only if some controller has its figure."""

    def __init__(self, names: list[str]):
        self.names = names
        self.rows: list[tuple[str, dict, str]] = []

    def add(self, title: str, target: str, figure) -> None:
        """``figure(name)``: the cell of that controller, None if it has none."""
        cells = {}
        for name in self.names:
            value = figure(name)
            if value is not None:
                cells[name] = value
        if cells:
            self.rows.append((title, cells, target))


def print_summary(results: dict, rebuilds: dict) -> None:
    """One Markdown table for the README: a column per controller, a row per figure."""
    names = list(dict.fromkeys(list(results) + list(rebuilds)))
    table = SummaryRows(names)
    _new_flow_rows(table, results)
    _rebuild_rows(table, rebuilds)
    print("summary (Markdown, for the README):")
    print("| | " + " | ".join(label(name) for name in names) + " | target |")
    print("| --- " * (len(names) + 2) + "|")
    for title, cells, target in table.rows:
        values = " | ".join(cells.get(name, "") for name in names)
        print(f"| {title} | {values} | {target} |")


def _new_flow_rows(table: SummaryRows, results: dict) -> None:
    """Rate, latency and CPU per flow; with a prefill, the rate before and after and the
    memory per flow-table entry."""

    def new_flow(function):
        return lambda name: function(results[name]) if name in results else None

    def lat(phase: PhaseResult) -> str:
        p50, p99 = p50_p99(phase)
        return f"{p50 or 0:.2f} / {p99 or 0:.2f} ms"

    table.add(
        "new flows/s (closed loop)",
        f">= {TARGET_FLOWS_PER_S:,}",
        new_flow(lambda r: f"{r['sustained'].flows_per_s:,.0f}"),
    )
    table.add(
        "first-packet p50 / p99 at half that rate",
        f"p99 <= {TARGET_P99_MS:g} ms",
        new_flow(lambda r: lat(r["latency"])),
    )
    table.add(
        "controller CPU per new flow",
        "",
        new_flow(lambda r: f"{cpu_per_flow_us(r['sustained']):.0f} µs"),
    )
    prefill = next((r["prefill_flows"] for r in results.values() if r["memory"]), 0)
    table.add(
        f"new flows/s before / after {prefill:,} more flows",
        f">= {TARGET_RATE_HOLDS:.0%} after",
        new_flow(
            lambda r: (
                f"{r['memory']['before'].flows_per_s:,.0f} / {r['sustained'].flows_per_s:,.0f}"
                if r["memory"]
                else None
            )
        ),
    )
    table.add(
        "resident bytes per flow-table entry",
        f"<= {TARGET_BYTES_PER_ENTRY}",
        new_flow(
            lambda r: (
                f"{bytes_per_entry(r['memory']):,.0f}"
                if r["memory"] and bytes_per_entry(r["memory"]) is not None
                else None
            )
        ),
    )


def _rebuild_rows(table: SummaryRows, rebuilds: dict) -> None:
    """The rebuild phase's latency, detection and landing times, flows to the dead VM."""
    plan = next(iter(rebuilds.values())).plan if rebuilds else None
    if not plan:
        return

    def rebuilt(function):
        return lambda name: function(rebuilds[name]) if name in rebuilds else None

    def spread(values: list[float], unit: str = "ms") -> str:
        p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
        if p50 is None or p99 is None:
            return "-"
        return f"{p50:.2f} / {p99:.2f} / {values[-1]:.2f} {unit}"

    title = f"{plan.vips} VIPs x {plan.backends} backends"
    table.add(
        f"rebuild of {title}, kill -> all tables in: p50 / p99 / max",
        f"p99 <= {TARGET_REBUILD_P99_MS:g} ms",
        rebuilt(lambda r: spread(r.window_ms)),
    )
    table.add(
        "rebuild, first mark-down -> all tables in: p50 / p99 / max",
        f"p99 <= {TARGET_REBUILD_P99_MS:g} ms",
        rebuilt(lambda r: spread(r.rebuild_ms)),
    )
    table.add(
        "rebuild: last VIP marks the VM down / all tables in, after the kill",
        f"<= {plan.detection_s:g} s (interval x fall + timeout) / ",
        rebuilt(lambda r: f"{(r.detection_s or (0, 0))[1]:.1f} s / {r.window_s or 0:.1f} s"),
    )
    table.add(
        "rebuild: a VIP's table in after its mark-down, p50 / p99 / max",
        "",
        rebuilt(lambda r: spread(r.install_delays, "s")),
    )
    table.add(
        "rebuild: flows to the dead VM after its mark-down",
        "0",
        rebuilt(lambda r: f"{r.dead_flows_after_down}"),
    )
