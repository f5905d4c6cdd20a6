"""The read-only views of one gateway, and what they share: status and the flow listing
here; ``/v1/health`` in ``healthview``, ``/metrics`` in ``metricsview``, the flood guard's part
of both in ``guardview``.

Each view comes in two halves.  ``*_snapshot(core, ...)`` runs on the event loop, where the
core may be read, and only copies: references to immutable configuration, a frozenset of each
VIP's healthy backends (``vip_views``), counters, one C-level copy of a big dict.  ``render_*``
turns that copy into the answer on the caller's (a REST) thread.  Rendered on the loop, a view
of 100 VIPs of 100 backends or of a million flows held up every packet-in for 10-200 ms (issue
11: one client paging through a million flows cut new flows from 71k/s to 2.5k/s); a snapshot
takes well under a millisecond at that scale.

Rendering remembers what is costly and rarely changes (``RenderCache``: each VIP's config
digest, by VIP object; each healthy set's digest; each VIP's ``backend_up`` samples), so that a
client asking in a loop costs little CPU either (the REST thread shares the interpreter with
the packet path).  Long renders are paced (``pacing``: a checkpoint every VIP, every few rows,
and rows the JSON encoder walks as ``PacedRows``): the REST plane's CPU budget holds while they
run, not only between requests.  Framework-free, like the service.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import NamedTuple

from prometheus_client.samples import Sample

from ryu_app.api import pacing
from ryu_app.api.guardview import GuardSnapshot, guard_snapshot, render_guard
from ryu_app.core.flowkey import describe_key
from ryu_app.core.flowtable import Listed, Position
from ryu_app.core.gateway import GatewayCore
from ryu_app.core.model import MODE_SWITCH, Backend, HealthCheck, Vip
from ryu_app.core.pinread import PinSnapshot, slot_skew
from topology import deployment as deployment_file

# The family of ``/metrics`` (``metricsview``) whose samples ``RenderCache`` keeps: one per
# configured backend of each VIP, 10,000 at 100 x 100.
BACKEND_UP = "lockstep_backend_up"


def digest(data) -> str:
    return text_digest(canonical_text(data))


def canonical_text(data) -> str:
    """What a digest is taken of: compact JSON, keys sorted (a list's is its items' joined)."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# Fields a VIP gained after the first release, and their defaults.  At its default such a field
# is left out of the configuration's digest, so that a gateway that knows it and one that does
# not yet (a fleet half way through an upgrade) show the same digest in ``lockstep status``
# for the same configuration; set to anything else, it counts.
NEWER_FIELDS_AT_DEFAULT = {
    ("new_flow_rate",): Vip.new_flow_rate,  # issue 13: a VIP's own flood-guard budget
    ("health", "panic_threshold"): HealthCheck.panic_threshold,  # issue 13
    ("placement",): Vip.placement,  # issue 14: hash or port-bits
    ("second_chance",): Vip.second_chance,  # issue 16: the double change
    ("second_chance_window",): Vip.second_chance_window,  # issue 16
}
# Fields a VIP may hold differently on each gateway of a fleet, left out of the digest at any
# value: a gateway in switch mode and one in controller mode place flows alike (issue 14), and
# ``lockstep status`` must not flag them as disagreeing.
PER_GATEWAY_FIELDS = ("mode", "max_pins_per_backend")  # (the second: a bound on a switch)


def config_data(vip: Vip) -> dict:
    """The VIP's configuration as its digest sees it (``NEWER_FIELDS_AT_DEFAULT``,
    ``PER_GATEWAY_FIELDS``)."""
    data = deployment_file.vip_to_data(vip)
    for name in PER_GATEWAY_FIELDS:
        data.pop(name, None)
    for path, default in NEWER_FIELDS_AT_DEFAULT.items():
        *parents, name = path
        holder = data
        for parent in parents:
            holder = holder.get(parent) or {}
        if name in holder and holder[name] == default:
            del holder[name]
    return data


class VipView(NamedTuple):
    """One VIP as the balancer has it at the snapshot."""

    vip: Vip
    healthy: frozenset[str]
    table_current: bool
    panic: bool = False  # new flows hashed over all serving backends (``core.serving``)


def vip_views(core: GatewayCore) -> dict[str, VipView]:
    """On the loop: each VIP's configuration (immutable), healthy set (copied), whether its
    table is current (``VipState.table_current``: a comparison of keys) and in panic."""
    return {
        name: VipView(state.vip, frozenset(state.healthy), state.table_current, state.panic)
        for name, state in core.balancer.vips.items()
    }


