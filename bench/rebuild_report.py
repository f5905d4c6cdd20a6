"""The rebuild phase's account (``rebuild.py`` measures it): printed, the set-up and load, what
may skew the figures, when the VIPs noticed the dead VM and their tables landed, latency before
and during, where flows went (``print_rebuild``); and the same as flat JSON keys
(``summarise_rebuild``).  Its targets and its rows of the README's summary are ``report.py``'s,
with the new-flow phases'.
"""

from __future__ import annotations

import os

from bench.phase import percentile
from bench.rebuild import RebuildResult, overloading, slow_seconds
from bench.rebuild_watch import POLL_SECONDS
from bench.report import OTHER_LOAD_WARNING, TARGET_REBUILD_P99_MS, label


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} ms"


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def print_rebuild(name: str, result: RebuildResult) -> None:
    """The rebuild phase's account: the set-up and load, what may skew it, when the VIPs
    noticed and their tables landed, latency before and during, where flows went."""
    for line in (
        _rebuild_setting(name, result)
        + _rebuild_caveats(result)
        + _rebuild_timing(result)
        + _rebuild_latency(result)
        + _rebuild_outcome(result)
    ):
        print(line)


def _rebuild_setting(name: str, result: RebuildResult) -> list[str]:
    plan, load = result.plan, result.load
    tables = "one shared table" if plan.shared_tables else f"{plan.vips} distinct tables"
    sustained = (
        "" if result.sustained is None else f" (half of {result.sustained:,.0f}/s sustained)"
    )
    return [
        f"  {label(name)}: {plan.vips} VIPs x {plan.backends} backends ({tables}), health every "
        f"{plan.interval:g} s (timeout {plan.timeout:g} s, fall {plan.fall}): "
        f"{result.probes_per_s:,.0f} probes/s",
        f"    load: {result.rate:,.0f} new flows/s{sustained}, {load.flows_per_s:,.0f}/s answered",
    ]


def _rebuild_caveats(result: RebuildResult) -> list[str]:
    """What makes the figures below something else than one VM's failure on a quiet machine."""
    lines = []
    if result.others_down:
        lines.append(
            "    WARNING: the controller fell behind its probes: healthy backends were marked down "
            "too, so the figures below are not those of one VM's failure"
        )
    if overloading(result):
        lines.append(
            "    WARNING: the load and the probes' answers reach the gateway's overload "
            "threshold: its silent probes are inconclusive for a while, so the VM is marked "
            "down late"
        )
    if result.problem:
        lines.append(f"    NOT COMPLETE: {result.problem}")
    if result.load.other_cpu > OTHER_LOAD_WARNING:
        lines.append(
            f"    warning: other processes kept {result.load.other_cpu:.1f} cores busy meanwhile "
            f"(of {os.cpu_count()}): figures are skewed, latency tails most"
        )
    if result.down_at_start:
        lines.append(
            f"    {result.down_at_start} backend(s) were down one health interval after the switch "
            "connected (the probes due during start-up go out at once), up again before the kill"
        )
    return lines


def _rebuild_timing(result: RebuildResult) -> list[str]:
    """When the VIPs marked the VM down, when their tables were in, when the rules of the
    flows they had placed on it went."""
    lines = []
    detection = result.detection_s
    if detection:
        lines.append(
            f"    {len(result.mark_downs)} mark-downs (GET /v1/health: the VM's state since) "
            f"{detection[0]:.2f}-{detection[1]:.2f} s after the kill; all tables in "
            f"{_s(result.rebuild_s)} after the first, {_s(result.tail_s)} after the last "
            f"({_s(result.window_s)} after the kill)"
        )
    delays, requests = result.install_delays, result.request_seconds
    if delays:
        lines.append(
            f"    each VIP's table in after its mark-down: p50 {_s(percentile(delays, 0.5))}, "
            f"max {_s(delays[-1])} (seen for {len(delays)} VIPs by GET /v1/status every "
            f"{POLL_SECONDS * 1e3:.0f} ms: {len(requests)} requests taking p50 "
            f"{_ms(_in_ms(percentile(requests, 0.5)))}, "
            f"max {_ms(_in_ms(requests[-1] if requests else None))}; "
            f"{result.swaps} tables swapped in all)"
        )
    return lines + [_retirement_line(result)]


def _in_ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1e3


def _retirement_line(result: RebuildResult) -> str:
    """Whether the rules of the flows placed on the VM before its mark-down were kept for the
    grace (the phase ends before most graces do)."""
    grace, delays = result.plan.grace_s, result.retirements
    if not delays:
        return f"    the VM's rules: none deleted before the phase ended (grace {grace:g} s)"
    return (
        f"    the VM's rules deleted in {len(delays)} VIP(s) before the phase ended, "
        f"{delays[0]:.2f}-{delays[-1]:.2f} s after their mark-down (grace {grace:g} s; "
        f"{result.retired_early} sooner)"
    )


