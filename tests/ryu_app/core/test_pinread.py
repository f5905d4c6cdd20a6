"""Switch mode's pins and slot counters read back from the switch (``core.pinread``), through
the rig: real connections make the fake switch learn pins, the gateway's health tick asks for
them, the fake switch answers as a switch does (in parts), and the snapshot holds what it has."""

from __future__ import annotations

import dataclasses

import pytest

from ryu_app.core import ofstats, pinread
from ryu_app.core.flowkey import flow_from_fields, flow_key
from ryu_app.core.model import HealthCheck
from ryu_app.core.pinread import OTHER, PINS, SYN, PinReader, poll_interval
from ryu_app.core.pipeline import PRIORITY_FLOW
from tests.ryu_app.core.rig import UPLINK, VIP, GatewayRig, frame
from tests.ryu_app.core.test_ofstats import golden_reply

TCP_ACK = 0x10
SLOTS_OF_VIP = 256
SWITCH_VIP = dataclasses.replace(VIP, placement="port-bits", table_size=SLOTS_OF_VIP, mode="switch")
OTHER_VIP = dataclasses.replace(VIP, name="api", address="10.0.0.200", table_size=251)


def connect(rig, sport: int, now: float = 1.0, acks: int = 1) -> None:
    """A client's connection through the switch: its SYN, then ``acks`` non-SYNs."""
    rig.send(UPLINK, frame(sport=sport), now)
    for _ in range(acks):
        rig.send(UPLINK, frame(sport=sport, flags=TCP_ACK), now)


def answer(rig, now: float, per_part: int = 4) -> int:
    """The fake switch answers every flow statistics request, in parts, until the reader asks
    no more (it asks the next as soon as a reply ends); how many it answered."""
    answered = 0
    while rig.table.flow_stats_requests:
        request = rig.table.flow_stats_requests.pop(0)
        rig.run(rig.core.on_messages(rig.table.flow_stats_reply(request, per_part), now))
        answered += 1
    return answered


def key(sport: int) -> bytes:
    flow = flow_from_fields("10.1.0.11", sport, "10.0.0.100", 80, "tcp")
    return flow_key(flow, "5-tuple")


def test_no_switch_mode_vip_no_request():
    rig = GatewayRig(vips=(dataclasses.replace(SWITCH_VIP, mode="controller"),))
    for tick in range(1, 200):
        rig.tick(tick * 0.02)
    assert rig.table.flow_stats_requests == []
    assert rig.core.pin_reader.snapshot is None


def test_a_round_reads_every_pin_with_its_backend_and_the_slots_counters():
    rig = GatewayRig(vips=(SWITCH_VIP,))
    ports = range(40000, 40040, 2)
    for sport in ports:
        connect(rig, sport, acks=2)
    rig.tick(2.0)
    assert answer(rig, 2.0) == 2  # the pins, then the slot rules
    snapshot = rig.core.pin_reader.snapshot
    ids = rig.core.balancer.vips["web"].backend_ids
    predicted = rig.core.balancer.predict
    for sport in ports:
        backend_id, packets = snapshot.pins[key(sport)]
        flow = flow_from_fields("10.1.0.11", sport, "10.0.0.100", 80, "tcp")
        assert backend_id == ids[predicted(flow)]
        assert packets == 1  # the second ACK (the first one learned the pin)
    assert sum(snapshot.counts.values()) == len(ports) and snapshot.truncated == 0
    assert snapshot.taken_at == 2.0 and snapshot.vips == {"web"}
    syns = sum(v for (_, kind), v in snapshot.slot_packets.items() if kind == SYN)
    others = sum(v for (_, kind), v in snapshot.slot_packets.items() if kind == OTHER)
    assert (syns, others) == (len(ports), len(ports))
    assert sum(snapshot.slot_syns["web"].values()) == len(ports)
    slot = (40000 >> 1) % SLOTS_OF_VIP
    assert snapshot.slot_syns["web"][slot] == 1
    assert len(snapshot.slot_syns["web"]) == SLOTS_OF_VIP  # every slot's SYN rule


def test_only_the_switch_mode_vips_rules_are_asked_for():
    """A controller-mode VIP's per-flow rules have the same cookie kind: the request's match
    (the VIP's address and port) leaves them out, so they are not read each second."""
    rig = GatewayRig(vips=(SWITCH_VIP, OTHER_VIP))
    connect(rig, 40000)
    rig.send(UPLINK, frame(dst="10.0.0.200", sport=50000), 1.0)  # a controller-placed flow
    assert rig.table.rules_at(PRIORITY_FLOW) and len(rig.table.rules_at(PRIORITY_FLOW)) == 2
    rig.tick(2.0)
    answer(rig, 2.0)
    snapshot = rig.core.pin_reader.snapshot
    assert list(snapshot.pins) == [key(40000)]
    assert snapshot.vips == {"web"}


