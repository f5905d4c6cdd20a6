"""GatewayService without HTTP: validation by the deployment's own rules, save-then-apply, and
what each change sends to the switch.  (Status codes and bodies are in test_rest.py.)"""

from __future__ import annotations

import dataclasses

import pytest

from ryu_app import ofmsg
from ryu_app.compat import ofproto_v1_3 as ofp
from ryu_app.core.balancer import TableCache
from ryu_app.service import BadRequest, Conflict, NotFound, digest, render_metrics
from topology import deployment as deployment_file
from topology.schema import ConfigError

API = {
    "name": "api",
    "address": "10.0.0.101",
    "port": 443,
    "table_size": 251,
    "backends": [{"name": "vm1", "tunnel_ip": "192.168.100.11", "mac": "02:00:00:00:01:01"}],
}


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
    punt, answers = harness.sent
    assert punt.priority == ofmsg.PRIORITY_VIP and punt.command == ofp.OFPFC_ADD
    assert answers.priority == ofmsg.PRIORITY_LOCAL and answers.command == ofp.OFPFC_ADD


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
    harness.service.delete_vip("web", harness.now)
    assert harness.service.deployment.vips == () and harness.saved == [()]
    assert harness.core.balancer.vips == {} and harness.core.prober.states == {}
    commands = sorted(m.command for m in harness.sent)
    assert commands == sorted([ofp.OFPFC_DELETE_STRICT] * 2 + [ofp.OFPFC_DELETE] * 4)


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
    assert "lockstep_handler_errors_total 7\n" in harness.service.metrics()
    assert "lockstep_handler_errors_total 0\n" in render_metrics(harness.core)
