"""Switch mode's pins and slot counters, as read back from the switch (``core.pinread``), in
``GET /v1/flows``, ``GET /v1/lookup`` and ``/metrics``.

The reader publishes one immutable ``PinSnapshot`` per round; a view takes the reference on
the loop (``pin_view``: with the backend owners and which VIPs are in switch mode, one C-level
copy each) and renders here, on the REST thread.  Framework-free.

- Flows: the switch's pins follow the controller's own entries in the listing, each marked
  ``"source": "switch"``, in flow-key order; a page's ``next_cursor`` ``pin-<key>`` resumes
  after that key in whatever snapshot is current then (keys, not positions: a new round
  neither repeats nor skips the pins it shares with the old one).  ``switch`` says how many
  pins there are per backend, how many the snapshot kept and how old it is.
- Metrics: pins per configured backend of each switch-mode VIP (bounded series), slot rules'
  packets by backend and kind, the snapshot's age and what it left out.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import NamedTuple

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ryu_app.api import pacing
from ryu_app.core.flowkey import describe_key
from ryu_app.core.gateway import GatewayCore
from ryu_app.core.model import MODE_SWITCH, Backend, Vip
from ryu_app.core.pinread import OTHER, SYN, PinSnapshot, ReaderCounters

PIN_CURSOR = "pin-"  # a cursor into the switch's pins: this, then the last key listed, in hex


class PinView(NamedTuple):
    """What the loop copies for a view of the switch's pins."""

    snapshot: PinSnapshot | None
    owners: dict[int, tuple[str, Backend]]  # backend id -> (VIP name, backend)
    switch_vips: tuple[tuple[Vip, dict[str, int]], ...]  # in switch mode now, backend ids
    counters: ReaderCounters


def pin_view(core: GatewayCore, owners: dict | None = None) -> PinView:
    """On the loop: references and small copies only (``owners``: a copy already made)."""
    reader = core.pin_reader
    vips = tuple(
        (state.vip, dict(state.backend_ids))
        for state in core.balancer.vips.values()
        if state.vip.mode == MODE_SWITCH
    )
    owners = core.balancer.owners() if owners is None else owners
    counters = ReaderCounters(**vars(reader.counters))
    return PinView(reader.snapshot if vips else None, owners, vips, counters)


def parse_pin_cursor(text: str) -> bytes | None:
    """The key a ``pin-`` cursor resumes after (b"": from the first pin), else None."""
    if not text.startswith(PIN_CURSOR):
        return None
    rest = text[len(PIN_CURSOR) :]
    try:
        return bytes.fromhex(rest) if rest.isascii() and len(rest) % 2 == 0 else None
    except ValueError:
        return None


def _owner_name(owners, backend_id: int) -> str:
    owner = owners.get(backend_id)
    return f"{owner[0]}/{owner[1].name}" if owner else f"gone/{backend_id}"


def switch_summary(view: PinView, now: float) -> dict | None:
    """The ``switch`` part of ``GET /v1/flows`` (None: no VIP in switch mode, or no round
    read yet)."""
    snapshot = view.snapshot
    if snapshot is None:
        return None
    by_backend: dict[str, int] = {}
    for backend_id, count in snapshot.counts.items():
        name = _owner_name(view.owners, backend_id)
        by_backend[name] = by_backend.get(name, 0) + count
    return {
        "count": sum(snapshot.counts.values()),
        "kept": len(snapshot.pins),
        "truncated": snapshot.truncated,
        "age_seconds": round(max(0.0, now - snapshot.taken_at), 3),
        "by_backend": by_backend,
    }


def pin_rows(view: PinView, after: bytes, limit: int) -> tuple[list[dict], str | None]:
    """Up to ``limit`` pins after key ``after`` (b"": from the first), as flow rows, and the
    cursor of the page after (None: no pins left)."""
    snapshot = view.snapshot
    if snapshot is None or limit <= 0:
        return [], None
    ordered = snapshot.ordered()
    start = bisect.bisect_right(ordered, after) if after else 0
    keys = ordered[start : start + limit]
    rows = []
    for number, key in enumerate(keys):
        if not number % pacing.ROWS_PER_CHECKPOINT:
            pacing.checkpoint()
        backend_id, packets = snapshot.pins[key]
        owner = view.owners.get(backend_id)
        rows.append(
            {
                **describe_key(key),
                "vip": owner[0] if owner else None,
                "backend": owner[1].name if owner else None,
                "expires_in": None,  # the switch's idle timeout: not read back
                "source": "switch",
                "packets": packets,
            }
        )
    more = start + len(keys) < len(ordered)
    return rows, (PIN_CURSOR + keys[-1].hex() if more and keys else None)


