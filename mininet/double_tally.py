"""The double-change scenario's bookkeeping, without the network: which downloads one run of a
case started, where each was placed, how each ended (``Run``), the side-by-side table of the
runs (mechanism off and on) and what is judged of them.

A download that did not complete is *lost with its VM* when the VM it was placed on is the one
the case made fail (nothing a balancer can save), and *broken* otherwise: the balancer's (or
the mechanism's) breakage, the number the scenario is about.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

OFF, ON = "off", "on"
SECOND_CHANCE_ON = "duplicate"  # the VIP's second_chance when the mechanism is on
SETTINGS = (OFF, ON)

# The cases in the order they run, with their labels in the report.
CASE_LABELS = {
    "drain": "drain+move",  # a VM drained (weight 0), then an ECMP move
    "add": "add+move",  # a VM added to the VIP, then an ECMP move
    "failure": "fail+restart",  # a VM fails, then a gateway restarts
}
CASES = tuple(CASE_LABELS)


@dataclass
class Run:
    """One case run with the mechanism ``setting``: per source port the VM the first gateway
    placed the download on (None: not seen there) and its final record (``traffic.py``'s)."""

    case: str
    setting: str
    changed_vm: str | None = None  # the VM the case drained, added or made fail
    placed: dict[int, str | None] = field(default_factory=dict)
    finals: dict[int, dict] = field(default_factory=dict)
    expected_bytes: int = 0  # per download
    moved_placed: int | None = None  # non-SYN misses the gateways that took the flows placed
    details: dict = field(default_factory=dict)  # the case's own figures (timings...)

    @property
    def failed_vm(self) -> str | None:
        """The VM that failed: its downloads are lost with it, not broken by the balancer."""
        return self.changed_vm if self.case == "failure" else None

    def touched(self) -> bool:
        """Every download was seen placed, and the change touched them: the drained or failed
        VM held some, the added VM none yet (it takes some over).  Else the run showed
        nothing."""
        placed = list(self.placed.values())
        if not placed or None in placed:
            return False
        return (self.changed_vm in placed) != (self.case == "add")

    @property
    def started(self) -> int:
        return len(self.placed)

    @property
    def completed(self) -> list[int]:
        return [port for port, final in self.finals.items() if final.get("ok")]

    @property
    def lost_with_vm(self) -> list[int]:
        return [
            port
            for port in self._not_completed()
            if self.failed_vm is not None and self.placed.get(port) == self.failed_vm
        ]

    @property
    def broken(self) -> list[int]:
        lost = set(self.lost_with_vm)
        return [port for port in self._not_completed() if port not in lost]

    def _not_completed(self) -> list[int]:
        """Every started download without an ``ok`` final record (none at all counts too)."""
        return sorted(port for port in self.placed if not self.finals.get(port, {}).get("ok"))

    @property
    def bytes_received(self) -> int:
        return sum(final.get("bytes", 0) for final in self.finals.values())

    def broken_on(self) -> dict[str, int]:
        """Broken downloads per VM they were placed on."""
        return dict(Counter(self.placed.get(port) or "?" for port in self.broken))

    def errors(self) -> dict[str, int]:
        """How the downloads that did not complete ended (``traffic.py``'s error names)."""
        ended = self.broken + self.lost_with_vm
        return dict(Counter(self.finals.get(p, {}).get("error") or "no result" for p in ended))

    def summary(self) -> dict:
        """The run's figures for report.json."""
        return {
            "started": self.started,
            "completed": len(self.completed),
            "broken": len(self.broken),
            "lost_with_vm": len(self.lost_with_vm),
            "bytes": self.bytes_received,
            "bytes_expected": self.expected_bytes * self.started,
            "broken_on": self.broken_on(),
            "placed_on": dict(Counter(vm or "?" for vm in self.placed.values())),
            "errors": self.errors(),
            "moved_placed": self.moved_placed,
            **self.details,
        }


TABLE_COLUMNS = (
    "case",
    "second chance",
    "started",
    "done",
    "broken",
    "lost w/ VM",
    "MB",
    "broken on",
)


def table_rows(runs: list[Run]) -> list[list[str]]:
    """One row per run, the cases in ``CASES`` order and off before on."""
    order = {(case, setting): i for i, (case, setting) in enumerate(_every_run())}
    rows = []
    for run in sorted(runs, key=lambda r: order.get((r.case, r.setting), len(order))):
        expected = run.expected_bytes * run.started
        rows.append(
            [
                CASE_LABELS.get(run.case, run.case),
                run.setting,
                str(run.started),
                str(len(run.completed)),
                str(len(run.broken)),
                str(len(run.lost_with_vm)) if run.failed_vm else "-",
                f"{run.bytes_received / 1e6:.1f}/{expected / 1e6:.1f}",
                ", ".join(f"{vm} x{n}" for vm, n in sorted(run.broken_on().items())) or "-",
            ]
        )
    return rows


def _every_run() -> list[tuple[str, str]]:
    return [(case, setting) for case in CASES for setting in SETTINGS]


def verdict(run: Run) -> tuple[bool | None, str]:
    """What is judged of one run: with the mechanism on, no broken download (the failure
    case's downloads on the failed VM are lost with it and not counted); with it off, the
    numbers are reported (None), unless they are impossible: a download with no result at all
    or more results than downloads."""
    detail = (
        f"{len(run.broken)} broken of {run.started}"
        + (f" ({len(run.lost_with_vm)} lost with {run.failed_vm})" if run.failed_vm else "")
        + (f"; broken on {run.broken_on()}" if run.broken else "")
        + (f"; {run.errors()}" if run.broken or run.lost_with_vm else "")
    )
    missing = [port for port in run.placed if port not in run.finals]
    if missing or len(run.finals) > run.started:
        return False, f"{len(missing)} downloads without a result; " + detail
    if run.setting == ON:
        kept = run.details.get("second_chance_after_restart")
        if kept is not None and kept != SECOND_CHANCE_ON:  # the restarted gateway's setting
            return False, f"second_chance {kept!r} after the restart; " + detail
        return not run.broken, detail
    return None, detail
