"""The REST API in-process (``Request.blank(...).get_response(app)``): status codes, error
bodies that name the field, authorisation, and that a rejected request changes nothing."""

from __future__ import annotations

import copy
import json

import pytest
from webob import Request

from ryu_app.api.rest import MAX_BODY, RestApi
from ryu_app.core import flowkey, pipeline
from ryu_app.core.serving import retire_grace
from tests.ryu_app.promtext import families, value

API_VIP = {
    "name": "api",
    "address": "10.0.0.101",
    "port": 443,
    "table_size": 251,
    "backends": [
        {"name": "vm1", "tunnel_ip": "192.168.100.11", "mac": "02:00:00:00:01:01"},
        {"name": "vm2", "tunnel_ip": "192.168.100.12", "mac": "02:00:00:00:01:02", "weight": 2},
    ],
}
VM5 = {"name": "vm5", "tunnel_ip": "192.168.100.15", "mac": "02:00:00:00:01:05"}
LOOKUP = "/v1/lookup?src_ip=10.1.0.11&src_port=40000&dst_ip=10.0.0.100&dst_port=80"


def web(harness) -> dict:
    return harness.get_json("/v1/vips/web")


def problem_paths(response) -> list[str]:
    return [p["path"] for p in response.json.get("problems", [])]


def placed(harness, ports=range(40000, 40040)) -> list[str]:
    """Clients' connections to VIP web, placed by the controller (their rules in the switch):
    the backends they went to."""
    for port in ports:
        harness.client_packet(port)
    return harness.flow_backends()


# ---- VIPs ----------------------------------------------------------------------------------


def test_list_and_get_vips(harness):
    response = harness.request("GET", "/v1/vips")
    assert response.status_int == 200 and response.content_type == "application/json"
    (vip,) = response.json["vips"]
    assert vip["name"] == "web" and vip["address"] == "10.0.0.100" and vip["port"] == 80
    assert [b["name"] for b in vip["backends"]] == ["vm1", "vm2", "vm3", "vm4"]
    assert web(harness) == vip
    assert harness.get_json("/v1/vips/web/backends") == vip["backends"]


def test_create_vip_is_201_saved_and_punted(harness):
    response = harness.request("POST", "/v1/vips", API_VIP)
    assert response.status_int == 201
    created = response.json
    assert created["name"] == "api" and created["idle_timeout"] == 60  # tcp default filled in
    assert created["health"]["type"] == "tcp" and created["backends"][1]["weight"] == 2
    assert harness.get_json("/v1/vips/api") == created
    assert [v.name for v in harness.saved[-1]] == ["web", "api"]
    assert harness.where(harness.syn(40000, dst="10.0.0.101", dport=443)).to_controller
    assert not harness.where(harness.syn(40000, dst="10.0.0.101", dport=444)).to_controller
    (answers,) = harness.table.rules_at(pipeline.PRIORITY_LOCAL)[1:]  # web's, then api's
    assert answers.match["tcp_src"] == 443  # the return of its health probes
    assert "api" in harness.core.balancer.vips and ("api", "vm2") in harness.core.prober.states


def test_create_of_an_existing_name_is_409(harness):
    response = harness.request("POST", "/v1/vips", {**API_VIP, "name": "web"})
    assert response.status_int == 409 and "web" in response.json["error"]


def test_replace_vip_drops_the_flows_of_a_removed_backend(harness):
    before = placed(harness)
    assert "vm4" in before
    body = web(harness)
    body["backends"] = body["backends"][:3]
    response = harness.request("PUT", "/v1/vips/web", body)
    assert response.status_int == 200 and len(response.json["backends"]) == 3
    assert harness.flow_backends() == [b for b in before if b != "vm4"]
    assert [b["name"] for b in web(harness)["backends"]] == ["vm1", "vm2", "vm3"]


def test_put_of_a_new_name_creates_it_and_the_name_may_be_left_to_the_url(harness):
    body = {k: v for k, v in API_VIP.items() if k != "name"}
    response = harness.request("PUT", "/v1/vips/api", body)
    assert response.status_int == 200 and response.json["name"] == "api"
    assert [v["name"] for v in harness.get_json("/v1/vips")["vips"]] == ["web", "api"]


