"""GatewayService without HTTP: validation by the deployment's own rules, save-then-apply, and
what each change sends to the switch.  (Status codes and bodies are in test_rest.py.)"""

from __future__ import annotations

import dataclasses
import random
import sys
import threading
import time

import pytest

from ryu_app.api.metricsview import metrics_snapshot, render_metrics
from ryu_app.api.service import TABLE_WAIT_SECONDS, BadRequest, Conflict, GatewayService, NotFound
from ryu_app.api.views import digest
from ryu_app.core import pipeline
from ryu_app.core.balancer import TableCache, TableRequest
from ryu_app.core.flowkey import flow_from_fields
from ryu_app.core.gateway import GatewayCore
from ryu_app.core.maglev import TableSpec
from ryu_app.core.model import Backend, Vip
from ryu_app.core.serving import retire_grace
from tests.ryu_app.conftest import DEPLOYMENT
from tests.ryu_app.conftest import NEW_VIP as API
from tests.ryu_app.promtext import value
from tests.ryu_app.test_rest import VM5
from topology import deployment as deployment_file
from topology import graph
from topology.schema import ConfigError


def paths(error) -> list[str]:
    return [p.path for p in error.value.problems]


def test_create_is_validated_saved_then_applied(harness):
    seen_by_save = []

    def save(vips):
        seen_by_save.append(("api" in harness.core.balancer.vips, [v.name for v in vips]))

    harness.service.save = save
    data = harness.service.create_vip(API, harness.now)
    assert seen_by_save == [(False, ["web", "api"])]  # saved before the core changed
    assert "api" in harness.core.balancer.vips
    assert deployment_file.parse_vip(data) == harness.service.vip("api")
    assert [v.name for v in harness.service.deployment.vips] == ["web", "api"]
    assert len(harness.sent) == 2  # the punt and the return of the probes' answers
    assert harness.where(harness.syn(40000, dst="10.0.0.101", dport=443)).to_controller
    assert len(harness.table.rules_at(pipeline.PRIORITY_LOCAL)) == 2  # web's and api's


def test_create_existing_name_is_a_conflict(harness):
    with pytest.raises(Conflict):
        harness.service.create_vip({**API, "name": "web"}, harness.now)


def test_same_service_under_another_name_is_refused_by_the_deployment_rules(harness):
    with pytest.raises(ConfigError) as caught:
        harness.service.create_vip({**API, "address": "10.0.0.100", "port": 80}, harness.now)
    assert paths(caught) == ["vips[1].address"]


def test_a_vm_described_two_ways_is_refused(harness):
    other_vm1 = {"name": "vm1", "tunnel_ip": "192.168.100.99", "mac": "02:00:00:00:01:01"}
    with pytest.raises(ConfigError) as caught:
        harness.service.create_vip({**API, "backends": [other_vm1]}, harness.now)
    assert paths(caught) == ["vips[1].backends[0]"]


def test_ipv6_vip_needs_an_ipv6_address_on_every_gateway(harness):
    with pytest.raises(ConfigError) as caught:
        harness.service.create_vip({**API, "address": "fd00:100::80"}, harness.now)
    assert paths(caught) == ["gateways[0].addresses", "gateways[1].addresses"]


def test_replace_with_a_body_that_is_not_an_object_is_a_schema_error(harness):
    with pytest.raises(ConfigError) as caught:
        harness.service.replace_vip("web", ["not", "a", "vip"], harness.now)
    assert paths(caught) == [""]


def test_replace_name_mismatch_is_a_bad_request_naming_name(harness):
    with pytest.raises(BadRequest) as caught:
        harness.service.replace_vip("web", {**API, "name": "api"}, harness.now)
    assert paths(caught) == ["name"]


def test_unknown_names_are_not_found(harness):
    service = harness.service
    with pytest.raises(NotFound):
        service.vip("nope")
    with pytest.raises(NotFound):
        service.delete_vip("nope", harness.now)
    with pytest.raises(NotFound):
        service.add_backend("nope", API["backends"][0], harness.now)
    with pytest.raises(NotFound):
        service.update_backend("web", "nope", {"weight": 0}, harness.now, merge=True)
    with pytest.raises(NotFound):
        service.delete_backend("web", "nope", harness.now)
    assert harness.saved == [] and harness.sent == []


