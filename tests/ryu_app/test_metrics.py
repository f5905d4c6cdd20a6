"""GET /metrics (issue 12): prometheus_client renders what the controller counts.

The controller's packet path keeps incrementing plain integers; a scrape copies them on the
event loop (``metricsview.metrics_snapshot``) and a prometheus_client collector turns the copy into
metric families off the loop (``metricsview.GatewayCollector``, ``generate_latest``).  The names,
help texts, types and labels are those of the hand-written text it replaced (``FAMILIES``);
the REST server's own connection counters come with them; per-VIP and per-backend series exist
only for what is configured.
"""

from __future__ import annotations

import threading
import urllib.request

from prometheus_client import CollectorRegistry

from ryu_app.api import metricsview, rest, views
from ryu_app.api.httpserver import Stats
from tests.ryu_app.fake_oftable import raw_packet_in
from tests.ryu_app.promtext import families, samples, value

# Family (as prometheus_client's parser names it: counters without ``_total``) -> type, help,
# label names: exactly what the hand-written renderer served before issue 12, and issue 13's.
FAMILIES = {
    "lockstep_packet_ins": ("counter", "Packet-ins received.", ()),
    "lockstep_flows_installed": ("counter", "Per-flow rules installed.", ()),
    "lockstep_packet_outs": ("counter", "Packet-outs of client packets.", ()),
    "lockstep_flows_removed": ("counter", "Per-flow rules the switch expired.", ()),
    "lockstep_malformed_packets": (
        "counter",
        "Packet-ins dropped as not load-balanceable, by reason.",
        ("reason",),
    ),
    "lockstep_flow_table_hits": ("counter", "Flow-table hits.", ()),
    "lockstep_flow_table_misses": ("counter", "Flow-table misses.", ()),
    "lockstep_flow_table_non_syn_misses": (
        "counter",
        "Misses of TCP packets that cannot open a connection (moved flows, restarts).",
        (),
    ),
    "lockstep_flow_table_evictions": ("counter", "Entries evicted at capacity.", ()),
    "lockstep_flow_table_entries": ("gauge", "Flows in this gateway's table.", ()),
    "lockstep_probes": ("counter", "Health probe results.", ("result",)),
    "lockstep_backend_up": (
        "gauge",
        "1 if this gateway considers the backend healthy.",
        ("backend", "vip"),
    ),
    "lockstep_table_rebuilds": (
        "counter",
        "Maglev tables swapped in after a change of healthy set or weights.",
        (),
    ),
    "lockstep_table_build_failures": (
        "counter",
        "Maglev table builds that failed (each is retried with backoff while still wanted).",
        (),
    ),
    "lockstep_handler_errors": ("counter", "Event handlers that raised (event dropped).", ()),
    # issue 13: the flood guard and the switch's errors (none in this test: no labels seen)
    "lockstep_flood_guard_mode": (
        "gauge",
        "1 for where the flood guard runs: switch (meters), controller (no meters), off.",
        ("mode",),
    ),
    "lockstep_flood_guard_rate": (
        "gauge",
        "New connections per second the gateway lets through to its controller.",
        (),
    ),
    "lockstep_flood_guard_dropped": (
        "counter",
        "Packets of new connections the flood guard dropped, by where it dropped them.",
        ("where",),
    ),
    "lockstep_probe_answers_dropped": (
        "counter",
        "Answers to health probes the switch's probe meter dropped (should stay 0).",
        (),
    ),
    "lockstep_switch_errors": (
        "counter",
        "Messages the switch refused, by OpenFlow error type and code (-1: other kinds).",
        (),
    ),
    # Issue 13: the gateway's own overload, and each VIP's panic.
    "lockstep_overloaded": (
        "gauge",
        "1 while this gateway finds itself overloaded (unanswered probes are inconclusive).",
        (),
    ),
    "lockstep_overload_episodes": ("counter", "Overload episodes this gateway saw.", ()),
    # Issue 15: bounded per-backend series; per-VIP counts that hold at any size.
    "lockstep_vip_backends": ("gauge", "Backends configured in the VIP.", ("vip",)),
    "lockstep_vip_backends_healthy": (
        "gauge",
        "Backends of the VIP this gateway considers healthy.",
        ("vip",),
    ),
    "lockstep_backend_series_limit": (
        "gauge",
        "Per-backend samples of lockstep_backend_up shown in full up to this many.",
        (),
    ),
    "lockstep_backend_series_omitted": (
        "gauge",
        "Samples of lockstep_backend_up left out (above the limit: the backends up).",
        (),
    ),
    "lockstep_vip_panic": (
        "gauge",
        "1 while too few of the VIP's backends are healthy: new flows go to all of them.",
        ("vip",),
    ),
    # Issue 14: switch mode's pins and slot counters read back from the switch (no VIP of
    # this test is in switch mode: no labels seen).
    "lockstep_switch_pins": (
        "gauge",
        "Pins (learned per-flow rules) in the switch, per backend of a switch-mode VIP, "
        "as of the last read (all of them, kept or not).",
        (),
    ),
    "lockstep_slot_packets": (
        "counter",
        "Packets the switch's slot rules sent to a backend: syn (new connections) or other "
        "(first packets of flows without a pin yet); a rule rewritten starts again at 0.",
        (),
    ),
    "lockstep_switch_pin_series_omitted": (
        "gauge",
        "Backends of switch-mode VIPs given no pin or slot series (beyond the first"
        " 10,000 in VIP-name order: /metrics stays bounded).",
        (),
    ),
    "lockstep_switch_pins_age_seconds": (
        "gauge",
        "Age of the last read of the switch's pins (-1: none yet, or no switch-mode VIP).",
        (),
    ),
    "lockstep_switch_pins_truncated": (
        "gauge",
        "Pins the last read counted but did not keep (over its bound): not listed, not"
        " found by lookups.",
        (),
    ),
    "lockstep_switch_pin_reads": (
        "counter",
        "Flow statistics requests for the switch's pins and slot rules, by outcome.",
        ("outcome",),
    ),
    # Issue 16: second chance (the double change).
    "lockstep_second_chance": (
        "counter",
        "TCP non-SYN misses of a recently changed slot sent by second chance: to the slot's"
        " earlier owner only (previous) or to it and the current owner (duplicate).",
        ("kind",),
    ),
    "lockstep_second_chance_flows": (
        "gauge",
        "Flows whose packets this gateway sends to an earlier owner too.",
        (),
    ),
    "lockstep_second_chance_evictions": (
        "counter",
        "Duplicated flows forgotten at capacity (a rule installed again sends to one).",
        (),
    ),
}


