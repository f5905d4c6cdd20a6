"""The flood guard, driven through GatewayCore against the fake switch: which rules go through
which meter, what a switch without meters gets, meters following VIP changes, the meters' drop
counts, and the switch's errors counted and logged at a bounded rate."""

from __future__ import annotations

import dataclasses

import pytest

from ryu_app.api.guardview import guard_snapshot, render_guard
from ryu_app.core import floodguard, ofmeter, pipeline
from ryu_app.core.floodguard import GATEWAY_METER, PROBE_METER, TokenBucket
from ryu_app.core.model import FloodGuard, HealthCheck
from ryu_app.shell.compat import ofproto_v1_3 as ofp
from tests.ryu_app.core.rig import (
    GATEWAY,
    PROBED_VIP,
    UPLINK,
    VIP,
    GatewayRig,
    frame,
)
from tests.ryu_app.fake_oftable import packet_fields, raw_error, raw_meter_stats


def meter_of(rig: GatewayRig, data: bytes) -> int:
    return rig.table.lookup(packet_fields(UPLINK, data)).meter


def test_with_meters_new_connections_and_probe_answers_have_budgets_of_their_own():
    rig = GatewayRig(vips=(PROBED_VIP,))
    guard = GATEWAY.flood_guard
    assert rig.core.guard.mode == floodguard.SWITCH
    assert rig.table.meters[GATEWAY_METER] == (guard.rate, guard.burst)
    assert rig.table.meters[PROBE_METER] == (floodguard.MIN_PROBE_RATE,) * 2
    assert meter_of(rig, frame()) == GATEWAY_METER  # a client's SYN to the VIP
    (miss,) = rig.table.rules_at(pipeline.PRIORITY_MISS)
    assert miss.meter == GATEWAY_METER
    (answers,) = rig.table.rules_at(pipeline.PRIORITY_LOCAL)
    assert answers.meter == PROBE_METER
    assert any("flood guard in the switch" in n for n in rig.notices)
    # The SYN the meter lets through is placed as ever: the per-flow rule has no meter.
    forwarding = rig.send(UPLINK, frame(), 1.0)
    assert forwarding.tunnel[0] is not None and rig.flow_rule(frame()).meter == 0


def test_a_vip_with_its_own_rate_gets_its_own_meter_which_follows_it():
    own = dataclasses.replace(VIP, name="api", address="10.0.0.101", new_flow_rate=500)
    rig = GatewayRig(vips=(VIP, own))
    api_meter = rig.core.guard.vip_meters["api"]
    assert api_meter >= floodguard.FIRST_VIP_METER
    assert rig.table.meters[api_meter] == (500, 166)
    assert meter_of(rig, frame(dst="10.0.0.101")) == api_meter
    assert meter_of(rig, frame()) == GATEWAY_METER  # web shares the gateway's
    rig.run(rig.core.set_vip(dataclasses.replace(own, new_flow_rate=800), 1.0))
    assert rig.table.meters[api_meter] == (800, 266)  # modified in place, same rule
    rig.run(rig.core.set_vip(dataclasses.replace(own, new_flow_rate=None), 2.0))
    assert api_meter not in rig.table.meters
    assert meter_of(rig, frame(dst="10.0.0.101")) == GATEWAY_METER
    rig.run(rig.core.set_vip(own, 3.0))
    rig.run(rig.core.remove_vip("api", 4.0))
    assert set(rig.table.meters) == {GATEWAY_METER, PROBE_METER}


def test_the_probe_budget_grows_with_the_probes_the_gateway_sends():
    many = dataclasses.replace(
        PROBED_VIP,
        health=dataclasses.replace(PROBED_VIP.health, interval=0.1, timeout=0.05),
        backends=PROBED_VIP.backends * 1,
    )
    assert floodguard.probe_budget([many]) == 3 / 0.1 * 4 * 4 * 1  # 480 > the minimum
    rig = GatewayRig(vips=(many,))
    assert rig.table.meters[PROBE_METER] == (480, 480)


def test_a_reconnected_switch_loses_old_meters_and_gets_ours_again():
    rig = GatewayRig()
    rig.table.meters[99] = (1, 1)  # left by an earlier controller
    rig.connect(5.0)
    assert set(rig.table.meters) == {GATEWAY_METER, PROBE_METER}
    assert meter_of(rig, frame()) == GATEWAY_METER