def test_update_backend_body_must_be_an_object(harness):
    with pytest.raises(BadRequest) as caught:
        harness.service.update_backend("web", "vm1", [], harness.now, merge=False)
    assert paths(caught) == [""]


def test_patch_changes_only_the_given_fields(harness):
    before = harness.service.vip("web").backend("vm3")
    assert before.weight == 1
    data = harness.service.update_backend("web", "vm3", {"weight": 0}, harness.now, merge=True)
    assert data["backends"][2] == dataclasses.asdict(dataclasses.replace(before, weight=0))
    assert harness.core.balancer.vips["web"].vip.backend("vm3").weight == 0


def test_delete_vip_forgets_it_everywhere(harness):
    harness.client_packet(40000)
    harness.service.delete_vip("web", harness.now)
    assert harness.service.deployment.vips == () and harness.saved == [()]
    assert harness.core.balancer.vips == {} and harness.core.prober.states == {}
    assert harness.where(harness.syn(40001)).dropped  # the switch too: no punt ...
    assert harness.where(harness.syn(40000)).dropped  # ... no flow's rule, no probe answers
    assert harness.table.rules_at(pipeline.PRIORITY_LOCAL) == []


def test_a_failed_save_leaves_deployment_core_and_switch_alone(harness):
    deployment = harness.service.deployment
    web = harness.core.balancer.vips["web"]
    harness.save_error = PermissionError(13, "Permission denied")
    with pytest.raises(OSError):
        harness.service.create_vip(API, harness.now)
    with pytest.raises(OSError):
        harness.service.delete_backend("web", "vm1", harness.now)
    assert harness.service.deployment is deployment
    assert harness.core.balancer.vips == {"web": web} and web.vip == deployment.vip("web")
    assert harness.sent == []


def test_status_reports_a_table_not_yet_rebuilt(make_harness):
    harness = make_harness(tables=TableCache())  # nothing prebuilt for this one
    harness.service.update_backend("web", "vm2", {"weight": 3}, harness.now, merge=True)
    assert harness.service.status()["vips"]["web"]["table_current"] is False
    harness.settle()
    assert harness.service.status()["vips"]["web"]["table_current"] is True


def test_digest_ignores_key_order_but_not_values():
    assert digest({"a": 1, "b": [1, 2]}) == digest({"b": [1, 2], "a": 1})
    assert digest({"a": 1}) != digest({"a": 2})
    assert digest(["vm1", "vm2"]) != digest(["vm2", "vm1"])  # callers sort
    assert len(digest({})) == 16


def test_metrics_report_the_shells_handler_errors(harness):
    harness.service.handler_errors = lambda: 7
    assert value(harness.service.metrics(), "lockstep_handler_errors_total") == 7
    assert (
        value(render_metrics(metrics_snapshot(harness.core)), "lockstep_handler_errors_total") == 0
    )


# ---- issue 11: what a request costs the event loop -------------------------------------------


class LoopCounter:
    """An ``on_loop`` that runs each hand-over at once and counts the function calls it made
    (Python and C): a measure of the work a request does on the loop that, unlike a timing,
    does not depend on how busy this machine is.  Timings are bench_newflow's job."""

    def __init__(self):
        self.calls: list[int] = []
        self.running = False

    def __call__(self, function):
        count = 0

        def profile(frame, event, arg):
            nonlocal count
            count += event in ("call", "c_call")

        self.running = True
        sys.setprofile(profile)
        try:
            return function()
        finally:
            sys.setprofile(None)
            self.running = False
            self.calls.append(count)


def big_deployment(vips: int = 100, backends: int = 100):
    """``vips`` VIPs of the same ``backends`` VMs, on the example file's gateways."""
    machines = tuple(
        Backend(f"vm{i}", f"192.168.100.{11 + i}", f"02:00:00:00:02:{i:02x}", 1 + (i == 0))
        for i in range(backends)
    )
    return dataclasses.replace(
        DEPLOYMENT,
        vips=tuple(
            Vip(f"vip{n}", f"10.0.0.{n + 1}", 80, table_size=251, backends=machines)
            for n in range(vips)
        ),
    )


