"""The read-only views of one gateway: status, health, metrics and the flow listing.

Each view comes in two halves.  ``*_snapshot(core, ...)`` runs on the event loop, where the
core may be read, and only copies: references to immutable configuration, a frozenset of each
VIP's healthy backends, counters, one C-level copy of a big dict.  ``render_*`` turns that copy
into the answer on the caller's (a REST) thread.  Rendered on the loop, a view of 100 VIPs of
100 backends or of a million flows held up every packet-in for 10-200 ms (issue 11: one client
paging through a million flows cut new flows from 71k/s to 2.5k/s); a snapshot takes well
under a millisecond at that scale.

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
from collections import Counter
from collections.abc import Iterator
from typing import NamedTuple

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.samples import Sample

from ryu_app.api import pacing
from ryu_app.api.guardview import GuardCollector, GuardSnapshot, guard_snapshot, render_guard
from ryu_app.core.flowkey import describe_key
from ryu_app.core.flowtable import Listed, Position
from ryu_app.core.gateway import GatewayCore
from ryu_app.core.health import HealthView
from ryu_app.core.model import Backend, Vip
from ryu_app.core.overload import OverloadView
from topology import deployment as deployment_file


def digest(data) -> str:
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


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
        self._config: dict[str, tuple[Vip, str]] = {}
        self._healthy: dict[str, tuple[frozenset, str]] = {}
        self._all: tuple[tuple[Vip, ...] | None, str] = (None, "")
        self._backend_up: dict[str, tuple[Vip, frozenset, list[Sample]]] = {}

    def config_digest(self, vip: Vip) -> str:
        cached = self._config.get(vip.name)
        if cached is None or cached[0] is not vip:
            cached = self._config[vip.name] = (vip, digest(deployment_file.vip_to_data(vip)))
        return cached[1]

    def healthy_digest(self, name: str, healthy: frozenset[str]) -> str:
        cached = self._healthy.get(name)
        if cached is None or cached[0] != healthy:
            cached = self._healthy[name] = (healthy, digest(sorted(healthy)))
        return cached[1]

    def all_configs_digest(self, vips: tuple[Vip, ...]) -> str:
        """The digest of every VIP's configuration: the same value whatever their order."""
        cached_vips, value = self._all
        if cached_vips is not vips:
            data = sorted((deployment_file.vip_to_data(v) for v in vips), key=lambda v: v["name"])
            value = digest(data)
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


def status_snapshot(core: GatewayCore, vips: tuple[Vip, ...]) -> StatusSnapshot:
    return StatusSnapshot(vips, vip_views(core), core.ports is not None, guard_snapshot(core))


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
    cache.forget_others(set(vips))
    return {
        "gateway": gateway,
        "config_digest": cache.all_configs_digest(snapshot.vips),
        "switch_connected": snapshot.switch_connected,
        "flood_guard": render_guard(snapshot.guard),
        "switch_errors": sum(snapshot.guard.switch_errors.values()),
        "vips": vips,
    }


# ---- health ---------------------------------------------------------------------------------


class HealthSnapshot(NamedTuple):
    vips: tuple[Vip, ...]
    states: dict[str, VipView]
    probes: dict[tuple[str, str], HealthView]  # (VIP, backend) -> its probes' view
    overload: OverloadView


def health_snapshot(core: GatewayCore, vips: tuple[Vip, ...]) -> HealthSnapshot:
    return HealthSnapshot(vips, vip_views(core), core.prober.views.copy(), core.monitor.view())


def render_health(snapshot: HealthSnapshot, gateway: str, now: float, wall: float) -> dict:
    """This gateway's own view of every backend, with its last probe (``now``: the clock the
    core runs on, ``wall``: the same moment in wall-clock time), of each VIP's panic, and of
    its own overload (``overload.LoadMonitor``)."""
    view: dict[str, list] = {}
    for vip in snapshot.vips:
        pacing.checkpoint()
        state = snapshot.states.get(vip.name)
        healthy = state.healthy if state else frozenset()
        view[vip.name] = pacing.PacedRows(
            {
                "backend": backend.name,
                "healthy": backend.name in healthy,
                "weight": backend.weight,
                **_probe_view(snapshot.probes.get((vip.name, backend.name)), now, wall),
            }
            for backend in vip.backends
        )
    states = snapshot.states
    panic = {
        vip.name: bool(states.get(vip.name) and states[vip.name].panic) for vip in snapshot.vips
    }
    overload = _overload_view(snapshot.overload, now, wall)
    return {"gateway": gateway, "vips": view, "panic": panic, "overload": overload}


def _overload_view(load: OverloadView, now: float, wall: float) -> dict:
    rtt = load.probe_rtt_share
    return {
        "overloaded": load.overloaded,
        "since": None if load.since is None else round(wall - (now - load.since), 3),
        "reasons": list(load.reasons),
        "episodes": load.episodes,
        "packet_in_rate": round(load.packet_in_rate, 1),
        "probe_rtt_share_of_timeout": None if rtt is None else round(rtt, 3),
        "loop_lag": round(load.loop_lag, 4),
        "guard_drops": load.guard_drops,
        "silent_backends": load.silent_backends,
        "answering_backends": load.answering_backends,
        "inconclusive_probes": load.inconclusive,
    }


