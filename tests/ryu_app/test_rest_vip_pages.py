"""GET /v1/vips in pages: by name after a cursor, at most ``limit``, ``next_cursor`` while more
follow; without either parameter the whole list, as before."""

from __future__ import annotations

import pytest

from tests.ryu_app.test_rest import API_VIP


def add_vips(harness, count: int) -> None:
    for number in range(count):
        vip = {**API_VIP, "name": f"v{number:02d}", "address": f"10.0.0.{number + 1}"}
        assert harness.request("POST", "/v1/vips", vip).status_int == 201


def test_pages_walk_every_vip_once_in_name_order(harness):
    add_vips(harness, 5)
    names, cursor = [], None
    while True:
        path = "/v1/vips?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = harness.get_json(path)
        assert len(page["vips"]) <= 2
        names += [vip["name"] for vip in page["vips"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    everything = [vip["name"] for vip in harness.get_json("/v1/vips")["vips"]]
    assert names == sorted(everything) and len(names) == 6  # five and the fixture's "web"


def test_without_parameters_the_whole_list_and_no_cursor(harness):
    add_vips(harness, 3)
    answer = harness.get_json("/v1/vips")
    assert len(answer["vips"]) == 4 and "next_cursor" not in answer


def test_a_cursor_alone_pages_by_the_default_limit(harness):
    add_vips(harness, 3)
    answer = harness.get_json("/v1/vips?cursor=v00")
    assert [vip["name"] for vip in answer["vips"]] == ["v01", "v02", "web"]
    assert answer["next_cursor"] is None


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "cursor=1bad", "limit=x"])
def test_bad_page_parameters_are_400(harness, query):
    assert harness.request("GET", f"/v1/vips?{query}").status_int == 400