@pytest.fixture(scope="module")
def big():
    """A gateway with 100 VIPs of 100 backends and 300,000 flows, its service timed."""
    deployment = big_deployment()
    gateway = deployment.gateway("gw1")
    core = GatewayCore(gateway, rng=random.Random(1))
    core.set_vips(list(deployment.vips), 0.0)  # (its tables are never built: not needed here)
    core.on_connect(0.0)
    core.on_ports({gateway.uplink_port: 1, gateway.tunnel_port: 2}, 0.0)
    ids = [i for state in core.balancer.vips.values() for i in state.backend_ids.values()]
    for number in range(300_000):
        core.balancer.flows.put(number.to_bytes(13, "big"), ids[number % len(ids)], 0.0, 0)
    timer = LoopCounter()
    saved = []

    def save(vips):
        assert not timer.running, "the state file was written on the event loop"
        time.sleep(0.02)  # an fsync
        saved.append(vips)

    service = GatewayService(core, deployment, gateway, apply=lambda effects: None, save=save)
    service.on_loop = timer
    return service, timer


READS = {
    "status": lambda s: s.status(),
    "health": lambda s: s.health(1.0, 1.0),
    "metrics": lambda s: s.metrics(),
    "flows, deepest offset": lambda s: s.flows({"offset": "299000", "limit": "1000"}, 1.0),
    "flows, a deep cursor": lambda s: s.flows({"cursor": "17-4000", "limit": "1000"}, 1.0),
    "lookup": lambda s: s.lookup(
        {"src_ip": "10.1.0.1", "src_port": "5", "dst_ip": "10.0.0.7", "dst_port": "80"}, 1.0
    ),
}
# Calls a request may make on the loop: a page of 1,000 flows and 100 VIPs x 100 backends take
# ~300-1,300 here (~0.1-0.9 ms); before issue 11 a deep page walked the table (300,000+ calls,
# ~130 ms at a million flows) and status rendered every VIP on the loop.
LOOP_CALLS = 2_000


@pytest.mark.parametrize("read", sorted(READS))
def test_a_read_does_bounded_work_on_the_event_loop_at_scale(big, read):
    service, timer = big
    timer.calls.clear()
    answer = READS[read](service)
    (calls,) = timer.calls  # one hand-over per request
    assert answer and calls < LOOP_CALLS, f"{read}: {calls} calls on the loop"


def test_a_change_saves_off_the_loop_and_applies_on_it_briefly(big):
    service, timer = big
    for weight in (3, 4, 5):
        timer.calls.clear()
        data = service.update_backend("vip7", "vm5", {"weight": weight}, 1.0, merge=True)
        assert data["backends"][5]["weight"] == weight
        assert service.core.balancer.vips["vip7"].vip.backend("vm5").weight == weight
        (calls,) = timer.calls
        assert calls < LOOP_CALLS, f"{calls} calls on the loop"


def test_an_offset_given_with_a_cursor_counts_from_the_cursor(big):
    """Both at once (schemathesis sends that): the offset skips entries after the cursor."""
    service, _ = big
    first = service.flows({"limit": "1000"}, 1.0)
    cursor = first["next_cursor"]
    after = service.flows({"cursor": cursor, "limit": "30"}, 1.0)["flows"]
    skipped = service.flows({"cursor": cursor, "offset": "10", "limit": "20"}, 1.0)
    assert skipped["flows"] == after[10:30]
    assert skipped["offset"] == 1010 and skipped["next_offset"] == 1030


def test_flows_follow_the_cursor_through_a_sharded_table(big):
    service, _ = big
    seen, cursor, pages = 0, None, 0
    while True:
        params = {"limit": "1000"} | ({"cursor": cursor} if cursor else {})
        page = service.flows(params, 1.0)
        seen += len(page["flows"])
        pages += 1
        assert "offset" not in page if cursor else page["offset"] == 0
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == page["count"] == 300_000 and pages >= 300
    deep = service.flows({"offset": "299990", "limit": "100"}, 1.0)
    assert len(deep["flows"]) == 10 and deep["next_offset"] is None