def pinned_to(core: GatewayCore, vip_name: str, key: bytes) -> str | None:
    """On the loop: the backend the last snapshot pins this 5-tuple key to, if it holds one
    (a dictionary look-up)."""
    snapshot = core.pin_reader.snapshot
    if snapshot is None or vip_name not in snapshot.vips:
        return None
    pin = snapshot.pins.get(key)
    owner = core.balancer.backend_of(pin[0]) if pin else None
    return owner[1].name if owner and owner[0] == vip_name else None


# Backends given pin and slot series at most (3 samples each), as ``lockstep_backend_up``'s
# bound: at 1,000 switch-mode VIPs x 100 backends the families would be 300,000 samples.
PIN_SERIES_BACKENDS = 10_000


class PinCollector:
    """``/metrics``: the switch's pins and slot counters of the switch-mode VIPs, one series
    per configured backend (a pin of a backend that is gone counts in no series), for the
    first ``PIN_SERIES_BACKENDS`` backends in VIP-name order; the others are counted in
    ``lockstep_switch_pin_series_omitted``."""

    def __init__(self, view: PinView, now: float):
        self.view = view
        self.now = now

    def collect(self) -> Iterator[Metric]:
        view, snapshot = self.view, self.view.snapshot
        pins = GaugeMetricFamily(
            "lockstep_switch_pins",
            "Pins (learned per-flow rules) in the switch, per backend of a switch-mode VIP, "
            "as of the last read (all of them, kept or not).",
            labels=("vip", "backend"),
        )
        packets = CounterMetricFamily(
            "lockstep_slot_packets",
            "Packets the switch's slot rules sent to a backend: syn (new connections) or other "
            "(first packets of flows without a pin yet); a rule rewritten starts again at 0.",
            labels=("vip", "backend", "kind"),
        )
        counts = snapshot.counts if snapshot else {}
        slot_packets = snapshot.slot_packets if snapshot else {}
        room, omitted = PIN_SERIES_BACKENDS, 0
        for vip, ids in sorted(view.switch_vips, key=lambda pair: pair[0].name):
            pacing.checkpoint()
            shown = vip.backends[: max(room, 0)]
            room -= len(shown)
            omitted += len(vip.backends) - len(shown)
            for backend in shown:
                backend_id = ids.get(backend.name)
                pins.add_metric((vip.name, backend.name), counts.get(backend_id, 0))
                for kind in (SYN, OTHER):
                    value = slot_packets.get((backend_id, kind), 0)
                    packets.add_metric((vip.name, backend.name, kind), value)
        yield pins
        yield packets
        yield GaugeMetricFamily(
            "lockstep_switch_pin_series_omitted",
            f"Backends of switch-mode VIPs given no pin or slot series (beyond the first"
            f" {PIN_SERIES_BACKENDS:,} in VIP-name order: /metrics stays bounded).",
            omitted,
        )
        yield from self._reader()

    def _reader(self) -> Iterator[Metric]:
        snapshot, counters = self.view.snapshot, self.view.counters
        age = max(0.0, self.now - snapshot.taken_at) if snapshot else -1.0
        yield GaugeMetricFamily(
            "lockstep_switch_pins_age_seconds",
            "Age of the last read of the switch's pins (-1: none yet, or no switch-mode VIP).",
            round(age, 3),
        )
        yield GaugeMetricFamily(
            "lockstep_switch_pins_truncated",
            "Pins the last read counted but did not keep (over its bound): not listed, not"
            " found by lookups.",
            snapshot.truncated if snapshot else 0,
        )
        reads = CounterMetricFamily(
            "lockstep_switch_pin_reads",
            "Flow statistics requests for the switch's pins and slot rules, by outcome.",
            labels=("outcome",),
        )
        reads.add_metric(("sent",), counters.requests)
        reads.add_metric(("timeout",), counters.timeouts)
        reads.add_metric(("malformed",), counters.malformed)
        reads.add_metric(("stale",), counters.stale)
        yield reads
