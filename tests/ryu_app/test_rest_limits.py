"""The REST API against hostile requests (issue 11, findings 4, 5 and 8): routes and query
parameters match whole strings, error bodies are bounded, writes take JSON from their own
origin only, and every refusal changes nothing."""

from __future__ import annotations

import json
import time

import pytest
from webob import Request

from ryu_app.api.rest import MAX_BODY, MESSAGE_LENGTH, SHOWN_PROBLEMS
from tests.ryu_app.conftest import NEW_VIP as API_VIP
from topology import deployment as deployment_file
from topology.schema import MAX_PROBLEMS

LOOKUP = "/v1/lookup?src_ip=10.1.0.11&src_port=40000&dst_ip=10.0.0.100&dst_port=80"


def send(harness, method, path, raw=b"", headers=None):
    request = Request.blank(path, method=method, headers=headers or {})
    if raw:
        request.body = raw
    response = request.get_response(harness.app)
    harness.settle()
    return response


def unchanged(harness) -> bool:
    return harness.saved == [] and harness.sent == []


# ---- whole strings in routes and parameters (finding 5) ---------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/v1/vips%0A", "/v1/vips/web%0A", "/v1/vips/web%0A/backends", "/v1/status%0A", "/v1/vips/%0A"],
)
def test_a_path_with_a_newline_is_no_route(harness, path):
    response = harness.request("GET", path)
    assert response.status_int == 404 and "no such resource" in response.json["error"]


def test_a_path_name_that_cannot_be_a_name_is_404_for_every_method(harness):
    for method in ("GET", "PUT", "DELETE"):
        response = harness.request(method, "/v1/vips/web%0A", API_VIP)
        assert response.status_int == 404
    assert unchanged(harness)


def test_a_name_with_a_trailing_newline_is_refused_in_a_body(harness):
    response = harness.request("POST", "/v1/vips", {**API_VIP, "name": "api\n"})
    assert response.status_int == 400 and response.json["problems"][0]["path"] == "name"
    response = harness.request("PATCH", "/v1/vips/web/backends/vm1", {"mac": "02:00:00:00:01:01\n"})
    assert response.status_int == 400 and response.json["problems"][0]["path"] == "mac"
    assert unchanged(harness)


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("src_port=%2040000", "src_port"),
        ("src_port=40000%0A", "src_port"),
        ("src_port=4_0000", "src_port"),
        ("src_port=%2B40000", "src_port"),
        ("src_port=%D9%A4%D9%A0", "src_port"),  # Arabic-Indic digits: int() takes them
        ("src_ip=10.1.0.11%0A", "src_ip"),
        ("src_ip=%2010.1.0.11", "src_ip"),
        ("proto=TCP", "proto"),
        ("proto=tcp%20", "proto"),
    ],
)
def test_lookup_parameters_are_whole_strings(harness, query, name):
    fields = dict(p.split("=") for p in LOOKUP.split("?")[1].split("&"))
    key, value = query.split("=")
    fields[key] = value
    path = "/v1/lookup?" + "&".join(f"{k}={v}" for k, v in fields.items())
    response = harness.request("GET", path)
    assert response.status_int == 400 and response.json["problems"][0]["path"] == name


@pytest.mark.parametrize("query", ["limit=1_0", "limit=%2010", "offset=%2B1", "offset=1e3"])
def test_flows_paging_parameters_are_plain_integers(harness, query):
    assert harness.request("GET", f"/v1/flows?{query}").status_int == 400


def test_plain_parameters_still_work(harness):
    assert harness.get_json(LOOKUP + "&proto=6")["vip"] == "web"
    assert harness.get_json("/v1/flows?limit=1000&offset=0")["offset"] == 0


# ---- bounded errors (finding 4) -------------------------------------------------------------


def test_a_body_of_many_bad_items_gets_a_small_400_quickly(harness):
    bad = {f"k{i}": i for i in range(32_000)}  # ~500 KB of unknown keys
    raw = json.dumps(bad).encode()
    assert 400_000 < len(raw) <= MAX_BODY
    started = time.perf_counter()
    response = harness.request("POST", "/v1/vips", raw=raw)
    assert time.perf_counter() - started < 0.5
    assert response.status_int == 400 and len(response.body) < 10_000
    body = response.json
    assert len(body["problems"]) == SHOWN_PROBLEMS
    assert body["more_problems"] == MAX_PROBLEMS - SHOWN_PROBLEMS
    assert body["error"].startswith(f"at least {MAX_PROBLEMS} problems; the first:")
    assert unchanged(harness)