class RenderCache:
    """Costly pieces of renders, remembered while what they were made from stays the same
    (the same ``Vip`` object, an equal healthy set).  Renders may run on several threads at
    once: each entry is one dict assignment, and the worst a race costs is a second
    computation of the same value."""

    def __init__(self):
        self._config: dict[str, tuple[Vip, str, str]] = {}  # (vip, digest, canonical text)
        self._healthy: dict[str, tuple[frozenset, str]] = {}
        self._all: tuple[tuple[Vip, ...] | None, str] = (None, "")
        self._backend_up: dict[str, tuple[Vip, frozenset, list[Sample]]] = {}

    def config_digest(self, vip: Vip) -> str:
        return self._config_entry(vip)[1]

    def _config_entry(self, vip: Vip) -> tuple[Vip, str, str]:
        """The VIP's digest and the text it is taken of, made once per Vip object (the digest
        of all VIPs joins the texts: at 1,000 x 100 each VIP's data took ~1 ms to make)."""
        cached = self._config.get(vip.name)
        if cached is None or cached[0] is not vip:
            text = canonical_text(config_data(vip))
            cached = self._config[vip.name] = (vip, text_digest(text), text)
        return cached

    def warm(self, vips: tuple[Vip, ...]) -> None:
        """Every VIP's configuration digest and the digest of all, made now: at start-up, off
        the REST plane's CPU budget (at 1,000 x 100 the first GET /v1/status spent ~0.2 s
        of CPU on them, ~2 s of wall time at its share of a core)."""
        for vip in vips:
            self._config_entry(vip)
        self.all_configs_digest(vips)

    def healthy_digest(self, name: str, healthy: frozenset[str]) -> str:
        cached = self._healthy.get(name)
        if cached is None or cached[0] != healthy:
            cached = self._healthy[name] = (healthy, digest(sorted(healthy)))
        return cached[1]

    def all_configs_digest(self, vips: tuple[Vip, ...]) -> str:
        """The digest of every VIP's configuration: the same value whatever their order."""
        cached_vips, value = self._all
        if cached_vips is not vips:
            # digest(sorted config_data by name), from each VIP's text: a list's canonical
            # text is its items' joined by commas.
            texts = [self._config_entry(v)[2] for v in sorted(vips, key=lambda v: v.name)]
            value = text_digest("[" + ",".join(texts) + "]")
            self._all = (vips, value)
        return value

    def backend_up(self, view: VipView) -> list[Sample]:
        """The VIP's ``lockstep_backend_up`` samples: one per configured backend."""
        cached = self._backend_up.get(view.vip.name)
        if cached is None or cached[0] is not view.vip or cached[1] != view.healthy:
            vip = view.vip
            samples = [
                Sample(
                    BACKEND_UP, {"vip": vip.name, "backend": b.name}, int(b.name in view.healthy)
                )
                for b in vip.backends
            ]
            cached = self._backend_up[vip.name] = (vip, view.healthy, samples)
        return cached[2]

    def forget_others(self, names: set[str]) -> None:
        """Drop what belongs to VIPs that are gone (called now and then by the renders)."""
        for cache in (self._config, self._healthy, self._backend_up):
            if len(cache) > len(names) + 16:
                for name in [n for n in cache if n not in names]:
                    cache.pop(name, None)


# ---- status ---------------------------------------------------------------------------------


class StatusSnapshot(NamedTuple):
    vips: tuple[Vip, ...]  # the configuration, as saved
    states: dict[str, VipView]
    switch_connected: bool
    guard: GuardSnapshot
    pins: PinSnapshot | None = None  # switch mode's slot counters, as last read back


def status_snapshot(core: GatewayCore, vips: tuple[Vip, ...]) -> StatusSnapshot:
    return StatusSnapshot(
        vips, vip_views(core), core.ports is not None, guard_snapshot(core),
        core.pin_reader.snapshot,
    )  # fmt: skip


def slots_status(vip: Vip, pins: PinSnapshot | None) -> dict | None:
    """A switch-mode VIP's slot SYN counts: their total, and the fullest slot's share over the
    mean (None while too few to tell: ``pinread.slot_skew``)."""
    if vip.mode != MODE_SWITCH or pins is None or vip.name not in pins.slot_syns:
        return None
    syns = pins.slot_syns[vip.name]
    skew = slot_skew(syns, vip.table_size)
    return {
        "syn_packets": sum(syns.values()),
        "max_mean_syn_share": None if skew is None else round(skew, 2),
    }