def test_delete_vip_is_204_and_removes_its_rules(harness):
    assert placed(harness)
    response = harness.request("DELETE", "/v1/vips/web")
    assert response.status_int == 204 and response.body == b""
    assert harness.request("GET", "/v1/vips/web").status_int == 404
    assert harness.get_json("/v1/vips") == {"vips": []}
    assert harness.flow_backends() == []  # each backend's flows went
    assert not harness.where(harness.syn(40000)).to_controller  # no punt ...
    assert harness.table.rules_at(pipeline.PRIORITY_LOCAL) == []  # ... nor probe answers
    assert harness.saved == [()]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/vips/nope"),
        ("DELETE", "/v1/vips/nope"),
        ("GET", "/v1/vips/nope/backends"),
        ("POST", "/v1/vips/nope/backends"),
        ("PATCH", "/v1/vips/web/backends/nope"),
        ("DELETE", "/v1/vips/web/backends/nope"),
        ("GET", "/v2/vips"),
        ("GET", "/v1/vips/web/backends/vm1/extra"),
        ("GET", "/"),
    ],
)
def test_unknown_vip_backend_or_path_is_404(harness, method, path):
    body = VM5 if method in ("POST", "PATCH") else None
    response = harness.request(method, path, body)
    assert response.status_int == 404 and response.content_type == "application/json"
    assert response.json["error"]


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("DELETE", "/v1/vips", "GET, POST"),
        ("PATCH", "/v1/vips/web", "DELETE, GET, PUT"),
        ("GET", "/v1/vips/web/backends/vm1", "DELETE, PATCH, PUT"),
        ("POST", "/metrics", "GET"),
        ("PUT", "/v1/lookup", "GET"),
    ],
)
def test_wrong_method_is_405_with_allow(harness, method, path, allow):
    response = harness.request(method, path, {})
    assert response.status_int == 405
    assert response.headers["Allow"] == allow
    assert response.json["error"]


# ---- bad bodies ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{not json", "not JSON"),
        (b"", "JSON body is required"),
        (b"  \n", "JSON body is required"),
        (b'{"name": "\xff"}', "not JSON"),  # not UTF-8
    ],
    ids=["syntax", "empty", "blank", "not-utf8"],
)
def test_body_that_is_not_json_is_400(harness, raw, message):
    response = harness.request("POST", "/v1/vips", raw=raw)
    assert response.status_int == 400 and message in response.json["error"]


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"port": "443"}, "port"),
        ({"port": 0}, "port"),
        ({"colour": "blue"}, "colour"),
        ({"address": "10.0.0"}, "address"),
        ({"table_size": 1000}, "table_size"),
        ({"health": {"interval": 1, "timeout": 2}}, "health"),
        ({"health": {"type": "http"}, "protocol": "udp"}, "health.type"),
        ({"health": {"panic_threshold": 101}}, "health.panic_threshold"),
        ({"health": {"panic_threshold": 50.5}}, "health.panic_threshold"),
        ({"backends": [{**VM5, "mac": "nope"}]}, "backends[0].mac"),
        ({"backends": [VM5, {**VM5, "name": "vm6"}]}, "backends[1].tunnel_ip"),
        ({"name": None}, "name"),
    ],
)
def test_schema_errors_are_400_naming_the_field(harness, change, path):
    body = {**API_VIP, **change}
    response = harness.request("POST", "/v1/vips", body)
    assert response.status_int == 400
    assert path in problem_paths(response), response.json


def test_missing_required_fields_are_each_named(harness):
    response = harness.request("POST", "/v1/vips", {"name": "api"})
    assert response.status_int == 400
    assert {"address", "port"} <= set(problem_paths(response))


def test_vip_the_deployment_cannot_serve_is_400_naming_the_gateway_address(harness):
    response = harness.request("POST", "/v1/vips", {**API_VIP, "address": "fd00:100::80"})
    assert response.status_int == 400
    assert "gateways[0].addresses" in problem_paths(response)


def test_name_in_body_must_match_the_url(harness):
    response = harness.request("PUT", "/v1/vips/web", {**web(harness), "name": "other"})
    assert response.status_int == 400 and problem_paths(response) == ["name"]
    response = harness.request("PUT", "/v1/vips/web/backends/vm1", {**VM5, "name": "vm5"})
    assert response.status_int == 400 and problem_paths(response) == ["name"]