def test_pins_over_the_bound_are_counted_not_kept():
    rig = GatewayRig(vips=(SWITCH_VIP,))
    rig.core.pin_reader = PinReader(max_pins=5)
    for sport in range(40000, 40024):
        connect(rig, sport)
    rig.tick(2.0)
    answer(rig, 2.0, per_part=3)
    snapshot = rig.core.pin_reader.snapshot
    assert len(snapshot.pins) == 5
    assert snapshot.truncated == 19
    assert sum(snapshot.counts.values()) == 24


def test_one_request_in_flight_and_a_silent_switch_is_given_up_on():
    rig = GatewayRig(vips=(SWITCH_VIP,))
    reader = rig.core.pin_reader
    rig.tick(2.0)
    assert len(rig.table.flow_stats_requests) == 1
    for step in range(1, 100):  # ticks while the reply does not come: nothing more is sent
        rig.tick(2.0 + step * 0.02)
    assert len(rig.table.flow_stats_requests) == 1
    rig.tick(2.0 + pinread.REPLY_TIMEOUT + 0.01)
    assert reader.counters.timeouts == 1 and reader.snapshot is None
    late = rig.table.flow_stats_requests.pop()
    rig.run(rig.core.on_messages(rig.table.flow_stats_reply(late), 5.1))
    assert reader.counters.stale == 1 and reader.snapshot is None
    rig.tick(5.02 + pinread.POLL_SECONDS)  # the next round
    assert answer(rig, 6.1) == 2 and reader.snapshot is not None


def test_a_malformed_part_is_counted_and_the_last_snapshot_stays():
    rig = GatewayRig(vips=(SWITCH_VIP,))
    reader = rig.core.pin_reader
    connect(rig, 40000)
    rig.tick(2.0)
    answer(rig, 2.0)
    first = reader.snapshot
    rig.tick(2.0 + poll_interval(1))
    (request,) = rig.table.flow_stats_requests
    rig.table.flow_stats_requests.clear()
    good = rig.table.flow_stats_reply(request)[0]
    broken = good[:16] + b"\x00\x09" + good[18:]  # an entry length that is not 8-aligned
    rig.run(rig.core.on_messages([broken], 3.1))
    assert reader.counters.malformed == 1
    assert reader.snapshot is first
    rig.run(rig.core.on_messages([good], 3.1))  # the rest of that reply: no longer wanted
    assert reader.counters.stale == 1 and reader.snapshot is first
    assert rig.core.counters.malformed == {}  # the reader's own count, not a packet's


def test_the_snapshot_is_published_only_when_the_round_is_whole():
    rig = GatewayRig(vips=(SWITCH_VIP,))
    reader = rig.core.pin_reader
    for sport in range(40000, 40010):
        connect(rig, sport)
    rig.tick(2.0)
    (request,) = rig.table.flow_stats_requests
    rig.table.flow_stats_requests.clear()
    parts = rig.table.flow_stats_reply(request, per_part=3)
    assert len(parts) == 4 and [ofstats.reply_part(p).more for p in parts] == [1, 1, 1, 0]
    for part in parts[:-1]:
        rig.run(rig.core.on_messages([part], 2.1))
        assert rig.table.flow_stats_requests == [] and reader.snapshot is None
    rig.run(rig.core.on_messages([parts[-1]], 2.1))  # the pins are in: the slots' request
    assert len(rig.table.flow_stats_requests) == 1 and reader.snapshot is None
    answer(rig, 2.2)
    assert len(reader.snapshot.pins) == 10


def test_rounds_come_about_a_second_apart_and_slower_with_many_pins():
    assert poll_interval(0) == pinread.POLL_SECONDS
    assert poll_interval(100_000) == pinread.POLL_SECONDS + 4
    rig = GatewayRig(vips=(SWITCH_VIP,))
    rig.tick(2.0)
    answer(rig, 2.0)
    rig.tick(2.0 + pinread.POLL_SECONDS - 0.02)
    assert rig.table.flow_stats_requests == []
    rig.tick(2.0 + pinread.POLL_SECONDS)
    assert len(rig.table.flow_stats_requests) == 1


def test_requests_stop_while_the_switch_lacks_its_ports():
    rig = GatewayRig(vips=(SWITCH_VIP,), connect=False)
    rig.tick(2.0)
    assert rig.table.flow_stats_requests == []


def test_what_a_request_asks_for():
    reader = PinReader()
    state = GatewayRig(vips=(SWITCH_VIP,)).core.balancer.vips
    (message,) = reader.due(1.0, state)
    xid = int.from_bytes(message[4:8], "big")
    assert xid & 0xFFFF0000 == pinread.XID_BASE
    assert message[16 + 32 :] == pinread.vip_filter(SWITCH_VIP)
    assert reader._in_flight[0].what == PINS
    assert reader.due(1.5, state) == []  # one in flight


