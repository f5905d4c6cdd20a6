"""``GET /metrics``: the gateway's counters as Prometheus text, by prometheus_client.

The packet path counts in plain integers (``GatewayCounters``, the flow table's and the
balancer's counters) and pays nothing for metrics.  A scrape copies them on the loop
(``metrics_snapshot``) and prometheus_client turns the copy into text on the REST thread
(``render_metrics``: a ``GatewayCollector`` of that copy, ``generate_latest``), with the flood
guard's series (``guardview``), the REST plane's CPU budget and the REST server's counters in
the same registry.  Per-VIP and per-backend series exist for the balancer's VIPs and their
configured backends only.  Framework-free.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterator
from typing import NamedTuple

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ryu_app.api import pacing
from ryu_app.api.guardview import GuardCollector, GuardSnapshot, guard_snapshot
from ryu_app.api.pinview import PinCollector, PinView, pin_view
from ryu_app.api.views import BACKEND_UP, RenderCache, VipView, vip_views
from ryu_app.core.gateway import GatewayCore
from ryu_app.core.overload import OverloadView

# lockstep_backend_up's samples (one per backend of each VIP) shown in full up to this many;
# above it only those of backends down (``MetricsCollector._backend_up``).
BACKEND_SERIES_LIMIT = 10_000


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
    pins: PinView | None = None  # switch mode's pins and slot counters (``pinview``)
    second_chance: SecondChanceCounts | None = None


class SecondChanceCounts(NamedTuple):
    """Second chance's work (``core.secondchance``): misses sent to an earlier owner only,
    misses duplicated, flows duplicated now, duplication records evicted at capacity."""

    previous: int
    duplicated: int
    flows: int
    evicted: int


def second_chance_counts(core: GatewayCore) -> SecondChanceCounts:
    second = core.balancer.second_chance
    return SecondChanceCounts(second.previous, second.duplicated, len(second), second.evicted)


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
        pin_view(core, owners={}),  # (the metrics name backends by their VIPs' ids)
        second_chance_counts(core),
    )


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
        yield from self._backend_up()
        yield from self._overload()
        yield from self._second_chance()
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

    def _second_chance(self) -> Iterator[Metric]:
        counts = self.snapshot.second_chance
        if counts is None:
            return
        sent = CounterMetricFamily(
            "lockstep_second_chance",
            "TCP non-SYN misses of a recently changed slot sent by second chance: to the slot's"
            " earlier owner only (previous) or to it and the current owner (duplicate).",
            labels=("kind",),
        )
        sent.add_metric(("previous",), counts.previous)
        sent.add_metric(("duplicate",), counts.duplicated)
        yield sent
        yield GaugeMetricFamily(
            "lockstep_second_chance_flows",
            "Flows whose packets this gateway sends to an earlier owner too.",
            counts.flows,
        )
        yield _counter(
            "lockstep_second_chance_evictions",
            "Duplicated flows forgotten at capacity (a rule installed again sends to one).",
            counts.evicted,
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

    def _backend_up(self) -> Iterator[Metric]:
        """Per VIP, its configured and healthy backends (two samples each); per backend of each
        VIP, up or down, while there are at most ``BACKEND_SERIES_LIMIT`` of them (10,000 at
        100 x 100; 100,000 at 1,000 x 100 was ~10 MB a scrape).  Above it only the backends
        that are down keep their sample (at most the limit): ``lockstep_backend_up == 0``
        still names each one, and the omitted samples are counted."""
        states = self.snapshot.states
        configured = GaugeMetricFamily(
            "lockstep_vip_backends", "Backends configured in the VIP.", labels=("vip",)
        )
        healthy = GaugeMetricFamily(
            "lockstep_vip_backends_healthy",
            "Backends of the VIP this gateway considers healthy.",
            labels=("vip",),
        )
        for name, view in sorted(states.items()):
            configured.add_metric((name,), len(view.vip.backends))
            healthy.add_metric((name,), len(view.healthy))
        yield configured
        yield healthy
        family = GaugeMetricFamily(
            BACKEND_UP,
            "1 if this gateway considers the backend healthy.",
            labels=("vip", "backend"),
        )
        pairs = sum(len(view.vip.backends) for view in states.values())
        only_down = pairs > BACKEND_SERIES_LIMIT
        for _, view in sorted(states.items()):
            pacing.checkpoint()  # thousands of samples: the REST plane's budget applies
            if only_down:  # a sample per backend down only: ~0.3 s less for the first scrape
                room = BACKEND_SERIES_LIMIT - len(family.samples)
                down = [b.name for b in view.vip.backends if b.name not in view.healthy]
                for backend in down[: max(room, 0)]:
                    family.add_metric((view.vip.name, backend), 0)
            else:
                family.samples += self.cache.backend_up(view)
        self.cache.forget_others(set(states))
        yield family
        yield GaugeMetricFamily(
            "lockstep_backend_series_limit",
            "Per-backend samples of lockstep_backend_up shown in full up to this many.",
            BACKEND_SERIES_LIMIT,
        )
        yield GaugeMetricFamily(
            "lockstep_backend_series_omitted",
            "Samples of lockstep_backend_up left out (above the limit: the backends up).",
            pairs - len(family.samples),
        )


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
    now: float = 0.0,
) -> str:
    """Prometheus text of the gateway's counters at ``snapshot``, one registry for all:
    ``rest_pacing``, the REST plane's CPU budget, and ``server_stats``, the REST server's
    counters (``httpserver.Stats``), if it has them (classic Ryu's server has neither)."""
    collectors = [
        GatewayCollector(snapshot, handler_errors, cache or RenderCache()),
        GuardCollector(snapshot.guard),
    ]
    if snapshot.pins is not None:
        collectors.append(PinCollector(snapshot.pins, now))
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