def test_too_large_body_is_413(harness):
    raw = b'{"name": "' + b"x" * MAX_BODY + b'"}'
    response = harness.request("POST", "/v1/vips", raw=raw)
    assert response.status_int == 413
    assert harness.get_json("/v1/vips")["vips"][0]["name"] == "web" and harness.saved == []


# ---- authorisation -------------------------------------------------------------------------


def test_writes_need_the_bearer_token_when_one_is_set(make_harness):
    harness = make_harness(token="s3cret")
    for token in (None, "wrong", "s3cre", "s3cret2"):
        response = harness.request("POST", "/v1/vips", API_VIP, token=token)
        assert response.status_int == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    for method, path in (("DELETE", "/v1/vips/web"), ("PATCH", "/v1/vips/web/backends/vm1")):
        assert harness.request(method, path, {"weight": 0}).status_int == 401
    assert harness.saved == [] and harness.sent == []
    assert harness.request("GET", "/v1/vips").status_int == 200  # reads stay open
    assert harness.request("GET", "/metrics").status_int == 200
    assert harness.request("POST", "/v1/vips", API_VIP, token="s3cret").status_int == 201


def test_the_auth_scheme_is_case_insensitive(make_harness):
    harness = make_harness(token="s3cret")
    raw = json.dumps(API_VIP).encode()
    request = Request.blank("/v1/vips", method="POST", body=raw, content_type="application/json")
    request.headers["Authorization"] = "bearer s3cret"
    assert request.get_response(harness.app).status_int == 201


def test_the_token_is_checked_before_the_body_is_read(make_harness):
    harness = make_harness(token="s3cret")
    assert harness.request("POST", "/v1/vips", raw=b"{broken").status_int == 401


def test_without_a_token_writes_are_open(harness):
    assert harness.request("POST", "/v1/vips", API_VIP, token="anything").status_int == 201


# ---- backends ------------------------------------------------------------------------------


def test_add_backend_is_201_and_takes_flows(harness):
    response = harness.request("POST", "/v1/vips/web/backends", VM5)
    assert response.status_int == 201 and response.json["backends"][-1]["name"] == "vm5"
    assert "vm5" in harness.core.balancer.vips["web"].healthy
    names = {
        harness.core.balancer.predict(flowkey.flow_from_fields("10.1.0.11", p, "10.0.0.100", 80, 6))
        for p in range(40000, 40200)
    }
    assert "vm5" in names


def test_add_backend_conflicts_and_duplicates_are_rejected(harness):
    assert (
        harness.request("POST", "/v1/vips/web/backends", {**VM5, "name": "vm1"}).status_int == 409
    )
    response = harness.request(
        "POST", "/v1/vips/web/backends", {**VM5, "tunnel_ip": "192.168.100.11"}
    )
    assert response.status_int == 400 and problem_paths(response) == ["backends[4].tunnel_ip"]
    response = harness.request("POST", "/v1/vips/web/backends", {**VM5, "weight": -1})
    assert response.status_int == 400 and problem_paths(response) == ["weight"]


def test_put_backend_replaces_it_whole(harness):
    harness.request("PATCH", "/v1/vips/web/backends/vm1", {"weight": 3})
    body = {"tunnel_ip": "192.168.100.21", "mac": "02:00:00:00:02:01"}
    response = harness.request("PUT", "/v1/vips/web/backends/vm1", body)
    assert response.status_int == 200
    assert response.json["backends"][0] == {"name": "vm1", **body, "weight": 1}


def test_put_of_an_unknown_backend_adds_it(harness):
    response = harness.request("PUT", "/v1/vips/web/backends/vm5", VM5)
    assert response.status_int == 200 and response.json["backends"][-1] == {**VM5, "weight": 1}


def test_patch_weight_zero_drains_and_keeps_the_other_fields(harness):
    before = placed(harness)
    assert "vm2" in before
    response = harness.request("PATCH", "/v1/vips/web/backends/vm2", {"weight": 0})
    assert response.status_int == 200
    vm2 = response.json["backends"][1]
    assert vm2 == {
        "name": "vm2",
        "tunnel_ip": "192.168.100.12",
        "mac": "02:00:00:00:01:02",
        "weight": 0,
    }
    flows = [
        flowkey.flow_from_fields("10.1.0.11", p, "10.0.0.100", 80, 6) for p in range(40000, 40300)
    ]
    assert "vm2" not in {harness.core.balancer.predict(f) for f in flows}  # no new flows
    assert harness.flow_backends() == before  # its connections stay


