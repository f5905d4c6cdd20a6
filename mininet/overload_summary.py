"""What the flood scenario's observations add up to (``scenarios_overload.flood``), without
the network: the tests feed it made-up samples.

The scenario records, every ``overload_watch.INTERVAL`` seconds, a sample::

    {"t": 3.5,                                  # seconds since the scenario started
     "offered": 812345, "forwarded": 801234,    # packets: the flooder's NIC sent, the router
     "uplink_rx": 800000, "socket_dropped": 710000,  # sent to the flooded gateway, its uplink
                                                #   received, its packet socket dropped unread
     "gateways": {"gw1": {"rest_ms": 9.1,
                          "backends": {"vm1": {"healthy": true, "since": 1718000000.5}, ...},
                          "overloaded": true, "panic": false,
                          "dropped_in_switch": 40000, "probe_answers_dropped": 0}, ...}}

(``backends`` None: ``/v1/health`` did not answer; a ``dropped_*`` None: ``/v1/status`` did not
answer or has no ``flood_guard``; ``overloaded`` and ``panic``: the gateway's own verdicts, None
from a build without them), and one record per connection of the legitimate client
(``traffic.py paced``, its ``at`` turned into ``t``)::

    {"t": 2.1, "ok": true, "connect_ms": 1.4, "ms": 3.0, "error": null}

A backend *flapped* on a gateway if a sample shows it unhealthy, or its ``since`` (when its
state last changed) moved after the first sample: a down-and-up between two polls is still
seen.  *Recovered* means a connection started after the flood succeeded and a sample after
the flood shows every backend healthy on every gateway; the recovery time is the later of the
two, from the flood's end.
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

RECOVERY_TARGET_S = 3.0  # issue 13: full recovery within 3 s after the flood
STALL_WORTH_A_NOTE_S = 1.0  # a download standing still longer is explained in the notes


# ---- counters ---------------------------------------------------------------------------------


def interface_packets(proc_net_dev: str, interface: str) -> int | None:
    """Packets ``interface`` sent, counting those its queue dropped (the flooder offered them
    either way), from the text of ``/proc/PID/net/dev``; None if it is not listed."""
    for line in proc_net_dev.splitlines():
        name, colon, numbers = line.partition(":")
        if colon and name.strip() == interface:
            fields = numbers.split()
            # receive: bytes packets errs drop fifo frame compressed multicast; transmit: ...
            return int(fields[9]) + int(fields[11])
    return None


def port_rx_packets(dump_ports: str) -> int | None:
    """Packets a port received, from ``ovs-ofctl dump-ports BRIDGE PORT``; None if absent."""
    found = re.search(r"rx pkts=(\d+)", dump_ports)
    return int(found[1]) if found else None


def socket_drops(ss_output: str, interface: str) -> int | None:
    """Packets the kernel dropped because the packet sockets bound to ``interface`` were full,
    from ``ss -0 -e -m`` (``skmem:(...,d<N>)``): the userspace datapath reads a ``system`` port
    through such a socket, so these are packets the switch never read (as
    ``bench/floodwatch.py`` counts them).  None if no socket is bound to it."""
    drops, ours, found_any = 0, False, False
    for line in ss_output.splitlines():
        if not line[:1].isspace():  # a socket's first line: ... *:IFACE ...
            ours = f":{interface} " in f"{line} "
            found_any |= ours
        found = re.search(r"skmem:\(.*\bd(\d+)\)", line)
        if ours and found:
            drops += int(found[1])
    return drops if found_any else None


def read_by_switch(samples: list[dict]) -> list[tuple[float, float]]:
    """(t, packets) the flooded gateway's switch read from its uplink: what the port received
    less what its socket dropped unread."""
    return [
        (s["t"], s["uplink_rx"] - s["socket_dropped"])
        for s in samples
        if s.get("uplink_rx") is not None and s.get("socket_dropped") is not None
    ]


def series(samples: list[dict], key: str, gateway: str | None = None) -> list[tuple[float, float]]:
    """(t, value) of a sample's counter ``key`` (of one gateway's view, with ``gateway``),
    where it has one."""
    points = []
    for sample in samples:
        where = sample if gateway is None else (sample["gateways"].get(gateway) or {})
        if where.get(key) is not None:
            points.append((sample["t"], where[key]))
    return points


def rate_series(points: list[tuple[float, float]], span: float = 0.0) -> list[tuple[float, float]]:
    """(t, per second) of a counter over the last ``span`` seconds (at least: from the latest
    earlier point that far back; 0: from the previous point), stamped at the later point; a
    counter that went backwards (restarted) gives no point.  A counter that the gateway itself
    refreshes only every second (the meters') reads as alternating zeros and doubles between
    half-second samples: a one-second span smooths that out."""
    rates = []
    for index, (t1, v1) in enumerate(points):
        earlier = [(t, v) for t, v in points[:index] if t1 - t >= span - 1e-6]
        if earlier:
            t0, v0 = earlier[-1]
            if t1 > t0 and v1 >= v0:
                rates.append((t1, (v1 - v0) / (t1 - t0)))
    return rates


def growth(points: list[tuple[float, float]], start: float, end: float) -> float | None:
    """How much a counter grew from its last point at or before ``start`` to its first at or
    after ``end``: all of a flood's packets when [start, end] is the flood (None without both
    points)."""
    before = [v for t, v in points if t <= start]
    after = [v for t, v in points if t >= end]
    if not before or not after:
        return None
    return after[0] - before[-1]


# ---- backends ---------------------------------------------------------------------------------


class Change(NamedTuple):
    t: float
    gateway: str
    backend: str
    what: str  # "down" (seen unhealthy) or "changed" (its state changed between two polls)


def backend_changes(samples: list[dict], gateway: str) -> list[Change]:
    """Every sign, in time order, that one of this gateway's backends changed state after its
    first answered sample: seen unhealthy (once per stretch of unhealthy samples), or a
    ``since`` other than the last one seen while it looks healthy."""
    changes: list[Change] = []
    since_seen: dict[str, float] = {}
    down: set[str] = set()
    for sample in samples:
        backends = (sample["gateways"].get(gateway) or {}).get("backends")
        if backends is None:
            continue
        for name, row in sorted(backends.items()):
            first = name not in since_seen
            moved = not first and row.get("since") != since_seen[name]
            since_seen[name] = row.get("since")
            if not row.get("healthy"):
                if name not in down:
                    changes.append(Change(sample["t"], gateway, name, "down"))
                down.add(name)
            else:
                if moved and name not in down:
                    changes.append(Change(sample["t"], gateway, name, "changed"))
                down.discard(name)
    return changes


def unanswered(samples: list[dict], gateway: str) -> int:
    """Samples in which this gateway's ``/v1/health`` did not answer."""
    return sum(
        1
        for s in samples
        if gateway in s["gateways"] and (s["gateways"][gateway] or {}).get("backends") is None
    )