def render_status(snapshot: StatusSnapshot, gateway: str, cache: RenderCache) -> dict:
    """Digests an operator compares across gateways: same config, same healthy sets."""
    vips = {}
    for vip in snapshot.vips:
        pacing.checkpoint()
        view = snapshot.states.get(vip.name)
        healthy = view.healthy if view else frozenset()
        vips[vip.name] = {
            "config_digest": cache.config_digest(vip),
            "healthy": sorted(healthy),
            "healthy_digest": cache.healthy_digest(vip.name, healthy),
            "table_current": bool(view and view.table_current),
        }
        slots = slots_status(vip, snapshot.pins)
        if slots is not None:
            vips[vip.name]["slots"] = slots
    cache.forget_others(set(vips))
    return {
        "gateway": gateway,
        "config_digest": cache.all_configs_digest(snapshot.vips),
        "switch_connected": snapshot.switch_connected,
        "flood_guard": render_guard(snapshot.guard),
        "switch_errors": sum(snapshot.guard.switch_errors.values()),
        "vips": vips,
    }


# ---- the flow listing -----------------------------------------------------------------------


class FlowsSnapshot(NamedTuple):
    count: int
    by_backend: dict[int, int]  # backend id -> entries
    owners: dict[int, tuple[str, Backend]]  # backend id -> (VIP name, backend)
    counters: dict
    listed: list[Listed]
    start: Position
    following: Position | None  # where the next page starts (None: the listing is over)
    offset: int | None  # when the page was asked for by offset: its offset ...
    next_offset: int | None  # ... and the next page's


def flows_snapshot(
    core: GatewayCore, start: Position | int, limit: int, now: float
) -> FlowsSnapshot:
    """A page of the flow table from ``start`` (a position, or an offset: located from the
    shards' sizes) and the table's counts.  O(page + shards + one shard at C speed)."""
    balancer = core.balancer
    table = balancer.flows
    offset = start if isinstance(start, int) else None
    position = table.locate(start) if offset is not None else start
    listed, following = table.page(position, limit, now)
    next_offset = None
    if offset is not None and following is not None:
        next_offset = table.offset_of(following)
    return FlowsSnapshot(
        len(table),
        table.count_by_backend(),
        balancer.owners(),
        dataclasses.asdict(table.counters),
        listed,
        position,
        following,
        offset,
        next_offset,
    )


def render_flows(snapshot: FlowsSnapshot) -> dict:
    owners = snapshot.owners
    names: dict[str, int] = {}
    for backend_id, count in snapshot.by_backend.items():
        owner = owners.get(backend_id)
        key = f"{owner[0]}/{owner[1].name}" if owner else f"gone/{backend_id}"
        names[key] = names.get(key, 0) + count
    page = pacing.PacedRows()
    for number, (key, backend_id, expires_in) in enumerate(snapshot.listed):
        if not number % pacing.ROWS_PER_CHECKPOINT:
            pacing.checkpoint()
        owner = owners.get(backend_id)
        page.append(
            {
                **describe_key(key),
                "vip": owner[0] if owner else None,
                "backend": owner[1].name if owner else None,
                # None: pinned until the switch reports the rule gone
                "expires_in": None if expires_in is None else round(expires_in, 3),
            }
        )
    answer = {
        "count": snapshot.count,
        "by_backend": names,
        "counters": snapshot.counters,
        "flows": page,
        "next_cursor": None if snapshot.following is None else cursor_text(snapshot.following),
    }
    if snapshot.offset is not None:
        answer["offset"] = snapshot.offset
        answer["next_offset"] = snapshot.next_offset
    return answer


def cursor_text(position: Position) -> str:
    """A listing position as the opaque ``cursor`` of ``GET /v1/flows``."""
    shard, index = position
    return f"{shard}-{index}"


def parse_cursor(text: str) -> Position | None:
    """A ``cursor`` back to a position; None if it is not one."""
    shard, dash, index = text.partition("-")
    if not dash or not (
        shard.isdigit() and index.isdigit() and shard.isascii() and index.isascii()
    ):
        return None
    if len(shard) > 6 or len(index) > 12:
        return None
    return int(shard), int(index)