def test_many_bad_backends_are_bounded_too(harness):
    backend = {"name": "x" * 60, "tunnel_ip": "y" * 100, "mac": "z" * 100}
    raw = json.dumps({**API_VIP, "backends": [backend] * 1500}).encode()
    response = harness.request("POST", "/v1/vips", raw=raw)
    assert response.status_int == 400 and len(response.body) < 10_000
    assert all(len(p["reason"]) <= MESSAGE_LENGTH + 3 for p in response.json["problems"])


def test_one_problem_is_the_error_and_nothing_is_left_out(harness):
    response = harness.request("POST", "/v1/vips", {**API_VIP, "port": 0})
    assert response.json["error"] == "port: must be 1..65535, got 0"
    assert response.json["more_problems"] == 0


def test_a_body_over_the_cap_is_413_and_a_megabyte_is_refused_quickly(harness):
    raw = json.dumps({"backends": [1] * 400_000}).encode()
    assert len(raw) > MAX_BODY
    started = time.perf_counter()
    response = harness.request("POST", "/v1/vips", raw=raw)
    assert response.status_int == 413 and time.perf_counter() - started < 0.5
    assert unchanged(harness)


def test_the_largest_vip_fits_the_body_cap():
    """MAX_BACKENDS backends with the longest names, as `lockstep vip put` sends them."""
    count = deployment_file.MAX_BACKENDS
    backends = [
        {
            "name": f"b{i:05d}" + "x" * 57,
            "tunnel_ip": f"172.16.{i // 250}.{i % 250 + 1}",
            "mac": f"02:00:00:01:{i >> 8:02x}:{i & 255:02x}",
            "weight": 10_000,
        }
        for i in range(count)
    ]
    vip = {"name": "big", "address": "203.0.113.10", "port": 443, "backends": backends}
    raw = json.dumps(vip).encode()
    assert len(raw) < 0.7 * MAX_BODY, len(raw)
    assert len(deployment_file.parse_vip(vip).backends) == count


# ---- JSON only, from its own origin (finding 8) ------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"],
)
def test_a_write_that_is_not_json_is_415(harness, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    response = send(harness, "POST", "/v1/vips", json.dumps(API_VIP).encode(), headers)
    assert response.status_int == 415 and "application/json" in response.json["error"]
    response = send(harness, "PATCH", "/v1/vips/web/backends/vm1", b'{"weight": 0}', headers)
    assert response.status_int == 415
    assert unchanged(harness)


def test_json_with_a_charset_is_json(harness):
    headers = {"Content-Type": "Application/JSON; charset=utf-8"}
    response = send(harness, "POST", "/v1/vips", json.dumps(API_VIP).encode(), headers)
    assert response.status_int == 201


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://localhost:9"])
def test_a_write_from_another_origin_is_403(harness, origin):
    headers = {"Content-Type": "application/json", "Origin": origin}
    response = send(harness, "POST", "/v1/vips", json.dumps(API_VIP).encode(), headers)
    assert response.status_int == 403 and "origin" in response.json["error"]
    assert send(harness, "DELETE", "/v1/vips/web", headers={"Origin": origin}).status_int == 403
    assert unchanged(harness)


def test_a_write_from_its_own_origin_or_without_one_is_taken(harness):
    headers = {"Content-Type": "application/json", "Origin": "http://localhost"}
    response = send(harness, "POST", "/v1/vips", json.dumps(API_VIP).encode(), headers)
    assert response.status_int == 201  # Request.blank's host is localhost:80
    assert send(harness, "DELETE", "/v1/vips/api").status_int == 204


def test_reads_ignore_the_origin(harness):
    response = send(harness, "GET", "/v1/status", headers={"Origin": "http://evil.example"})
    assert response.status_int == 200


def test_a_204_has_no_content_type(harness):
    response = harness.request("DELETE", "/v1/vips/web")
    assert response.status_int == 204 and "Content-Type" not in response.headers


def test_an_empty_paging_value_is_a_bad_one_and_an_absent_one_the_default(harness):
    """schemathesis found `/v1/flows?offset=` taken as no offset."""
    assert harness.request("GET", "/v1/flows?offset=").status_int == 400
    assert harness.request("GET", "/v1/flows?limit=").status_int == 400
    assert harness.get_json("/v1/flows")["offset"] == 0