def _rebuild_latency(result: RebuildResult) -> list[str]:
    """First-packet latency before the kill and while the tables were rebuilt; the flows over
    the target, by second after the kill."""
    lines = [
        f"    latency, {span}: {len(values):,} flows, p50 {_ms(percentile(values, 0.5))}, "
        f"p99 {_ms(percentile(values, 0.99))}, max {_ms(values[-1] if values else None)}"
        for span, values in (
            (f"{result.plan.baseline:g} s before the kill", result.baseline_ms),
            ("kill -> landed", result.window_ms),
            ("first mark-down -> landed", result.rebuild_ms),
        )
    ]
    if result.window_ms and result.mark_downs:
        slow = slow_seconds(
            result.load.timeline, result.kill_at, result.landed_at, TARGET_REBUILD_P99_MS
        )
        seconds = ", ".join(f"+{second} s: {count:,}" for second, count in slow.items())
        lines.append(
            f"    flows over {TARGET_REBUILD_P99_MS:g} ms by second sent after the kill: "
            f"{seconds or 'none'} (mark-downs +{result.mark_downs[0] - result.kill_at:.1f} "
            f"to +{result.mark_downs[-1] - result.kill_at:.1f} s)"
        )
    return lines


def _rebuild_outcome(result: RebuildResult) -> list[str]:
    """Where the flows went (the dead VM, unanswered), and the health view at the end."""
    plan, load = result.plan, result.load
    return [
        f"    flows sent to the dead VM after the kill: {result.dead_flows:,}, "
        f"{result.dead_flows_after_down} after their VIP marked it down; "
        f"{result.unanswered:,} of {result.sent_in_window:,} flows in the window unanswered "
        f"(dropped until their VIP's new table was in); ~{result.flows_before_kill:,} flows "
        "in the table at the kill",
        f"    the whole load: {load.incomplete:,} flows unanswered, {load.no_flow_mod} with a "
        f"packet-out but no flow-mod, {result.duplicates} duplicates",
        f"    at the end (GET /v1/health): the VM down in {result.dead_down_vips} of {plan.vips} "
        f"VIPs, {result.others_down} other backend(s) down, {result.late_probes} probe(s) of "
        f"live backends failed (answered late); controller {load.controller_cpu:.2f} cores, "
        f"switch {load.switch_cpu:.2f}, other {load.other_cpu:.2f}",
    ]


def summarise_rebuild(prefix: str, result: RebuildResult) -> dict:
    detection = result.detection_s or (None, None)
    values = result.window_ms

    def rounded(value, digits=3):
        return None if value is None else round(value, digits)

    summary = {
        "rebuild_vips": result.plan.vips,
        "rebuild_backends": result.plan.backends,
        "rebuild_shared_tables": result.plan.shared_tables,
        "rebuild_rate_per_s": round(result.rate),
        "rebuild_sustained_per_s": None if result.sustained is None else round(result.sustained),
        "rebuild_achieved_per_s": round(result.load.flows_per_s),
        "rebuild_probes_per_s": round(result.probes_per_s),
        "rebuild_baseline_p99_ms": rounded(percentile(result.baseline_ms, 0.99)),
        "rebuild_p50_ms": rounded(percentile(values, 0.5)),
        "rebuild_p99_ms": rounded(percentile(values, 0.99)),
        "rebuild_max_ms": rounded(values[-1] if values else None),
        "rebuild_only_p99_ms": rounded(percentile(result.rebuild_ms, 0.99)),
        "rebuild_only_max_ms": rounded(result.rebuild_ms[-1] if result.rebuild_ms else None),
        "rebuild_detection_first_s": rounded(detection[0], 2),
        "rebuild_detection_last_s": rounded(detection[1], 2),
        "rebuild_tables_s": rounded(result.rebuild_s, 2),
        "rebuild_tail_s": rounded(result.tail_s, 2),
        "rebuild_install_p50_s": rounded(percentile(result.install_delays, 0.5)),
        "rebuild_install_max_s": rounded(
            result.install_delays[-1] if result.install_delays else None
        ),
        "rebuild_swaps": result.swaps,
        "rebuild_window_s": rounded(result.window_s, 2),
        "rebuild_marked_down": len(result.mark_downs),
        "rebuild_dead_flows": result.dead_flows,
        "rebuild_dead_flows_after_down": result.dead_flows_after_down,
        "rebuild_grace_s": result.plan.grace_s,
        "rebuild_retired": len(result.retirements),
        "rebuild_retired_first_s": rounded(result.retirements[0] if result.retirements else None),
        "rebuild_retired_early": result.retired_early,
        "rebuild_unanswered": result.unanswered,
        "rebuild_no_flow_mod": result.load.no_flow_mod,
        "rebuild_duplicates": result.duplicates,
        "rebuild_others_down": result.others_down,
        "rebuild_late_probes": result.late_probes,
        "rebuild_down_at_start": result.down_at_start,
        "rebuild_controller_cpu": round(result.load.controller_cpu, 2),
        "rebuild_problem": result.problem,
    }
    return {f"{prefix}_{key}": value for key, value in summary.items()}