def _probe_view(health: HealthView | None, now: float, wall: float) -> dict:
    if health is None:  # a static backend (``health: {type: none}``), or a VIP just removed
        return {"probing": False}
    at = health.last_result_at
    if health.last_inconclusive:
        result = "inconclusive"  # no answer while the gateway was overloaded
    else:
        result = None if health.last_result is None else ("ok" if health.last_result else "fail")
    return {
        "probing": True,
        "state": health.state,
        "since": round(wall - (now - health.changed_at), 3),
        "last_result": result,
        "last_probe_at": None if at is None else round(wall - (now - at), 3),
        "last_detail": health.last_detail,
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


# ---- Prometheus metrics ---------------------------------------------------------------------
#
# The packet path counts in plain integers (``GatewayCounters``, the flow table's and the
# balancer's counters) and pays nothing for metrics.  A scrape copies them on the loop
# (``metrics_snapshot``) and prometheus_client turns the copy into text on the REST thread
# (``render_metrics``: a ``GatewayCollector`` of that copy, ``generate_latest``).  Per-VIP and
# per-backend series exist for the balancer's VIPs and their configured backends only.


class MetricsSnapshot(NamedTuple):
    packet_ins: int
    flows_installed: int
    packet_outs: int
    flows_removed: int
    malformed: Counter
    table_build_failures: int
    table: dict  # the flow table's counters
    entries: int
    probe_results: dict[bool, int]
    table_installs: int
    states: dict[str, VipView]
    guard: GuardSnapshot
    overload: OverloadView


def metrics_snapshot(core: GatewayCore) -> MetricsSnapshot:
    counters = core.counters
    balancer = core.balancer
    return MetricsSnapshot(
        counters.packet_ins,
        counters.flows_installed,
        counters.packet_outs,
        counters.flows_removed,
        counters.malformed.copy(),
        counters.table_build_failures,
        dataclasses.asdict(balancer.flows.counters),
        len(balancer.flows),
        dict(core.prober.results),
        balancer.counters.table_installs,
        vip_views(core),
        guard_snapshot(core),
        core.monitor.view(),
    )


BACKEND_UP = "lockstep_backend_up"


class GatewayCollector:
    """A prometheus_client collector of one gateway's counters as ``snapshot`` holds them (a
    collector is anything with ``collect()``; this one is made per scrape, because the
    counters may only be read on the controller's loop).  ``handler_errors``: the shell's
    count of event handlers that raised; ``cache`` remembers each VIP's ``backend_up``
    samples while its configuration and healthy set stay the same."""

    def __init__(self, snapshot: MetricsSnapshot, handler_errors: int, cache: RenderCache):
        self.snapshot = snapshot
        self.handler_errors = handler_errors
        self.cache = cache

    def collect(self) -> Iterator[Metric]:
        snapshot, table = self.snapshot, self.snapshot.table
        yield _counter("lockstep_packet_ins", "Packet-ins received.", snapshot.packet_ins)
        yield _counter(
            "lockstep_flows_installed", "Per-flow rules installed.", snapshot.flows_installed
        )
        yield _counter(
            "lockstep_packet_outs", "Packet-outs of client packets.", snapshot.packet_outs
        )
        yield _counter(
            "lockstep_flows_removed", "Per-flow rules the switch expired.", snapshot.flows_removed
        )
        malformed = CounterMetricFamily(
            "lockstep_malformed_packets",
            "Packet-ins dropped as not load-balanceable, by reason.",
            labels=("reason",),
        )
        for reason, count in sorted(snapshot.malformed.items()):
            malformed.add_metric((reason,), count)
        yield malformed
        yield _counter("lockstep_flow_table_hits", "Flow-table hits.", table["hits"])
        yield _counter("lockstep_flow_table_misses", "Flow-table misses.", table["misses"])
        yield _counter(
            "lockstep_flow_table_non_syn_misses",
            "Misses of TCP packets that cannot open a connection (moved flows, restarts).",
            table["tcp_non_syn_misses"],
        )
        yield _counter(
            "lockstep_flow_table_evictions", "Entries evicted at capacity.", table["evictions"]
        )
        yield GaugeMetricFamily(
            "lockstep_flow_table_entries", "Flows in this gateway's table.", snapshot.entries
        )
        probes = CounterMetricFamily("lockstep_probes", "Health probe results.", labels=("result",))
        probes.add_metric(("ok",), snapshot.probe_results[True])
        probes.add_metric(("fail",), snapshot.probe_results[False])
        probes.add_metric(("inconclusive",), snapshot.overload.inconclusive)
        yield probes
        yield self._backend_up()
        yield from self._overload()
        yield _counter(
            "lockstep_table_rebuilds",
            "Maglev tables swapped in after a change of healthy set or weights.",
            snapshot.table_installs,
        )
        yield _counter(
            "lockstep_table_build_failures",
            "Maglev table builds that failed (each is retried with backoff while still wanted).",
            snapshot.table_build_failures,
        )
        yield _counter(
            "lockstep_handler_errors",
            "Event handlers that raised (event dropped).",
            self.handler_errors,
        )

    def _overload(self) -> Iterator[Metric]:
        """The gateway's overload (``overload.LoadMonitor``) and each VIP's panic."""
        load = self.snapshot.overload
        yield GaugeMetricFamily(
            "lockstep_overloaded",
            "1 while this gateway finds itself overloaded (unanswered probes are inconclusive).",
            int(load.overloaded),
        )
        yield _counter(
            "lockstep_overload_episodes", "Overload episodes this gateway saw.", load.episodes
        )
        panic = GaugeMetricFamily(
            "lockstep_vip_panic",
            "1 while too few of the VIP's backends are healthy: new flows go to all of them.",
            labels=("vip",),
        )
        for name, view in sorted(self.snapshot.states.items()):
            panic.add_metric((name,), int(view.panic))
        yield panic

    def _backend_up(self) -> GaugeMetricFamily:
        """One sample per configured backend of each VIP (10,000 at 100 x 100), remembered
        per VIP."""
        family = GaugeMetricFamily(
            BACKEND_UP,
            "1 if this gateway considers the backend healthy.",
            labels=("vip", "backend"),
        )
        states = self.snapshot.states
        for _, view in sorted(states.items()):
            pacing.checkpoint()  # thousands of samples: the REST plane's budget applies
            family.samples += self.cache.backend_up(view)
        self.cache.forget_others(set(states))
        return family


def _counter(name: str, help_text: str, value: int) -> CounterMetricFamily:
    """An unlabelled counter (prometheus_client adds ``_total`` to the sample's name)."""
    return CounterMetricFamily(name, help_text, value=value)


# The REST server's own counters (``httpserver.Stats``): attribute -> (family, help).
SERVER_COUNTERS = {
    "accepted": ("lockstep_rest_connections_accepted", "REST connections accepted."),
    "evicted": (
        "lockstep_rest_connections_evicted",
        "REST connections closed at the connection cap to make room for a new one "
        "(idle ones first, then those whose request had not come in full).",
    ),
    "refused": (
        "lockstep_rest_connections_refused",
        "REST connections closed at once: at the cap, with none that could be closed instead.",
    ),
    "idle_timeouts": (
        "lockstep_rest_idle_timeouts",
        "Keep-alive REST connections closed after the idle timeout.",
    ),
    "slow_requests": (
        "lockstep_rest_slow_requests",
        "REST connections closed because a request's headers or body missed its deadline.",
    ),
    "accept_failures": (
        "lockstep_rest_accept_failures",
        "REST accept() failures that paused the listener (out of descriptors or memory).",
    ),
}


class ServerCollector:
    """A prometheus_client collector of the REST server's counters, read when collected
    (``stats``: an ``httpserver.Stats``, counted on the server's own thread; each is one
    integer, read as it is at that moment)."""

    def __init__(self, stats):
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        for attribute, (name, help_text) in SERVER_COUNTERS.items():
            yield _counter(name, help_text, getattr(self.stats, attribute))


def render_metrics(
    snapshot: MetricsSnapshot,
    handler_errors: int = 0,
    cache: RenderCache | None = None,
    rest_pacing: pacing.PacingStats | None = None,
    server_stats=None,
) -> str:
    """Prometheus text of the gateway's counters at ``snapshot``, one registry for all:
    ``rest_pacing``, the REST plane's CPU budget, and ``server_stats``, the REST server's
    counters (``httpserver.Stats``), if it has them (classic Ryu's server has neither)."""
    collectors = [
        GatewayCollector(snapshot, handler_errors, cache or RenderCache()),
        GuardCollector(snapshot.guard),
    ]
    if rest_pacing is not None:
        collectors.append(PacingCollector(rest_pacing))
    if server_stats is not None:
        collectors.append(ServerCollector(server_stats))
    return exposition(*collectors)


def exposition(*collectors) -> str:
    """The text format (0.0.4) of what ``collectors`` yield, by prometheus_client."""
    registry = CollectorRegistry(auto_describe=False)
    for collector in collectors:
        registry.register(collector)
    return generate_latest(registry).decode()


class PacingCollector:
    """The REST plane's CPU budget (``pacing.PacingStats``): what it used, what it waited."""

    def __init__(self, stats: pacing.PacingStats):
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self.stats
        yield _counter(
            "lockstep_rest_cpu_seconds",
            "CPU the REST API used: its threads, and the event loop on their behalf.",
            round(stats.cpu_seconds, 6),
        )
        yield _counter(
            "lockstep_rest_paced",
            "Times REST threads waited because the REST API had used its CPU budget.",
            stats.delays,
        )
        yield _counter(
            "lockstep_rest_paced_seconds",
            "Seconds REST requests waited for the REST API's CPU budget.",
            round(stats.delayed_seconds, 6),
        )