def test_without_meters_the_controller_guards_itself_and_says_so():
    rig = GatewayRig(
        gateway=dataclasses.replace(GATEWAY, flood_guard=FloodGuard(100, 10)), connect=False
    )
    rig.connect(0.0, meters=False)
    assert rig.core.guard.mode == floodguard.CONTROLLER
    assert rig.table.meters == {} and meter_of(rig, frame()) == 0
    assert any("no meters" in e and "controller_rate_limit" in e for e in rig.errors)
    assert rig.core.counters.switch_errors == {(ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_MULTIPART): 1}
    placed = sum(not rig.send(UPLINK, frame(sport=20000 + n), 1.0).dropped for n in range(50))
    assert placed == 10  # the burst; then nothing until tokens come back
    assert rig.core.guard.counters.controller_dropped == 40
    assert rig.send(UPLINK, frame(sport=30000), 1.005).dropped is not False
    assert not rig.send(UPLINK, frame(sport=30001), 1.02).dropped  # 100/s: one per 10 ms


def test_a_guard_with_rate_zero_is_off():
    rig = GatewayRig(gateway=dataclasses.replace(GATEWAY, flood_guard=FloodGuard(0, 0)))
    assert rig.core.guard.mode == floodguard.OFF
    assert ofp.OFPMP_METER_FEATURES not in rig.table.meter_requests
    assert all(not rig.send(UPLINK, frame(sport=20000 + n), 1.0).dropped for n in range(300))


def test_meter_drops_are_polled_every_second_and_counted():
    rig = GatewayRig()
    requests = []
    for step in range(40):
        before = len(rig.table.meter_requests)
        rig.tick(step * 0.05)
        requests += rig.table.meter_requests[before:]
    assert requests.count(ofp.OFPMP_METER) == 2  # at 0 s and 1 s of 2 s
    rig.run(
        rig.core.on_messages([raw_meter_stats({GATEWAY_METER: 700, PROBE_METER: 0, 77: 5})], 2.0)
    )
    assert rig.core.guard.counters.switch_dropped == {GATEWAY_METER: 700, PROBE_METER: 0}
    assert rig.core.guard.counters.dropped_clients == 700  # meter 77 is not ours


def test_the_switchs_errors_are_counted_and_logged_at_a_bounded_rate():
    rig = GatewayRig()
    refused = pipeline.delete_own_flows()
    table_full = raw_error(ofp.OFPET_FLOW_MOD_FAILED, ofp.OFPFMFC_TABLE_FULL, refused)
    for n in range(100):
        rig.run(rig.core.on_messages([table_full], 1.0 + n * 0.01))
    rig.run(rig.core.on_messages([table_full], 12.0))
    kind = (ofp.OFPET_FLOW_MOD_FAILED, ofp.OFPFMFC_TABLE_FULL)
    assert rig.core.counters.switch_errors[kind] == 101
    logged = [e for e in rig.errors if "refused" in e]
    assert len(logged) == 2 and "99 more like it" in logged[1]


def test_error_kinds_are_bounded():
    rig = GatewayRig()
    for code in range(200):
        rig.run(rig.core.on_messages([raw_error(5, code, pipeline.delete_own_flows())], 1.0))
    counts = rig.core.counters.switch_errors
    assert len(counts) == 65 and counts[(-1, -1)] == 200 - 64


def test_a_message_that_does_not_frame_is_counted_not_raised():
    rig = GatewayRig()
    rig.run(rig.core.on_messages([b"\x04\x01\x00\x0a\x00\x00\x00\x00\x00\x01"], 1.0))
    assert rig.core.counters.malformed["bad-error"] == 1


@pytest.mark.parametrize("rate,burst", [(10, 5), (300, 2), (400, 100)])
def test_the_token_bucket_keeps_its_rate_over_time(rate, burst):
    bucket = TokenBucket(rate, burst)
    admitted = sum(bucket.admit(step * 0.001) for step in range(10_000))  # 10 s, 1 kHz tries
    assert burst + rate * 10 - 1 <= admitted <= burst + rate * 10


def test_meter_mods_are_only_sent_when_something_changed():
    rig = GatewayRig()
    effects = rig.run(rig.core.set_vip(VIP, 1.0))
    assert not [m for m in effects.messages if m[1] == ofmeter.OFPT_METER_MOD]