@pytest.mark.parametrize(
    ("params", "path"),
    [
        ({"cursor": "nonsense"}, "cursor"),
        ({"cursor": "1-2-3"}, "cursor"),
        ({"cursor": "-1-2"}, "cursor"),
        ({"cursor": "0-5", "offset": "x"}, "offset"),
    ],
)
def test_bad_cursors_are_bad_requests(harness, params, path):
    with pytest.raises(BadRequest) as caught:
        harness.service.flows(params, harness.now)
    assert paths(caught) == [path]


def test_a_cursor_past_the_end_is_an_empty_last_page(harness):
    page = harness.service.flows({"cursor": "999-0"}, harness.now)
    assert page["flows"] == [] and page["next_cursor"] is None and page["count"] == 0


# ---- issue 11: a change answers once its tables are in, else 202 --------------------------------


def test_a_change_whose_table_is_not_in_by_the_deadline_is_accepted_not_ok(make_harness):
    harness = make_harness(tables=TableCache())  # the new table must be built
    asked = []

    def tables_ready(names, timeout):
        asked.append((names, timeout))
        return False  # the builder is still at it

    harness.service.tables_ready = tables_ready
    response = harness.request("PATCH", "/v1/vips/web/backends/vm2", {"weight": 3})
    assert response.status_int == 202, response.text
    assert asked == [(["web"], TABLE_WAIT_SECONDS)]
    body = response.json
    assert body["tables_pending"] == ["web"] and body["vip"]["backends"][1]["weight"] == 3
    assert "still being built" in body["detail"]
    assert harness.saved[-1][0].backend("vm2").weight == 3  # saved and applied all the same
    assert harness.core.balancer.vips["web"].vip.backend("vm2").weight == 3


def test_a_change_whose_table_is_in_answers_as_before(make_harness):
    harness = make_harness(tables=TableCache())
    harness.service.tables_ready = lambda names, timeout: True
    response = harness.request("POST", "/v1/vips/web/backends", VM5)
    assert response.status_int == 201 and response.json["backends"][-1]["name"] == "vm5"


def test_a_change_the_loop_never_ran_is_taken_back_from_the_state_file(harness):
    before = harness.service.deployment

    def never(function):
        raise TimeoutError("the controller did not answer within 10 s")

    harness.service.on_loop = never
    with pytest.raises(TimeoutError):
        harness.service.update_backend("web", "vm1", {"weight": 0}, harness.now, merge=True)
    assert [vips[0].backend("vm1").weight for vips in harness.saved] == [0, 1]  # and back
    assert harness.service.deployment is before and harness.sent == []


def test_writes_from_many_threads_all_land(harness):
    """One at a time: each starts from the deployment the one before it left."""
    slow = harness.service.save

    def save(vips):
        time.sleep(0.01)
        slow(vips)

    harness.service.save = save
    names = [f"vm{n}" for n in range(5, 13)]
    errors = []

    def add(name: str) -> None:
        body = {**VM5, "name": name, "tunnel_ip": f"192.168.100.{100 + int(name[2:])}"}
        try:
            harness.service.add_backend("web", body, harness.now)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=add, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    backends = {b.name for b in harness.service.vip("web").backends}
    assert set(names) <= backends and len(harness.saved) == len(names)


# ---- views -------------------------------------------------------------------------------------


def test_health_shows_static_backends_as_healthy_and_not_probed(harness):
    body = {**harness.get_json("/v1/vips/web"), "health": {"type": "none"}}
    assert harness.request("PUT", "/v1/vips/web", body).status_int == 200
    rows = harness.service.health(harness.now, harness.now)["vips"]["web"]
    assert rows and all(row["healthy"] and row["probing"] is False for row in rows)
    assert all(set(row) == {"backend", "healthy", "weight", "probing"} for row in rows)