def shape(text: str) -> dict:
    return {
        name: (
            family.type,
            family.documentation,
            tuple(sorted({k for s in family.samples for k in s.labels})),
        )
        for name, family in families(text).items()
    }


def traffic(harness) -> None:
    """Three SYNs (two of one flow), one frame that is not IP, vm1 marked down."""
    harness.client_packet(42000)
    harness.client_packet(42000)
    harness.client_packet(42001)
    harness.core.on_messages([raw_packet_in(1, b"\x00" * 20)], harness.now)
    harness.core.set_health("web", "vm1", False, harness.now)


def test_every_family_keeps_its_name_type_help_and_labels(harness):
    traffic(harness)
    assert shape(harness.service.metrics()) == FAMILIES


def test_samples_carry_the_controllers_counts(harness):
    traffic(harness)
    text = harness.service.metrics()
    found = samples(text)
    assert found[("lockstep_packet_ins_total", frozenset())] == 4
    assert found[("lockstep_flows_installed_total", frozenset())] == 2
    assert found[("lockstep_packet_outs_total", frozenset())] == 3
    assert value(text, "lockstep_malformed_packets_total", reason="not-ip") == 1
    assert value(text, "lockstep_flow_table_misses_total") == 2
    assert value(text, "lockstep_flow_table_hits_total") == 1
    assert value(text, "lockstep_flow_table_entries") == 2
    assert value(text, "lockstep_backend_up", vip="web", backend="vm1") == 0
    assert value(text, "lockstep_backend_up", vip="web", backend="vm2") == 1


def test_the_collector_is_prometheus_clients_and_reads_the_snapshot_it_was_given(harness):
    """Registered like any collector; what it reports is the snapshot's, not later counts."""
    harness.client_packet(42000)
    snapshot = metricsview.metrics_snapshot(harness.core)
    harness.client_packet(42001)  # after the snapshot
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metricsview.GatewayCollector(snapshot, 5, views.RenderCache()))
    assert registry.get_sample_value("lockstep_packet_ins_total") == 1
    assert registry.get_sample_value("lockstep_handler_errors_total") == 5
    up = {"vip": "web", "backend": "vm3"}
    assert registry.get_sample_value("lockstep_backend_up", up) == 1


