"""A VIP's mode changed live through the REST API (issue 14): validated by the deployment
file's rules, saved, applied (the switch gets the slot rules, or loses them), and answered by
``GET /v1/lookup`` as the switch places."""

from __future__ import annotations

from ryu_app.core.switchrules import PRIORITY_SLOT, PRIORITY_SYN_SLOT
from tests.ryu_app.fake_oftable import run_actions

SLOTS = 256


def web_body(harness, **changes) -> dict:
    return {**harness.get_json("/v1/vips/web"), **changes}


def slot_rules(harness) -> list:
    return harness.table.rules_at(PRIORITY_SYN_SLOT) + harness.table.rules_at(PRIORITY_SLOT)


def test_switch_mode_without_port_bits_is_refused_under_mode(harness):
    response = harness.request("PUT", "/v1/vips/web", web_body(harness, mode="switch"))
    assert response.status_int == 400, response.text
    (problem,) = response.json["problems"]
    assert problem["path"] == "mode" and "placement: port-bits" in problem["reason"]
    assert slot_rules(harness) == []


def test_mode_changes_live_and_lookup_answers_as_the_switch_places(harness):
    body = web_body(harness, placement="port-bits", table_size=SLOTS, mode="switch")
    response = harness.request("PUT", "/v1/vips/web", body)
    assert response.status_int in (200, 202), response.text
    assert harness.get_json("/v1/vips/web")["mode"] == "switch"
    assert harness.saved[-1][0].mode == "switch"  # the state file keeps it
    assert len(slot_rules(harness)) == 2 * SLOTS
    tunnels = {b["tunnel_ip"]: b["name"] for b in body["backends"]}
    for sport in range(40000, 40400, 2):
        placed = harness.where(harness.syn(sport))
        assert placed.rule.priority == PRIORITY_SYN_SLOT
        query = f"src_ip=10.1.0.11&src_port={sport}&dst_ip=10.0.0.100&dst_port=80"
        answer = harness.get_json(f"/v1/lookup?{query}")
        assert answer["backend"] == tunnels[placed.tunnel[0]]
    response = harness.request("PUT", "/v1/vips/web", {**body, "mode": "controller"})
    assert response.status_int in (200, 202), response.text
    assert slot_rules(harness) == []
    assert harness.where(harness.syn(40000)).to_controller


def test_a_pin_limit_out_of_range_is_refused_under_its_key(harness):
    body = web_body(harness, placement="port-bits", table_size=SLOTS, mode="switch")
    response = harness.request("PUT", "/v1/vips/web", {**body, "max_pins_per_backend": -1})
    assert response.status_int == 400, response.text
    (problem,) = response.json["problems"]
    assert problem["path"] == "max_pins_per_backend"
    response = harness.request("PUT", "/v1/vips/web", {**body, "max_pins_per_backend": 10})
    assert response.status_int == 200, response.text
    assert harness.get_json("/v1/vips/web")["max_pins_per_backend"] == 10


def test_a_backend_removed_from_a_switch_vip_leaves_its_slots_for_the_others(harness):
    """REST removes a backend from a switch-mode VIP: accepted, and once the new table is in
    no slot rule sends to it; until then its slots keep their rules (no error)."""
    body = web_body(harness, placement="port-bits", table_size=SLOTS, mode="switch")
    assert harness.request("PUT", "/v1/vips/web", body).status_int in (200, 202)
    gone = body["backends"][0]
    response = harness.request("PUT", "/v1/vips/web", {**body, "backends": body["backends"][1:]})
    assert response.status_int in (200, 202), response.text
    rules = slot_rules(harness)
    assert len(rules) == 2 * SLOTS
    syn_rules = harness.table.rules_at(PRIORITY_SYN_SLOT)  # (the others learn: same targets)
    sent_to = {run_actions(rule.actions, {}).tunnel[0] for rule in syn_rules}
    assert gone["tunnel_ip"] not in sent_to and sent_to
