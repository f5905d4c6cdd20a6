"""Switch mode's pins read back from the switch (``core.pinread``) in ``GET /v1/flows``,
``GET /v1/lookup`` and ``/metrics`` (issue 14 item 2): the VIP switched to ``mode: switch``
over REST, connections through the fake switch (a SYN placed by its slot rule, the first ACK
learning the pin), the gateway's tick asking for the switch's rules and the fake switch
answering in parts, as Open vSwitch does."""

from __future__ import annotations

import dataclasses

from ryu_app.api import pinview
from ryu_app.cli.remote import skewed_slots
from ryu_app.core.flowkey import TCP_ACK
from ryu_app.core.pinread import PinReader
from tests.ryu_app.conftest import NEW_VIP
from tests.ryu_app.promtext import value

SLOTS = 256


def switch_web(harness) -> dict:
    body = harness.get_json("/v1/vips/web")
    body = {**body, "placement": "port-bits", "table_size": SLOTS, "mode": "switch"}
    response = harness.request("PUT", "/v1/vips/web", body)
    assert response.status_int in (200, 202), response.text
    return {b["tunnel_ip"]: b["name"] for b in body["backends"]}


def connect(harness, sport: int, acks: int = 1) -> str:
    """A connection through the switch alone: the tunnel endpoint its SYN went to."""
    placed = harness.where(harness.syn(sport))
    ack = bytearray(harness.syn(sport))
    ack[14 + 20 + 13] = TCP_ACK  # the TCP flags byte (the checksum is not looked at)
    for _ in range(acks):
        harness.where(bytes(ack))
    return placed.tunnel[0]


def read_back(harness, advance: float = 1.5) -> int:
    """Time passes, the gateway ticks, and the fake switch answers each flow statistics
    request (7 rules a part) until the round is over; how many requests it answered."""
    harness.now += advance
    harness.apply(harness.core.health_tick(harness.now))
    answered = 0
    while harness.table.flow_stats_requests:
        request = harness.table.flow_stats_requests.pop(0)
        replies = harness.table.flow_stats_reply(request, per_part=7)
        harness.apply(harness.core.on_messages(replies, harness.now))
        answered += 1
    return answered


def lookup(harness, sport: int) -> dict:
    query = f"src_ip=10.1.0.11&src_port={sport}&dst_ip=10.0.0.100&dst_port=80"
    return harness.get_json(f"/v1/lookup?{query}")


def all_pages(harness, limit: int) -> list[dict]:
    rows, cursor = [], None
    for _ in range(1000):
        path = f"/v1/flows?limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        page = harness.get_json(path)
        assert len(page["flows"]) <= limit
        rows += page["flows"]
        cursor = page["next_cursor"]
        if cursor is None:
            return rows
    raise AssertionError("the listing never ended")


def test_the_switchs_pins_are_listed_with_their_backends(harness):
    tunnels = switch_web(harness)
    placed = {sport: tunnels[connect(harness, sport)] for sport in range(40000, 40060, 2)}
    assert read_back(harness) == 2
    answer = harness.get_json("/v1/flows?limit=1000")
    switch = answer["switch"]
    assert switch["count"] == switch["kept"] == len(placed) and switch["truncated"] == 0
    assert switch["age_seconds"] == 0
    assert sum(switch["by_backend"].values()) == len(placed)
    assert all(name.startswith("web/") for name in switch["by_backend"])
    pins = [row for row in answer["flows"] if row.get("source") == "switch"]
    assert {row["src_port"]: row["backend"] for row in pins} == placed
    assert all(row["vip"] == "web" and row["dst_port"] == 80 for row in pins)
    assert answer["next_cursor"] is None
    harness.now += 0.25
    assert harness.get_json("/v1/flows")["switch"]["age_seconds"] == 0.25


def test_the_controllers_entries_come_first_and_pages_list_each_flow_once(harness):
    assert harness.request("POST", "/v1/vips", NEW_VIP).status_int in (201, 202)
    for sport in range(50000, 50009):  # controller mode: entries in the controller's table
        harness.client_packet(sport, dst="10.0.0.101", dport=443)
    switch_web(harness)
    for sport in range(40000, 40046, 2):
        connect(harness, sport)
    read_back(harness)
    rows = all_pages(harness, limit=4)
    controller = [row for row in rows if "source" not in row]
    switch = [row for row in rows if row.get("source") == "switch"]
    assert rows == controller + switch  # the controller's first (as before), then the switch's
    assert sorted(row["src_port"] for row in controller) == list(range(50000, 50009))
    assert sorted(row["src_port"] for row in switch) == list(range(40000, 40046, 2))


def test_paging_goes_on_over_a_newer_snapshot_without_repeats(harness):
    switch_web(harness)
    for sport in range(40000, 40040, 2):
        connect(harness, sport)
    read_back(harness)
    first = harness.get_json("/v1/flows?limit=8")
    assert first["next_cursor"].startswith("pin-")
    connect(harness, 39000)  # a new pin, before all of them in key order
    read_back(harness)
    rows, cursor = list(first["flows"]), first["next_cursor"]
    while cursor:
        page = harness.get_json(f"/v1/flows?limit=8&cursor={cursor}")
        rows += page["flows"]
        cursor = page["next_cursor"]
        assert page["switch"]["count"] == 21
    ports = [row["src_port"] for row in rows]
    assert sorted(ports) == list(range(40000, 40040, 2))  # each once; 39000 came behind
    assert len(ports) == len(set(ports))