def all_healthy(sample: dict) -> bool:
    """Every gateway answered and calls every backend healthy."""
    gateways = sample.get("gateways") or {}
    return bool(gateways) and all(
        (view or {}).get("backends") is not None
        and all(row.get("healthy") for row in view["backends"].values())
        for view in gateways.values()
    )


# ---- the legitimate client --------------------------------------------------------------------


class Share(NamedTuple):
    ok: int
    total: int

    @property
    def percent(self) -> float | None:
        return round(100 * self.ok / self.total, 1) if self.total else None


def share(connections: list[dict], start: float, end: float) -> Share:
    """Successful connections among those started in ``[start, end)``."""
    chosen = [c for c in connections if start <= c["t"] < end]
    return Share(sum(1 for c in chosen if c["ok"]), len(chosen))


def percentile(values: list[float], fraction: float) -> float | None:
    """The nearest-rank percentile (``fraction`` in 0..1) of ``values``; None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def connect_times(connections: list[dict], start: float, end: float) -> list[float]:
    """Connect times (ms) of the successful connections started in ``[start, end)``."""
    return [
        c["connect_ms"]
        for c in connections
        if start <= c["t"] < end and c["ok"] and c.get("connect_ms") is not None
    ]


def success_buckets(connections: list[dict], width: float = 1.0) -> list[tuple[float, float]]:
    """(bucket start, percent successful) of the connections started in each ``width``-second
    bucket that has any."""
    buckets: dict[int, list[bool]] = {}
    for c in connections:
        buckets.setdefault(math.floor(c["t"] / width), []).append(bool(c["ok"]))
    return [(index * width, 100 * sum(oks) / len(oks)) for index, oks in sorted(buckets.items())]


def longest_stall(transfers: list[dict]) -> float | None:
    """The longest time any transfer's received bytes stood still between two of its
    progress points (``world.Downloads``'s ``[t, bytes]``); None without transfers."""
    stalls = [
        later[0] - since[0]
        for transfer in transfers
        for since, later in _still_stretches(transfer.get("points") or [])
    ]
    return round(max(stalls, default=0.0), 2) if transfers else None


def _still_stretches(points: list) -> list[tuple[list, list]]:
    """(first point, first point after it with more bytes) of each stretch without progress."""
    stretches, since = [], None
    for point in points:
        if since is not None and point[1] > since[1]:
            if point[0] > since[0]:
                stretches.append((since, point))
            since = point
        elif since is None:
            since = point
    return stretches


# ---- recovery ---------------------------------------------------------------------------------


def recovery_seconds(samples: list[dict], connections: list[dict], end: float) -> float | None:
    """Seconds from the flood's end until both a connection started after it succeeded (when
    it completed) and a sample after it showed every backend healthy on every gateway; None
    if either never happened in what was recorded."""
    done = [c["t"] + c["ms"] / 1000 for c in connections if c["t"] >= end and c["ok"]]
    healthy = [s["t"] for s in samples if s["t"] >= end and all_healthy(s)]
    if not done or not healthy:
        return None
    return round(max(min(done), healthy[0]) - end, 2)


# ---- the verdict ------------------------------------------------------------------------------


class Assessment(NamedTuple):
    """What the scenario adds to its result: checks (``ok`` None: reported, not judged),
    figures for the table, notes for the report's text, events for the timeline."""

    checks: list[dict]
    figures: dict
    notes: list[str]
    events: list[dict]


class Rates(NamedTuple):
    """The flood's average rates (packets/s) over its window, where counted, and the flooded
    gateway's guard: what was offered, sent to the gateway, read by its switch, dropped by its
    meter, and what the meter passes at most."""

    offered: float | None
    forwarded: float | None
    read: float | None
    dropped: float | None
    guard: int | None


def flood_rates(samples: list[dict], start: float, end: float, victim: str) -> Rates:
    seconds = max(end - start, 1e-9)

    def rate(points) -> float | None:
        grown = growth(points, start, end)
        return None if grown is None else grown / seconds

    return Rates(
        rate(series(samples, "offered")),
        rate(series(samples, "forwarded")),
        rate(read_by_switch(samples)),
        rate(series(samples, "dropped_in_switch", victim)),
        next((r for _, r in reversed(series(samples, "guard_rate", victim))), None),
    )


def assess(
    samples: list[dict],
    connections: list[dict],
    start: float,
    end: float,
    victim: str,
    transfers: list[dict] = (),
    by_switch: bool = False,
) -> Assessment:
    """Issue 13's promises for the demo, judged: the flood was a flood (more than the flooded
    gateway's guard passes), no backend flapped on any gateway, recovery within
    ``RECOVERY_TARGET_S``; the legitimate client's success during the flood and the downloads'
    longest stall are reported (the downloads' completion is ``finish_downloads``'s).
    ``by_switch``: the flooded gateway places new flows in its switch (switch mode), which
    changes what its SYNs competed for (the note)."""
    rates = flood_rates(samples, start, end, victim)
    checks = [_flooded(rates.offered, rates.guard, victim)]
    changes = []
    gateways = sorted({g for s in samples for g in s["gateways"]})
    for gateway in gateways:
        seen = backend_changes(samples, gateway)
        changes += seen
        checks.append(_steady(gateway, seen, unanswered(samples, gateway)))
    events = [
        {"t": c.t, "kind": "detection", "label": f"{c.backend} {c.what}", "gateway": c.gateway}
        for c in changes
    ]
    recovery = recovery_seconds(samples, connections, end)
    checks.append(_recovered(recovery))
    if recovery is not None:
        events.append({"t": round(end + recovery, 3), "kind": "recovery", "label": "recovered",
                       "gateway": None})  # fmt: skip
    during = share(connections, start, end)
    checks.append(_legit_check(during, share(connections, -math.inf, start), victim))
    late = sum(
        1
        for c in connections
        if start <= c["t"] < end and c["ok"] and c["t"] + (c.get("connect_ms") or 0) / 1000 >= end
    )
    notes = [_legit_note(during, late, rates, victim, by_switch)]
    stall = longest_stall(list(transfers))
    if stall is not None and stall > STALL_WORTH_A_NOTE_S:
        notes.append(_stall_note(stall, victim))
    rest = [t for g in gateways for _, t in series(samples, "rest_ms", g)]
    figures = {
        "offered_per_s": rates.offered,
        "read_by_switch_per_s": rates.read,
        "dropped_in_switch": growth(series(samples, "dropped_in_switch", victim), start, end),
        "flaps": len(changes),
        "legit_during_pct": during.percent,
        "legit_connect_p95_ms": percentile(connect_times(connections, start, end), 0.95),
        "recovery_s": recovery,
        "rest_max_ms": max(rest, default=None),
        "download_stall_max_s": stall,
    }
    figures = {
        k: round(v) if k.endswith("_per_s") else v for k, v in figures.items() if v is not None
    }
    return Assessment(checks, figures, notes, events)


def _recovered(recovery: float | None) -> dict:
    return {
        "what": f"recovered within {RECOVERY_TARGET_S:g} s after the flood (a new connection"
        " succeeded, every backend up on every gateway)",
        "ok": recovery is not None and recovery <= RECOVERY_TARGET_S,
        "detail": "not within what was recorded" if recovery is None else f"{recovery:g} s",
    }


def _flooded(offered_rate: float | None, guard_rate: int | None, victim: str) -> dict:
    if offered_rate is None:
        return {"what": "the flood was offered", "ok": False, "detail": "no counters"}
    if guard_rate is None:  # a build without a flood guard: nothing to compare with
        return {"what": "the flood was offered", "ok": offered_rate > 0,
                "detail": f"{offered_rate:,.0f} SYN/s"}  # fmt: skip
    return {
        "what": f"the flood offered more than {victim}'s flood guard passes ({guard_rate:,}/s)",
        "ok": offered_rate > guard_rate,
        "detail": f"{offered_rate:,.0f} SYN/s",
    }


def _steady(gateway: str, changes: list[Change], unanswered_polls: int) -> dict:
    shown = ", ".join(f"{c.backend} {c.what} at {c.t:.1f} s" for c in changes[:6])
    more = f" and {len(changes) - 6} more" if len(changes) > 6 else ""
    silent = f"; /v1/health unanswered in {unanswered_polls} polls" if unanswered_polls else ""
    return {
        "what": f"{gateway} kept every backend up (no flap)",
        "ok": not changes,
        "detail": (shown + more or "no change") + silent,
    }


def _legit_check(during: Share, before: Share, victim: str) -> dict:
    return {
        "what": f"new connections through {victim} during the flood (reported, not judged)",
        "ok": None,
        "detail": f"{during.ok}/{during.total} ({during.percent}%); before the flood "
        f"{before.ok}/{before.total}",
    }


def _legit_note(during: Share, late: int, rates: Rates, victim: str, by_switch: bool) -> str:
    """Why the legitimate client's success is reported and not judged, with the rates that
    its SYNs competed in (measured; no model of the chance is claimed)."""
    where = ""
    if rates.forwarded is not None:
        read = "" if rates.read is None else f", its switch read {rates.read:,.0f}/s of them"
        guard = "" if rates.guard is None else f" and its meter passed at most {rates.guard:,}/s"
        if by_switch:
            guard = " and placed them by its slot rules, without the meter"
        where = (
            f" Here the router sent {victim} {rates.forwarded:,.0f} SYN/s{read} (the rest died in "
            f"its uplink's packet socket){guard}."
        )
    if by_switch:
        why = (
            "is a target for the benchmarks (bench/bench_flood.py, bench_ovs.py). In switch "
            f"mode {victim} places new flows in its switch: a legitimate SYN competes with the "
            "flood's for the uplink's socket only, and nothing tells them apart there."
        )
    else:
        why = (
            "is a target for bench/bench_flood.py that the switch's meter alone cannot meet: a "
            "legitimate SYN competes with the flood's for the uplink's socket and for the same "
            "meter budget, and nothing tells them apart."
        )
    return (
        f"flood: {during.ok} of {during.total} ({during.percent}%) new connections of the "
        f"legitimate client through {victim} started during the flood succeeded, {late} of them "
        "only after it ended (a SYN retransmitted after 1 s). Reported, not judged: issue 13's "
        f">= 95% at 2x capacity {why}{where}"
    )


def _stall_note(stall: float, victim: str) -> str:
    return (
        f"flood: a download stood still for up to {stall:g} s. Its data comes back from its VM "
        f"directly, but its ACKs go through {victim}'s uplink with the flood, where most packets "
        "die in the port's kernel socket before the switch reads them (compare forwarded and "
        "read in the figure); the VM sends again on its retransmission timer, whose back-off "
        "can outlast the flood (traffic.py gives up after 20 s without data). Reported: every "
        "download must still complete, and that is judged."
    )
