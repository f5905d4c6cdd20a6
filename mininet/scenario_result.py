"""What every scenario works with besides the emulation: how much traffic it makes (``Counts``),
the result it builds (``Result``, in the report's format: see ``report.py``), and the check every
scenario with downloads makes (``finish_downloads``: all complete, with the right checksum, none
reset).  Nothing here touches the network.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Counts:
    """How much traffic each scenario makes (``quick`` for the test suite)."""

    connections: int = 1000
    downloads: int = 20
    download_bytes: int = 3_000_000
    download_rate: int = 300_000  # bytes/s per download: ~10 s in flight
    flood_seconds: float = 8.0  # the flood scenario's SYN flood

    @classmethod
    def quick(cls) -> Counts:
        return cls(
            connections=400,
            downloads=10,
            download_bytes=1_500_000,
            download_rate=300_000,
            flood_seconds=4.0,
        )


@dataclass
class Result:
    name: str
    title: str
    started: float = field(default_factory=time.monotonic)
    checks: list = field(default_factory=list)
    figures: dict = field(default_factory=dict)
    events: list = field(default_factory=list)
    transfers: list = field(default_factory=list)
    per_gateway_vm: dict | None = None

    def check(self, what: str, ok: bool | None, detail: str = "") -> bool:
        """Record a check; ``ok`` None records a measurement, reported and not judged."""
        self.checks.append({"what": what, "ok": None if ok is None else bool(ok), "detail": detail})
        return bool(ok)

    def event(self, kind: str, label: str, gateway: str | None = None) -> None:
        self.events.append(
            {"t": round(time.monotonic() - self.started, 3), "kind": kind, "label": label,
             "gateway": gateway}
        )  # fmt: skip

    def as_dict(self) -> dict:
        result = {
            "name": self.name,
            "title": self.title,
            "passed": all(c["ok"] is not False for c in self.checks),  # None: not judged
            "duration_s": round(time.monotonic() - self.started, 2),
            "checks": self.checks,
            "figures": self.figures,
        }
        if self.per_gateway_vm is not None:
            result["per_gateway_vm"] = self.per_gateway_vm
        if self.events or self.transfers:
            result["timeline"] = {"events": self.events, "transfers": self.transfers}
        return result


def finish_downloads(result: Result, transfers, expected: int) -> dict[str, dict]:
    """Wait for every download (``world.Downloads``), then check them all; their final records
    by name."""
    finals: dict[str, dict] = {}
    for downloads in transfers:
        finals.update(downloads.wait())
    _check_transfers(result, finals, expected)
    return finals


def _check_transfers(result: Result, finals: dict[str, dict], expected: int) -> None:
    ok = [f for f in finals.values() if f["ok"]]
    resets = [name for name, f in finals.items() if f.get("reset")]
    result.figures.update(downloads=expected, completed=len(ok), resets=len(resets))
    result.check(
        "every download completed with the right checksum",
        len(ok) == expected,
        f"{len(ok)}/{expected}"
        + "".join(f"; {n}: {f.get('error')}" for n, f in finals.items() if not f["ok"]),
    )
    result.check("no connection was reset", not resets, ", ".join(resets))