def test_patch_that_is_not_an_object_is_400(harness):
    for raw in (b"[1]", b"null", b"3"):
        response = harness.request("PATCH", "/v1/vips/web/backends/vm2", raw=raw)
        assert response.status_int == 400


def test_delete_backend_is_204(harness):
    before = placed(harness)
    assert "vm3" in before
    assert harness.request("DELETE", "/v1/vips/web/backends/vm3").status_int == 204
    assert [b["name"] for b in harness.get_json("/v1/vips/web/backends")] == ["vm1", "vm2", "vm4"]
    assert harness.flow_backends() == [b for b in before if b != "vm3"]


# ---- a rejected request changes nothing -------------------------------------------------------

REJECTED = [
    ("POST", "/v1/vips", {**API_VIP, "name": "web"}),  # 409
    ("POST", "/v1/vips", {**API_VIP, "port": "x"}),  # 400 schema
    ("POST", "/v1/vips", {**API_VIP, "address": "10.0.0.100", "port": 80}),  # same service
    ("PUT", "/v1/vips/web", {"name": "other"}),  # name mismatch
    ("PUT", "/v1/vips/web", {"name": "web", "address": "10.0.0.100", "port": 70000}),
    ("DELETE", "/v1/vips/nope", None),
    ("POST", "/v1/vips/web/backends", {**VM5, "name": "vm1"}),
    ("POST", "/v1/vips/web/backends", {**VM5, "tunnel_ip": "192.168.100.11"}),
    ("PATCH", "/v1/vips/web/backends/vm1", {"weight": 100000}),
    ("PATCH", "/v1/vips/web/backends/vm1", {"mac": "02:00:00:00:01:02", "name": "vm2"}),
    ("PATCH", "/v1/vips/web/backends/vm1", {"tunnel_ip": "192.168.100.12"}),  # vm2's
    ("DELETE", "/v1/vips/web/backends/nope", None),
    ("PUT", "/v1/vips/web/backends/vm1", {"name": "vm1"}),  # PUT needs every field
]


def snapshot(harness):
    balancer = harness.core.balancer
    return (
        harness.get_json("/v1/vips"),
        harness.get_json("/v1/status"),
        {name: (s.vip, dict(s.backend_ids), set(s.healthy)) for name, s in balancer.vips.items()},
        set(harness.core.prober.states),
    )


@pytest.mark.parametrize(("method", "path", "body"), REJECTED)
def test_a_rejected_request_changes_nothing(harness, method, path, body):
    before = snapshot(harness)
    response = harness.request(method, path, copy.deepcopy(body))
    assert response.status_int in (400, 404, 409), response.text
    assert snapshot(harness) == before
    assert harness.saved == [] and harness.sent == []


def test_a_state_file_that_cannot_be_written_is_500_and_changes_nothing(harness):
    before = snapshot(harness)
    harness.save_error = OSError(28, "No space left on device")
    for method, path, body in [
        ("POST", "/v1/vips", API_VIP),
        ("PUT", "/v1/vips/web", {**web(harness), "port": 8080}),
        ("DELETE", "/v1/vips/web", None),
        ("PATCH", "/v1/vips/web/backends/vm1", {"weight": 0}),
        ("DELETE", "/v1/vips/web/backends/vm1", None),
    ]:
        response = harness.request(method, path, body)
        assert response.status_int == 500
        assert "nothing changed" in response.json["error"]
        assert "No space left" in response.json["error"]
    assert snapshot(harness) == before and harness.sent == []


def test_a_controller_that_does_not_answer_in_time_is_503(harness):
    """``run`` raises TimeoutError (an OSError) when the event loop is busy: not a save error."""

    def busy(function):
        raise TimeoutError("the controller did not answer within 10.0 s")

    app = RestApi(harness.service, run=busy)
    for method, path in (("GET", "/v1/vips"), ("DELETE", "/v1/vips/web")):
        response = Request.blank(path, method=method).get_response(app)
        assert response.status_int == 503 and "did not answer" in response.json["error"]


# ---- lookup --------------------------------------------------------------------------------