def test_rising_meter_drops_tell_the_health_checks_the_gateway_is_flooded():
    static = dataclasses.replace(VIP, health=HealthCheck(type="none"))  # no other evidence
    rig = GatewayRig(vips=(static,))
    monitor = rig.core.monitor

    def stats_then_tick(dropped: int, now: float) -> None:
        rig.run(rig.core.on_messages([raw_meter_stats({GATEWAY_METER: dropped})], now))
        rig.tick(now)  # the tick hands the guard's count to the overload monitor

    stats_then_tick(0, 1.0)
    assert not monitor.overloaded(1.0)
    stats_then_tick(5000, 2.0)
    assert monitor.overloaded(2.0)
    stats_then_tick(5000, 6.0)
    assert not monitor.overloaded(6.0)  # no new drops: the flood is over


def test_probe_meter_drops_are_not_a_flood_of_clients():
    rig = GatewayRig()
    rig.run(rig.core.on_messages([raw_meter_stats({PROBE_METER: 0})], 1.0))
    rig.run(rig.core.on_messages([raw_meter_stats({PROBE_METER: 50})], 2.0))
    assert rig.core.guard.counters.dropped_clients == 0


def test_drop_counts_only_go_up_across_a_reconnect_and_a_deleted_meter():
    own = dataclasses.replace(VIP, name="api", address="10.0.0.101", new_flow_rate=500)
    rig = GatewayRig(vips=(VIP, own))
    api_meter = rig.core.guard.vip_meters["api"]
    seen = []
    for now, counts in [(1.0, {GATEWAY_METER: 5000, api_meter: 100}), (2.0, {GATEWAY_METER: 5100})]:
        rig.run(rig.core.on_messages([raw_meter_stats(counts)], now))
        seen.append(rig.core.guard.counters.dropped_clients)
    rig.connect(3.0)  # the switch's counts start again from 0
    rig.run(rig.core.on_messages([raw_meter_stats({GATEWAY_METER: 300})], 4.0))
    seen.append(rig.core.guard.counters.dropped_clients)
    rig.run(rig.core.remove_vip("api", 5.0))  # its meter's drops stay counted
    seen.append(rig.core.guard.counters.dropped_clients)
    assert seen == [5100, 5200, 5500, 5500]
    status = render_guard(guard_snapshot(rig.core))
    assert status["dropped_in_switch"] == 5500


def test_a_meter_the_switch_refuses_sends_the_guard_back_to_the_controller():
    rig = GatewayRig()
    refused = raw_error(
        ofp.OFPET_METER_MOD_FAILED, ofp.OFPMMFC_INVALID_METER, ofmeter.meter_mod(0, 1, 10, 1)
    )
    rig.run(rig.core.on_messages([refused], 1.0))
    assert rig.core.guard.mode == floodguard.CONTROLLER
    assert any("refused a meter" in e for e in rig.errors)
    # The rules were sent again naming no meter: new connections still reach the controller.
    assert meter_of(rig, frame()) == 0
    assert rig.table.lookup(packet_fields(UPLINK, frame())).actions
    assert not rig.send(UPLINK, frame(), 2.0).dropped


def test_only_flags_the_switch_has_and_no_meter_ids_beyond_its_last():
    rig = GatewayRig(
        connect=False,
        vips=(VIP, dataclasses.replace(VIP, name="api", address="10.0.0.101", new_flow_rate=500)),
    )
    rig.run(rig.core.on_connect(0.0))
    plain = ofmeter.MeterFeatures(
        max_meter=2,
        band_types=1 << ofmeter.OFPMBT_DROP,
        capabilities=ofmeter.OFPMF_PKTPS,
        max_bands=1,
    )
    effects = rig.core.guard.on_features(plain, rig.core._vips())
    mods = [m for m in effects if m[1] == ofmeter.OFPT_METER_MOD and m[8:10] == b"\x00\x00"]
    flags = {int.from_bytes(m[10:12], "big") for m in mods}
    assert flags == {ofmeter.OFPMF_PKTPS}  # no burst, no stats: the switch has neither
    assert rig.core.guard.vip_meters == {}  # meters 1 and 2 only: the VIP shares the gateway's


def test_vip_meters_follow_vip_changes_while_a_port_is_missing():
    rig = GatewayRig()
    rig.connect(1.0, ports={"up0": UPLINK})  # the tunnel port is gone: no rules of ours
    own = dataclasses.replace(VIP, name="api", address="10.0.0.101", new_flow_rate=500)
    rig.run(rig.core.set_vip(own, 2.0))
    api_meter = rig.core.guard.vip_meters["api"]
    assert rig.table.meters[api_meter] == (500, 166)
    rig.run(rig.core.remove_vip("api", 3.0))
    assert api_meter not in rig.table.meters