def test_backend_series_exist_for_configured_backends_only(harness):
    def backend_series() -> set[tuple[str, str]]:
        family = families(harness.service.metrics())["lockstep_backend_up"]
        return {(s.labels["vip"], s.labels["backend"]) for s in family.samples}

    configured = {(v.name, b.name) for v in harness.service.deployment.vips for b in v.backends}
    assert backend_series() == configured
    harness.service.delete_backend("web", "vm4", harness.now)
    assert backend_series() == configured - {("web", "vm4")}
    for vip in [v.name for v in harness.service.deployment.vips]:
        harness.service.delete_vip(vip, harness.now)
    assert backend_series() == set()
    # A packet to an address no VIP has adds no series (a client cannot make up labels).
    before = set(samples(harness.service.metrics()))
    harness.client_packet(42000, dst="10.9.9.9")
    assert set(samples(harness.service.metrics())) == before


def test_the_rest_servers_counters_are_served_beside_the_gateways(harness):
    harness.app.server_stats = Stats(accepted=9, evicted=3, refused=2, idle_timeouts=4)
    text = harness.request("GET", "/metrics").text
    assert value(text, "lockstep_rest_connections_accepted_total") == 9
    assert value(text, "lockstep_rest_connections_evicted_total") == 3
    assert value(text, "lockstep_rest_connections_refused_total") == 2
    assert value(text, "lockstep_rest_idle_timeouts_total") == 4
    assert value(text, "lockstep_rest_slow_requests_total") == 0
    assert value(text, "lockstep_rest_accept_failures_total") == 0
    assert families(text)["lockstep_rest_connections_evicted"].type == "counter"
    assert value(text, "lockstep_packet_ins_total") == 0  # one text: the gateway's too


def test_a_real_rest_server_counts_the_connections_it_accepted(harness):
    server = rest.make("127.0.0.1", 0, harness.app)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.port}/metrics"
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        counts = []
        for _ in range(3):  # a connection each
            with opener.open(url, timeout=5) as response:
                text = response.read().decode()
            counts.append(value(text, "lockstep_rest_connections_accepted_total"))
        assert counts == [1, 2, 3]
    finally:
        server.shutdown()
        thread.join(5)


def test_overload_inconclusive_probes_and_panic_are_exported(harness):
    """A flood of packet-ins makes the gateway overloaded; the probes it leaves unanswered are
    counted as inconclusive; three of four backends down puts the VIP in panic."""
    core, now = harness.core, harness.now
    core.health_tick(now)
    core.on_messages([raw_packet_in(1, b"\x00" * 20)] * 6000, now + 0.5)
    core.health_tick(now + 1.0)  # the rate over the last second: 6,000/s; all probes out
    core.health_tick(now + 2.0)  # and unanswered by their deadline
    for backend in ("vm1", "vm2", "vm3"):
        core.set_health("web", backend, False, now + 3.0)
    text = harness.service.metrics()
    assert value(text, "lockstep_overloaded") == 1
    assert value(text, "lockstep_overload_episodes_total") == 1
    assert value(text, "lockstep_probes_total", result="inconclusive") == 4
    assert value(text, "lockstep_probes_total", result="fail") == 0
    assert value(text, "lockstep_vip_panic", vip="web") == 1
    core.set_health("web", "vm1", True, now + 4.0)
    assert value(harness.service.metrics(), "lockstep_vip_panic", vip="web") == 0


def test_above_the_limit_only_backends_down_keep_a_sample_and_the_rest_are_counted(
    harness, monkeypatch
):
    traffic(harness)  # vm1 of "web" is down, its other backends up
    text = harness.service.metrics()
    assert value(text, "lockstep_backend_series_omitted") == 0
    configured = value(text, "lockstep_vip_backends", vip="web")
    healthy = value(text, "lockstep_vip_backends_healthy", vip="web")
    assert configured == 4 and healthy == 3
    monkeypatch.setattr(metricsview, "BACKEND_SERIES_LIMIT", 2)
    text = harness.service.metrics()
    shown = [key for key in samples(text) if key[0] == "lockstep_backend_up"]
    assert shown == [("lockstep_backend_up", frozenset({("vip", "web"), ("backend", "vm1")}))]
    assert value(text, "lockstep_backend_up", vip="web", backend="vm1") == 0
    assert value(text, "lockstep_backend_series_omitted") == 3
    assert value(text, "lockstep_vip_backends_healthy", vip="web") == 3