def test_lookup_answers_from_the_hash_then_from_the_flow_table(harness):
    answer = harness.get_json(LOOKUP)
    flow = flowkey.flow_from_fields("10.1.0.11", 40000, "10.0.0.100", 80, "tcp")
    assert answer == {
        "vip": "web",
        "gateway": "gw1",
        "backend": harness.core.balancer.predict(flow),
        "source": "hash",
    }
    harness.client_packet(40000)
    assert harness.get_json(LOOKUP) == {**answer, "source": "table"}
    # Drained: the hash moves on, the connection stays where it is.
    backend = answer["backend"]
    assert (
        harness.request("PATCH", f"/v1/vips/web/backends/{backend}", {"weight": 0}).status_int
        == 200
    )
    assert harness.core.balancer.predict(flow) != backend
    assert harness.get_json(LOOKUP) == {**answer, "source": "table"}
    other_client = LOOKUP.replace("src_port=40000", "src_port=40001")
    assert harness.get_json(other_client)["source"] == "hash"


def test_lookup_table_entry_of_a_retired_backend_is_not_the_answer(harness):
    harness.client_packet(40000)
    backend = harness.get_json(LOOKUP)["backend"]
    harness.apply(harness.core.set_health("web", backend, False, harness.now))
    harness.settle()
    answer = harness.get_json(LOOKUP)  # down, within its grace: the flow stays with it
    assert answer["source"] == "table" and answer["backend"] == backend
    grace = retire_grace(harness.core.balancer.vips["web"].vip.health)
    harness.apply(harness.core.health_tick(harness.now + grace))
    answer = harness.get_json(LOOKUP)
    assert answer["source"] == "hash" and answer["backend"] != backend


@pytest.mark.parametrize(
    ("query", "path"),
    [
        ("src_ip=10.1.0&src_port=1&dst_ip=10.0.0.100&dst_port=80", "src_ip"),
        ("src_ip=10.1.0.11&src_port=x&dst_ip=10.0.0.100&dst_port=80", "src_port"),
        ("src_ip=10.1.0.11&src_port=1&dst_ip=10.0.0.100&dst_port=70000", "dst_port"),
        ("src_ip=10.1.0.11&src_port=1&dst_ip=10.0.0.100&dst_port=80&proto=sctp", "proto"),
        ("src_ip=10.1.0.11&src_port=1&dst_ip=10.0.0.100", "dst_port"),
        ("src_port=1&dst_ip=10.0.0.100&dst_port=80", "src_ip"),
    ],
)
def test_lookup_bad_parameter_is_400_naming_it(harness, query, path):
    response = harness.request("GET", f"/v1/lookup?{query}")
    assert response.status_int == 400 and problem_paths(response) == [path]


def test_lookup_of_mixed_ip_versions_names_a_field(harness):
    query = "src_ip=10.1.0.11&src_port=1&dst_ip=2001:db8::&dst_port=80"
    response = harness.request("GET", f"/v1/lookup?{query}")
    assert response.status_int == 400
    assert problem_paths(response) in (["src_ip"], ["dst_ip"])
    assert "IPv" in response.json["problems"][0]["reason"]


def test_lookup_of_something_that_is_not_a_vip_is_404(harness):
    for query in (
        LOOKUP.replace("10.0.0.100", "10.0.0.200"),
        LOOKUP.replace("dst_port=80", "dst_port=81"),
        LOOKUP + "&proto=udp",
    ):
        assert harness.request("GET", query).status_int == 404


# ---- flows ---------------------------------------------------------------------------------


def test_flows_are_listed_in_pages(harness):
    for sport in range(41000, 41005):
        harness.client_packet(sport)
    # A gateway's entries are pinned: the switch's flow-removed ends them, not a timer here.
    assert {f["expires_in"] for f in harness.get_json("/v1/flows")["flows"]} == {None}
    harness.now += 10_000.0
    first = harness.get_json("/v1/flows?limit=2")
    assert first["count"] == 5 and len(first["flows"]) == 2 and first["next_offset"] == 2
    assert first["offset"] == 0 and first["counters"]["misses"] == 5
    assert sum(first["by_backend"].values()) == 5
    assert all(key.startswith("web/vm") for key in first["by_backend"])
    pages = [first]
    while pages[-1]["next_offset"] is not None:
        pages.append(harness.get_json(f"/v1/flows?limit=2&offset={pages[-1]['next_offset']}"))
    assert [len(p["flows"]) for p in pages] == [2, 2, 1]
    flows = [f for p in pages for f in p["flows"]]
    assert sorted(f["src_port"] for f in flows) == list(range(41000, 41005))
    for entry in flows:
        assert (entry["src_ip"], entry["dst_ip"], entry["dst_port"], entry["proto"]) == (
            "10.1.0.11",
            "10.0.0.100",
            80,
            "tcp",
        )
        assert entry["vip"] == "web" and entry["expires_in"] is None
        assert f"web/{entry['backend']}" in first["by_backend"]
    assert harness.get_json("/v1/flows")["next_offset"] is None  # default limit covers it
    assert harness.get_json("/v1/flows?offset=10")["flows"] == []