def test_lookup_says_which_backend_the_switch_pinned_the_flow_to(harness):
    tunnels = switch_web(harness)
    backend = tunnels[connect(harness, 40002)]
    assert "pinned_to" not in lookup(harness, 40002)  # not read back yet
    read_back(harness)
    answer = lookup(harness, 40002)
    assert answer["pinned_to"] == backend == answer["backend"]
    assert answer["source"] == "slot"
    assert "pinned_to" not in lookup(harness, 40004)  # no connection: no pin


def test_lookup_says_pinned_to_when_the_pin_outlived_a_slot_change(harness):
    """A pin holds its flow to its backend after the slot moved (a drain): lookup's backend
    is where a new flow of that slot would go, ``pinned_to`` where this one does go."""
    tunnels = switch_web(harness)
    pinned = tunnels[connect(harness, 40002)]
    body = harness.get_json("/v1/vips/web")
    for backend in body["backends"]:
        if backend["name"] == pinned:
            backend["weight"] = 0
    assert harness.request("PUT", "/v1/vips/web", body).status_int in (200, 202)
    read_back(harness)
    answer = lookup(harness, 40002)
    assert answer["pinned_to"] == pinned != answer["backend"]


def test_pins_over_the_bound_are_counted_and_said_to_be_left_out(harness):
    switch_web(harness)
    harness.core.pin_reader = PinReader(max_pins=10)
    for sport in range(40000, 40050, 2):
        connect(harness, sport)
    read_back(harness)
    answer = harness.get_json("/v1/flows?limit=1000")
    assert answer["switch"]["count"] == 25
    assert (answer["switch"]["kept"], answer["switch"]["truncated"]) == (10, 15)
    assert len([row for row in answer["flows"] if row.get("source") == "switch"]) == 10
    text = harness.request("GET", "/metrics").text
    assert value(text, "lockstep_switch_pins_truncated") == 15


def test_a_controller_mode_gateway_answers_as_before(harness):
    harness.client_packet(42000)
    read_back(harness)
    answer = harness.get_json("/v1/flows")
    assert "switch" not in answer
    assert all("source" not in row for row in answer["flows"])
    assert harness.table.flow_stats_requests == [] and harness.core.pin_reader.snapshot is None


def test_a_cursor_that_is_not_one_is_refused(harness):
    for cursor in ("pin-zz", "pin-abc", "pin-" + "00" * 17, "pinx"):
        response = harness.request("GET", f"/v1/flows?cursor={cursor}")
        assert response.status_int == 400, (cursor, response.text)


def test_metrics_count_the_pins_and_slot_packets_per_backend(harness):
    tunnels = switch_web(harness)
    placed: dict[str, int] = {}
    for sport in range(40000, 40080, 2):
        backend = tunnels[connect(harness, sport, acks=3)]
        placed[backend] = placed.get(backend, 0) + 1
    text = harness.request("GET", "/metrics").text
    assert value(text, "lockstep_switch_pins_age_seconds") == -1  # not read yet
    read_back(harness)
    text = harness.request("GET", "/metrics").text
    for backend in tunnels.values():  # every configured backend has its series, even at 0
        count = placed.get(backend, 0)
        assert value(text, "lockstep_switch_pins", vip="web", backend=backend) == count
        syn = value(text, "lockstep_slot_packets_total", vip="web", backend=backend, kind="syn")
        other = value(text, "lockstep_slot_packets_total", vip="web", backend=backend, kind="other")
        assert (syn, other) == (count, count)  # one SYN and the first ACK of each; pins: rest
    assert value(text, "lockstep_switch_pins_age_seconds") == 0
    assert value(text, "lockstep_switch_pin_reads_total", outcome="sent") == 2
    assert value(text, "lockstep_switch_pin_reads_total", outcome="timeout") == 0


def test_pin_series_stop_at_their_bound_and_the_rest_are_counted(harness, monkeypatch):
    tunnels = switch_web(harness)
    backends = sorted(tunnels.values())
    monkeypatch.setattr(pinview, "PIN_SERIES_BACKENDS", 2)
    text = harness.request("GET", "/metrics").text
    named = [b for b in backends if f'lockstep_switch_pins{{backend="{b}",vip="web"}}' in text]
    assert len(named) == 2
    assert value(text, "lockstep_switch_pin_series_omitted") == len(backends) - 2
    monkeypatch.setattr(pinview, "PIN_SERIES_BACKENDS", 100)
    text = harness.request("GET", "/metrics").text
    assert value(text, "lockstep_switch_pin_series_omitted") == 0


def test_status_says_how_evenly_clients_fill_a_switch_mode_vips_slots(harness):
    switch_web(harness)
    for sport in range(40000, 40000 + 30 * 512, 512):  # every port in one slot (a bad NAT)
        connect(harness, sport, acks=0)
    read_back(harness)
    slots = harness.get_json("/v1/status")["vips"]["web"]["slots"]
    assert slots == {"syn_packets": 30, "max_mean_syn_share": None}  # too few to tell
    syns = dict.fromkeys(range(SLOTS), 0)
    syns[(40000 >> 1) % SLOTS] = 30 * SLOTS  # the same, for longer
    snapshot = harness.core.pin_reader.snapshot
    harness.core.pin_reader.snapshot = dataclasses.replace(snapshot, slot_syns={"web": syns})
    slots = harness.get_json("/v1/status")["vips"]["web"]["slots"]
    assert slots == {"syn_packets": 30 * SLOTS, "max_mean_syn_share": float(SLOTS)}
    statuses = {"http://gw1": harness.get_json("/v1/status")}
    (warning,) = skewed_slots(statuses)
    assert warning.startswith("VIP web on http://gw1: slots: max/mean SYN share 256.0x")


def test_a_controller_mode_vips_status_has_no_slots(harness):
    assert "slots" not in harness.get_json("/v1/status")["vips"]["web"]