def test_a_pin_laid_out_as_open_vswitch_writes_it_reads_in_one_unpack():
    """The fast path and the general one agree on OVS's layout; os-ken's order (the fake
    switch's) is not OVS's and takes the general path (the tests above)."""
    message = golden_reply()
    (entry,) = ofstats.flow_stats(message)
    fast = pinread.ovs_pin_key(message, entry.match_at)
    general = flow_key(pinread.pin_flow(ofstats.match_fields(message, entry.match_at)), "5-tuple")
    assert fast == general == key(40002)
    rig = GatewayRig(vips=(SWITCH_VIP,))
    connect(rig, 40002)
    rig.tick(2.0)
    (request,) = rig.table.flow_stats_requests
    (reply,) = rig.table.flow_stats_reply(request)
    (entry,) = ofstats.flow_stats(reply)
    assert pinread.ovs_pin_key(reply, entry.match_at) is None


def test_slot_skew_is_the_fullest_slot_over_the_mean_once_there_are_enough_syns():
    even = {slot: 20 for slot in range(256)}
    assert pinread.slot_skew(even, 256) == 1.0
    assert pinread.slot_skew({0: 2560}, 256) == 256.0  # a NAT stepping ports by 2**(k+1)
    assert pinread.slot_skew({**even, 7: 20 + 5 * 256}, 256) == pytest.approx(
        (20 + 5 * 256) * 256 / (20 * 256 + 5 * 256)
    )
    assert pinread.slot_skew({0: 2559}, 256) is None  # under 10 a slot: chance decides
    assert pinread.slot_skew({}, 256) is None


# ---- SYNs placed between rounds (the overload monitor's switch-mode signal) -----------------


def syn_snapshot(at: float, syns: dict[str, dict[int, int]]) -> pinread.PinSnapshot:
    return pinread.PinSnapshot(at, frozenset(syns), {}, {}, 0, {}, syns)


def test_syns_placed_between_two_rounds_are_counted_per_slot():
    before = syn_snapshot(1.0, {"web": {0: 100, 1: 200}, "api": {0: 5}})
    after = syn_snapshot(2.5, {"web": {0: 130, 1: 260}, "api": {0: 5}})
    assert pinread.syn_delta(before, after) == (90, 1.5)
    assert pinread.syn_delta(None, after) is None  # no baseline
    assert pinread.syn_delta(after, after) is None  # no time between them


def test_a_counter_that_starts_over_never_gives_a_negative_or_huge_delta():
    """A slot rule written again (a health change moved the slot, or the switch reconnected
    and every rule was written again) starts its count at 0: its new count is what it placed
    since, at most; a VIP or slot the last round did not read is only a baseline."""
    before = syn_snapshot(1.0, {"web": {0: 1_000_000, 1: 50}})
    after = syn_snapshot(2.0, {"web": {0: 7, 1: 60, 2: 9_999_999}, "new": {0: 5_000_000}})
    assert pinread.syn_delta(before, after) == (7 + 10, 1.0)


def test_the_reader_gives_the_syns_its_last_two_rounds_saw():
    rig = GatewayRig(vips=(SWITCH_VIP,))
    reader = rig.core.pin_reader
    rig.tick(2.0)
    answer(rig, 2.0)
    assert reader.syn_delta is None  # the first round is the baseline
    for sport in range(41000, 41060, 2):
        connect(rig, sport, acks=0)  # SYNs only, as a flood's
    rig.tick(3.0)
    answer(rig, 3.0)
    assert reader.syn_delta == (30, 1.0)


def test_a_hurried_round_starts_at_once_but_not_on_the_heels_of_the_last():
    """A probe went unanswered: the next round (and so the SYN delta) comes now, not up to a
    second later; never sooner than ``HURRY_GAP`` after the last round started.  (A VIP not
    probed: its own probes, unanswered here, would hurry the reader too.)"""
    unprobed = dataclasses.replace(SWITCH_VIP, health=HealthCheck(type="none"))
    rig = GatewayRig(vips=(unprobed,))
    reader = rig.core.pin_reader
    rig.tick(2.0)
    answer(rig, 2.0)
    reader.hurry(2.1)
    rig.tick(2.1)
    assert rig.table.flow_stats_requests == []
    rig.tick(2.0 + pinread.HURRY_GAP)
    assert len(rig.table.flow_stats_requests) == 1  # not at 3.0
    reader.hurry(2.3)  # a round in flight: its end schedules the next, as before
    answer(rig, 2.3)
    rig.tick(2.0 + pinread.HURRY_GAP + pinread.POLL_SECONDS - 0.02)
    assert rig.table.flow_stats_requests == []