@pytest.mark.parametrize(
    ("query", "path"),
    [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("limit=1.5", "limit"),
        ("offset=-1", "offset"),
        ("offset=x", "offset"),
    ],
)
def test_flows_bad_paging_is_400(harness, query, path):
    response = harness.request("GET", f"/v1/flows?{query}")
    assert response.status_int == 400 and problem_paths(response) == [path]


# ---- status, health, metrics -------------------------------------------------------------


def test_status_digests_agree_across_gateways_until_one_differs(make_harness):
    gw1, gw2 = make_harness("gw1"), make_harness("gw2")
    one, two = gw1.get_json("/v1/status"), gw2.get_json("/v1/status")
    assert (one["gateway"], two["gateway"]) == ("gw1", "gw2")
    assert one["config_digest"] == two["config_digest"]
    assert one["vips"] == two["vips"]
    assert one["vips"]["web"]["table_current"] and one["switch_connected"]
    assert one["vips"]["web"]["healthy"] == ["vm1", "vm2", "vm3", "vm4"]
    # A health change on one gateway: same config, different healthy set.
    gw2.apply(gw2.core.set_health("web", "vm3", False, gw2.now))
    gw2.settle()  # the new table built and swapped in, as the app's builder does
    two = gw2.get_json("/v1/status")
    assert two["config_digest"] == one["config_digest"]
    assert two["vips"]["web"]["config_digest"] == one["vips"]["web"]["config_digest"]
    assert two["vips"]["web"]["healthy_digest"] != one["vips"]["web"]["healthy_digest"]
    assert two["vips"]["web"]["table_current"] is True
    # A config change: different config digest.
    gw1.request("PATCH", "/v1/vips/web/backends/vm1", {"weight": 2})
    changed = gw1.get_json("/v1/status")
    assert changed["config_digest"] != one["config_digest"]
    assert changed["vips"]["web"]["config_digest"] != one["vips"]["web"]["config_digest"]
    assert changed["vips"]["web"]["healthy_digest"] == one["vips"]["web"]["healthy_digest"]


def test_status_before_the_switch_connects(harness):
    harness.core.on_connect(harness.now)
    assert harness.get_json("/v1/status")["switch_connected"] is False


def test_a_vips_panic_threshold_is_set_over_rest_and_applies_at_once(harness):
    for name in ("vm1", "vm2", "vm3"):  # 1 of 4 healthy: under the example's 50%
        harness.apply(harness.core.set_health("web", name, False, harness.now))
    harness.settle()
    assert harness.get_json("/v1/health")["panic"] == {"web": True}
    web = harness.get_json("/v1/vips/web")
    assert web["health"]["panic_threshold"] == 50
    body = {**web, "health": {**web["health"], "panic_threshold": 0}}
    assert harness.request("PUT", "/v1/vips/web", body).status_int == 200
    assert harness.get_json("/v1/vips/web")["health"]["panic_threshold"] == 0
    assert harness.get_json("/v1/health")["panic"] == {"web": False}
    assert harness.core.balancer.vips["web"].serving == {"vm4"}


