"""Markdown tables of the simulator's results, for the README."""

from __future__ import annotations

from collections.abc import Sequence

from fleetsim.outcome import NOT_BLAMED, REASONS, Outcome
from fleetsim.rule import MECHANISMS

ASSUMES = {
    "off": "nothing (today's behaviour)",
    "previous": "nothing; breaks connections begun on the new owner after the change that move",
    "duplicate": "the VM rule: VMs drop TCP non-SYN segments conntrack sees as new/invalid",
    "duplicate-no-vm-rule": "nothing; a VM without the connection answers RST",
    "exchange": "gateways talk to each other (breaks 'controllers share no state')",
}

RESTART_NOTE = (
    "\nRestart events: a restarted gateway starts with no flow entries and a table built from "
    "its configuration with every backend healthy (a drained backend keeps weight 0).  Rows "
    "without a suffix: its table history is lost (a controller before issue 16's state-file "
    "history).  ', history kept' (the controller now): the state file keeps, per VIP, the "
    "specs of the tables replaced within the window (with the time each was replaced) and of "
    "the table in use when it stopped (as replaced at the restart), and the gateway rebuilds "
    "them into its history (vectorized engine only: the exact engine does not model it yet)."
)


def table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def by_event(outcomes: list[Outcome]) -> dict[str, dict[str, Outcome]]:
    grouped: dict[str, dict[str, Outcome]] = {}
    for result in outcomes:
        grouped.setdefault(result.event, {})[result.mechanism] = result
    return grouped


def broken_table(outcomes: list[Outcome]) -> str:
    """Events x mechanisms: connections the balancer broke (lost with a failed VM apart)."""
    grouped = by_event(outcomes)
    mechanisms = [m for m in MECHANISMS if any(m in row for row in grouped.values())]
    rows = []
    for event, row in grouped.items():
        any_result = next(iter(row.values()))
        cells = [f"{row[m].broken:,}" if m in row else "" for m in mechanisms]
        rows.append([event, f"{any_result.open_at_zero:,}", *cells, f"{any_result.lost_with_vm:,}"])
    header = ["event", "open at 0", *mechanisms, "lost with the failed VM (any mechanism)"]
    return table(header, rows)


def reasons_table(outcomes: list[Outcome]) -> str:
    """Why: one row per event, mechanism and reason with a non-zero count."""
    rows = []
    for result in outcomes:
        for reason, count in sorted(result.by_reason.items()):
            blamed = "no" if reason in NOT_BLAMED else "yes"
            rows.append([result.event, result.mechanism, REASONS[reason], blamed, f"{count:,}"])
    return table(["event", "mechanism", "why", "balancer's doing", "connections"], rows)


def costs_table(outcomes: list[Outcome]) -> str:
    """Per mechanism, the most any event cost."""
    rows = []
    for mechanism in MECHANISMS:
        results = [r for r in outcomes if r.mechanism == mechanism]
        if not results:
            continue
        worst_dup = max(results, key=lambda r: r.costs.duplicated_flows)
        dup = worst_dup.costs
        mean = dup.duplicated_seconds / dup.duplicated_flows if dup.duplicated_flows else 0.0
        history = max(r.costs.history_bytes for r in results)
        messages = max(r.costs.exchange_messages for r in results)
        held = max(r.costs.exchange_entries_held for r in results)
        rows.append(
            [
                mechanism,
                f"{history / 1024:,.0f} KiB",
                f"{dup.duplicated_flows:,}"
                + (f" ({worst_dup.event})" if dup.duplicated_flows else ""),
                f"{mean:.1f} s",
                f"{messages:,}",
                f"{held:,}",
                ASSUMES[mechanism],
            ]
        )
    header = [
        "mechanism",
        "table history per VIP per gateway (max)",
        "flows duplicated (worst event)",
        "mean duplication time",
        "exchange messages (worst event)",
        "pushed entries held per gateway (max)",
        "assumes",
    ]
    return table(header, rows)


def resilience_table(curve: dict[int, list[tuple]], repeats: int) -> str:
    rows = []
    sizes = sorted(curve)
    for position in range(len(curve[sizes[0]])):
        percent = curve[sizes[0]][position][0]
        cells = [f"{percent:.1f} %"]
        for size in sizes:
            _, remaining, everything, paper = curve[size][position]
            cells += [
                f"{remaining:.2f} %",
                f"{everything:.2f} %",
                "" if paper is None else f"~{paper:.2f} %",
            ]
        rows.append(cells)
    header = ["backends failed"]
    for size in sizes:
        header += [
            f"{size:,}: ours (remaining')",
            f"{size:,}: ours (all)",
            f"{size:,}: paper (read off plot)",
        ]
    note = (
        f"\n\nOurs: mean of {repeats} random draws per point, `ryu_app.core.maglev` tables over "
        "1,000 backends.  'remaining'': entries of backends that did not fail and changed owner "
        "(the paper's measure: its values are below the failed share); 'all': every changed "
        "entry.  Paper: Eisenbud et al., NSDI 2016, Figure 12 (a plot, no table): values read "
        "by eye, about +-0.05 points."
    )
    return table(header, rows) + note