def test_status_and_metrics_follow_changes_through_their_caches(harness):
    first = harness.service.status()
    harness.core.set_health("web", "vm1", False, harness.now)
    second = harness.service.status()
    assert second["vips"]["web"]["healthy"] == ["vm2", "vm3", "vm4"]
    assert second["vips"]["web"]["healthy_digest"] != first["vips"]["web"]["healthy_digest"]
    assert second["config_digest"] == first["config_digest"]
    assert value(harness.service.metrics(), "lockstep_backend_up", vip="web", backend="vm1") == 0
    harness.service.update_backend("web", "vm2", {"weight": 2}, harness.now, merge=True)
    third = harness.service.status()
    assert third["config_digest"] != second["config_digest"]
    assert third["vips"]["web"]["config_digest"] != second["vips"]["web"]["config_digest"]
    harness.core.set_health("web", "vm1", True, harness.now)
    assert value(harness.service.metrics(), "lockstep_backend_up", vip="web", backend="vm1") == 1


def test_metrics_count_failed_table_builds(harness):
    assert value(harness.service.metrics(), "lockstep_table_build_failures_total") == 0
    request = TableRequest("web", TableSpec(65537, (("vm1", 1),)))
    harness.core.table_build_failed(request, MemoryError("a test's"), harness.now)
    assert value(harness.service.metrics(), "lockstep_table_build_failures_total") == 1


# ---- the stale-entry rule and the cost of validating a write ---------------------------------


def test_lookup_and_the_packet_path_apply_one_stale_entry_rule(harness):
    """After a drain (entries stand), a backend going down (its entries stand for its grace)
    and its grace ending (they are stale), the lookup answers "table" for exactly the flows
    the packet path serves from the table."""
    balancer = harness.core.balancer
    ports = range(40000, 40300)
    flows = [flow_from_fields("10.1.0.11", port, "10.0.0.100", 80, "tcp") for port in ports]
    for flow in flows:
        balancer.pick(flow, harness.now)
    harness.service.update_backend("web", "vm1", {"weight": 0}, harness.now, merge=True)
    harness.apply(harness.core.set_health("web", "vm2", False, harness.now))
    harness.settle()

    def both_answers() -> list[tuple[str, str]]:
        sources = []
        for port, flow in zip(ports, flows, strict=True):
            query = {"src_ip": "10.1.0.11", "src_port": str(port), "dst_ip": "10.0.0.100"}
            answer = harness.service.lookup({**query, "dst_port": "80"}, harness.now)
            decision = balancer.pick(flow, harness.now)
            assert (answer["source"] == "table") == decision.from_table, port
            assert answer["backend"] == decision.backend.name, port
            sources.append((answer["source"], answer["backend"]))
        return sources

    sources = both_answers()
    assert ("table", "vm1") in sources  # drained: its flows stay
    assert ("table", "vm2") in sources  # down, within its grace: its flows stay
    assert not any(source == "hash" for source, _ in sources)
    grace = retire_grace(balancer.vips["web"].vip.health)
    harness.apply(harness.core.health_tick(harness.now + grace))  # still down: retired
    sources = both_answers()
    assert ("table", "vm1") in sources
    assert not any(backend == "vm2" for _, backend in sources)
    assert any(source == "hash" for source, _ in sources)  # vm2's flows, re-hashed


def test_a_write_walks_the_underlay_graph_only_for_new_tunnel_ips(harness, monkeypatch):
    """The example has an underlay: a weight change checks no reachability (it cannot break
    it), a backend with a new tunnel IP is checked, and refused if the underlay misses it."""
    built = []
    build_graph = graph.build_graph
    monkeypatch.setattr(graph, "build_graph", lambda d: built.append(d) or build_graph(d))
    harness.service.update_backend("web", "vm2", {"weight": 2}, harness.now, merge=True)
    harness.service.create_vip({**API, "name": "api2", "port": 444}, harness.now)  # vm1 again
    assert built == []
    harness.service.add_backend("web", VM5, harness.now)
    assert len(built) == 1
    outside = {**VM5, "name": "vm6", "tunnel_ip": "192.168.200.16", "mac": "02:00:00:00:01:06"}
    with pytest.raises(ConfigError) as caught:
        harness.service.add_backend("web", outside, harness.now)
    assert paths(caught) == ["vips[0].backends[5].tunnel_ip"]
    assert "cannot be reached from gateway(s) gw1, gw2" in str(caught.value)