def test_health_view_shows_each_backend_and_its_last_probe(harness):
    view = harness.get_json("/v1/health")
    assert view["gateway"] == "gw1"
    rows = {row["backend"]: row for row in view["vips"]["web"]}
    assert set(rows) == {"vm1", "vm2", "vm3", "vm4"}
    assert all(r["healthy"] and r["probing"] and r["state"] == "up" for r in rows.values())
    assert all(r["last_result"] is None for r in rows.values())
    harness.core.health_tick(harness.now + 1.0)  # every probe starts (phases < interval)
    # They time out, all at once, in a tick 150 ms late: the gateway's own trouble (a common
    # cause, with the loop's lag to say it is the gateway's), not the backends'.
    harness.core.health_tick(harness.now + 1.5, lag=0.15)
    harness.now += 2.0
    view = harness.get_json("/v1/health")
    rows = {row["backend"]: row for row in view["vips"]["web"]}
    for row in rows.values():
        assert row["last_result"] == "inconclusive" and row["state"] == "up"
        assert row["last_detail"] == (
            "no answer; inconclusive: the gateway is overloaded (common_cause, loop_lag)"
        )
        assert row["last_probe_at"] == pytest.approx(101.5 + harness.WALL_OFFSET)
        assert row["since"] == pytest.approx(100.0 + harness.WALL_OFFSET)  # up since start
    assert view["panic"] == {"web": False}
    load = view["overload"]
    assert load["overloaded"] and load["reasons"] == ["common_cause", "loop_lag"]
    assert load["since"] == pytest.approx(101.5 + harness.WALL_OFFSET)
    assert (load["silent_backends"], load["inconclusive_probes"]) == (4, 4)


def test_health_view_names_the_switch_syn_rate_as_evidence(harness):
    """Switch mode's signal (the slot rules' SYNs placed per second) shows as the others do."""
    assert harness.get_json("/v1/health")["overload"]["switch_syn_rate"] == 0.0
    harness.core.monitor.switch_syns(60_000, 1.0, harness.now)
    harness.core.health_tick(harness.now)
    load = harness.get_json("/v1/health")["overload"]
    assert load["overloaded"] and load["reasons"] == ["switch_syn_rate"]
    assert load["switch_syn_rate"] == 60_000.0


def test_metrics_are_prometheus_text_with_help_and_type(harness):
    """What the metrics say is tested in test_metrics.py; here, the route: prometheus_client's
    parser reads the answer whole, every family has its help text and a counter or gauge type,
    and the counts move with traffic."""
    response = harness.request("GET", "/metrics")
    assert response.status_int == 200 and response.content_type == "text/plain"
    found = families(response.text)
    assert found["lockstep_packet_ins"].type == "counter"
    assert found["lockstep_flow_table_entries"].type == "gauge"
    assert {f.type for f in found.values()} == {"counter", "gauge"}
    assert all(f.documentation for f in found.values())
    assert value(response.text, "lockstep_packet_ins_total") == 0
    harness.client_packet(42000)
    assert value(harness.request("GET", "/metrics").text, "lockstep_packet_ins_total") == 1


def test_json_too_deep_or_numbers_too_long_are_400(harness):
    for raw in (b"[" * 100_000, b'{"port": ' + b"9" * 5000 + b"}"):
        response = harness.request("POST", "/v1/vips", raw=raw)
        assert response.status_int == 400, response.body[:200]
    assert harness.saved == [] and harness.sent == []


def test_the_config_digest_does_not_depend_on_the_order_vips_were_added(make_harness):
    first, second = make_harness(), make_harness(gateway="gw2")
    for harness in (first, second):
        assert harness.request("POST", "/v1/vips", API_VIP).status_int == 201
    # On the first gateway, web is deleted and put back: now it comes after api.
    web_vip = first.get_json("/v1/vips/web")
    assert first.request("DELETE", "/v1/vips/web").status_int == 204
    assert first.request("PUT", "/v1/vips/web", web_vip).status_int == 200
    assert [v["name"] for v in first.get_json("/v1/vips")["vips"]] == ["api", "web"]
    statuses = [h.get_json("/v1/status") for h in (first, second)]
    assert statuses[0]["config_digest"] == statuses[1]["config_digest"]


def test_health_times_do_not_jitter_with_the_wall_clock_reads(harness):
    """Wall-clock times come from the core's clock plus one offset taken at start: a busy
    machine reading the two clocks milliseconds apart must not make a backend's ``since``
    seem to change between two GET /v1/health (the demo's flood check counts that as a flap)."""
    jitter = iter([0.0, 0.004, 0.009, 0.013])
    harness.app = RestApi(
        harness.service,
        clock=lambda: harness.now,
        wall_clock=lambda: harness.now + harness.WALL_OFFSET + next(jitter),
    )
    first = harness.get_json("/v1/health")["vips"]["web"]
    harness.now += 0.5
    second = harness.get_json("/v1/health")["vips"]["web"]
    assert [row["since"] for row in first] == [row["since"] for row in second]
    assert first[0]["since"] == pytest.approx(100.0 + harness.WALL_OFFSET)
