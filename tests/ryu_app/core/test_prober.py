"""Prober: probe scheduling, the TCP and HTTP checks segment by segment, and reconfiguration.

Time is a float passed in; randomness is a seeded ``random.Random``.  Every probe frame is read
back with ``packets.parse_segment`` and every answer is written with ``packets.tcp_frame``, as
the backend's TCP stack would send it.
"""

from __future__ import annotations

import ipaddress
import random
from itertools import pairwise

import pytest

from ryu_app.core.health import DOWN, UP
from ryu_app.core.model import Backend, HealthCheck, Vip
from ryu_app.core.overload import LoadMonitor
from ryu_app.core.packets import (
    TCP_ACK,
    TCP_FIN,
    TCP_PSH,
    TCP_RST,
    TCP_SYN,
    Segment,
    parse_segment,
    tcp_frame,
)
from ryu_app.core.prober import PORT_FIRST, PORT_LAST, Prober, Send

GW4 = ipaddress.ip_address("10.0.1.1").packed
GW4_OTHER = ipaddress.ip_address("10.0.1.9").packed
GW6 = ipaddress.ip_address("fd00:1::1").packed
MAC = bytes.fromhex("020000000001")
VM_MAC = bytes.fromhex("020000000101")
BACKENDS = tuple(
    Backend(f"vm{i}", f"192.168.100.{10 + i}", f"02:00:00:00:01:{i:02x}") for i in range(1, 5)
)
TCP_CHECK = HealthCheck(type="tcp", interval=1.0, timeout=0.5, rise=2, fall=2)
HTTP_CHECK = HealthCheck(
    type="http", path="/healthz", interval=1.0, timeout=0.5, rise=2, fall=2, expect_status=200
)
ALL = {b.name for b in BACKENDS}


def vip(health=TCP_CHECK, backends=BACKENDS, address="10.0.0.100", port=80, name="web"):
    return Vip(name, address, port, health=health, backends=backends)


class CalmMonitor(LoadMonitor):
    """A gateway that never finds itself overloaded, so every silence is the backend's: for
    tests of the prober's bookkeeping where all backends go unanswered (which the real
    monitor takes for a common cause: test_overload.py)."""

    def silence(self, policy, started, now, detail):
        return False, detail


def prober(*vips, addresses=(GW4,), healthy=ALL, seed=7, monitor=None):
    result = Prober(list(addresses), MAC, random.Random(seed), monitor)
    for each in vips:
        result.set_vip(each, set(healthy), 0.0)
    return result


def start(pr: Prober, now: float = 1.0) -> dict[str, Segment]:
    """Start every due probe (all of them, at ``now`` >= interval); SYNs by backend."""
    sends = pr.due(now)
    return {send.backend: parse_segment(send.frame) for send in sends}


def answer(probe: Segment, seq: int, ack: int, flags: int, payload: bytes = b"", **changes):
    """The backend's segment back to the prober: from the VIP to the gateway, ports swapped."""
    fields = {
        "src": probe.dst,
        "dst": probe.src,
        "src_port": probe.dst_port,
        "dst_port": probe.src_port,
        **changes,
    }
    frame = tcp_frame(
        VM_MAC,
        MAC,
        fields["src"],
        fields["dst"],
        fields["src_port"],
        fields["dst_port"],
        seq,
        ack,
        flags,
        payload,
    )
    return parse_segment(frame)


def syn_ack(probe: Segment, peer_isn: int = 5000, **changes) -> Segment:
    return answer(probe, peer_isn, probe.seq + 1, TCP_SYN | TCP_ACK, **changes)


def segments(sends: list[Send]) -> list[Segment]:
    return [parse_segment(s.frame) for s in sends]


# ---- scheduling ------------------------------------------------------------------------------


def test_first_probes_are_spread_over_an_interval_then_one_per_interval():
    pr = prober(vip())
    starts: dict[str, list[float]] = {name: [] for name in ALL}
    for step in range(400):  # 4 s in 10 ms steps; no answers, so every probe times out
        now = step / 100
        pr.expire(now)
        for send in pr.due(now):
            starts[send.backend].append(now)
    firsts = sorted(times[0] for times in starts.values())
    assert all(0.0 <= t <= 1.0 for t in firsts)
    assert len(set(firsts)) == len(firsts)  # phases differ: not all at once
    for times in starts.values():
        assert len(times) in (3, 4)
        gaps = [b - a for a, b in pairwise(times)]
        assert all(gap == pytest.approx(1.0, abs=0.011) for gap in gaps)


def test_the_same_seed_schedules_the_same_way():
    first = [(s.backend, s.frame) for s in prober(vip(), seed=3).due(1.0)]
    again = [(s.backend, s.frame) for s in prober(vip(), seed=3).due(1.0)]
    other = [(s.backend, s.frame) for s in prober(vip(), seed=4).due(1.0)]
    assert len(first) == 4 and first == again and first != other  # ports and ISNs differ


def test_each_probe_has_its_own_source_port_and_is_a_syn_to_the_service():
    many = tuple(
        Backend(f"vm{i}", f"192.168.{i // 250}.{i % 250 + 1}", "02:00:00:00:01:01")
        for i in range(300)
    )
    pr = prober(vip(backends=many), vip(name="api", port=8080, backends=many))
    sends = pr.due(1.0)
    assert len(sends) == 600
    syns = segments(sends)
    ports = [s.src_port for s in syns]
    assert len(set(ports)) == 600 and all(PORT_FIRST <= p <= PORT_LAST for p in ports)
    assert {(s.src, s.dst, s.flags, s.ack, s.payload) for s in syns} == {
        (GW4, ipaddress.ip_address("10.0.0.100").packed, TCP_SYN, 0, b"")
    }
    assert {s.dst_port for s in syns} == {80, 8080}
    assert all(send.frame[6:12] == MAC for send in sends)  # Ethernet source: the gateway
    assert pr.sent == 600


def test_a_probe_in_flight_is_not_started_twice():
    pr = prober(vip())
    assert len(pr.due(1.0)) == 4
    assert pr.due(1.2) == []  # still waiting for answers
    assert len(pr.due(2.0)) == 0  # deadline 1.5 not yet expired by the caller
    pr.expire(2.0)
    assert len(pr.due(2.0)) == 4


def test_health_port_overrides_the_service_port():
    check = HealthCheck(type="tcp", port=8443, interval=1.0, timeout=0.5)
    syns = start(prober(vip(health=check)))
    assert {s.dst_port for s in syns.values()} == {8443}


# ---- the tcp check ---------------------------------------------------------------------------


def test_syn_ack_is_success_and_is_closed_with_a_reset():
    pr = prober(vip())
    syn = start(pr)["vm1"]
    sends, verdicts = pr.on_segment(syn_ack(syn), 1.1)
    assert verdicts == []  # vm1 was already up: success changes nothing
    (reset,) = segments(sends)
    assert sends[0].backend == "vm1" and sends[0].vip == "web"
    assert reset.flags == TCP_RST and reset.seq == (syn.seq + 1) & 0xFFFFFFFF
    assert (reset.src_port, reset.dst_port, reset.src, reset.dst) == (
        syn.src_port,
        syn.dst_port,
        syn.src,
        syn.dst,
    )
    assert pr.results == {True: 1, False: 0}
    state = pr.states[("web", "vm1")]
    assert state.last_result is True and state.last_detail == "connected"
    assert pr.on_segment(syn_ack(syn), 1.2) == ([], [])  # the probe is over: a repeat is noise


@pytest.mark.parametrize(
    "changes",
    [
        {"src": ipaddress.ip_address("10.0.0.101").packed},  # not the VIP
        {"dst": GW4_OTHER},  # not our address
        {"src_port": 81},  # not the service port
        {"dst_port": 1234},  # no probe on that port
    ],
    ids=["other-source", "other-destination", "other-service-port", "unknown-probe-port"],
)
def test_answers_that_do_not_fit_the_probe_are_ignored(changes):
    pr = prober(vip())
    syn = start(pr)["vm1"]
    assert pr.on_segment(syn_ack(syn, **changes), 1.1) == ([], [])
    assert pr.results == {True: 0, False: 0}
    sends, _ = pr.on_segment(syn_ack(syn), 1.2)  # the real answer still counts
    assert pr.results[True] == 1 and segments(sends)[0].flags == TCP_RST


@pytest.mark.parametrize(
    ("ack_delta", "flags"),
    [(0, TCP_SYN | TCP_ACK), (2, TCP_SYN | TCP_ACK), (1, TCP_SYN), (1, TCP_ACK), (0, TCP_RST)],
    ids=["ack-isn", "ack-isn+2", "syn-without-ack", "ack-without-syn", "reset-wrong-ack"],
)
def test_segments_that_are_not_our_syn_ack_are_ignored(ack_delta, flags):
    pr = prober(vip())
    syn = start(pr)["vm1"]
    stale = answer(syn, 5000, (syn.seq + ack_delta) & 0xFFFFFFFF, flags)
    assert pr.on_segment(stale, 1.1) == ([], [])
    assert pr.results == {True: 0, False: 0}


def test_reset_is_failure_connection_refused():
    pr = prober(vip())
    syn = start(pr)["vm2"]
    refused = answer(syn, 0, syn.seq + 1, TCP_RST | TCP_ACK)
    assert pr.on_segment(refused, 1.1) == ([], [])  # fall 2: one failure is no verdict yet
    state = pr.states[("web", "vm2")]
    assert state.last_result is False and state.last_detail == "connection refused"
    assert pr.results == {True: 0, False: 1}


def test_no_answer_is_failure_once_the_timeout_passed():
    pr = prober(vip())
    syns = start(pr, 1.0)
    for name in ("vm2", "vm3", "vm4"):  # the others answer: vm1's silence is its own
        pr.on_segment(syn_ack(syns[name]), 1.1)
    assert pr.expire(1.49) == [] and pr.results[False] == 0
    assert pr.expire(1.5) == []  # one failure, fall 2: still up
    assert pr.results == {True: 3, False: 1}
    assert pr.states[("web", "vm1")].last_detail == "no answer"
    assert pr.expire(1.6) == [] and pr.results[False] == 1  # each probe fails once only


def test_fall_consecutive_failures_take_a_backend_down():
    pr = prober(vip(backends=BACKENDS[:1]))
    start(pr, 1.0)
    assert pr.expire(1.5) == []
    start(pr, 2.0)
    (verdict,) = pr.expire(2.5)
    assert (verdict.vip, verdict.backend) == ("web", "vm1")
    assert verdict.transition.state == DOWN and verdict.transition.at == 2.5
    assert verdict.transition.reason == "no answer"
    assert pr.states[("web", "vm1")].state == DOWN


def test_a_success_between_failures_resets_the_count():
    pr = prober(vip(backends=BACKENDS[:1]))
    start(pr, 1.0)
    pr.expire(1.5)
    pr.on_segment(syn_ack(start(pr, 2.0)["vm1"]), 2.1)
    start(pr, 3.0)
    assert pr.expire(3.5) == []
    assert pr.states[("web", "vm1")].state == UP


def test_rise_consecutive_successes_bring_a_backend_up():
    pr = prober(vip(backends=BACKENDS[:1]), healthy=set())
    assert pr.states[("web", "vm1")].state == DOWN
    _, verdicts = pr.on_segment(syn_ack(start(pr, 1.0)["vm1"]), 1.1)
    assert verdicts == []
    _, verdicts = pr.on_segment(syn_ack(start(pr, 2.0)["vm1"]), 2.1)
    (verdict,) = verdicts
    assert verdict.transition.state == UP and verdict.transition.reason == "connected"


def test_sequence_numbers_wrap_around():
    pr = prober(vip(health=HTTP_CHECK, backends=BACKENDS[:1]))
    syn = start(pr)["vm1"]
    sends, _ = pr.on_segment(syn_ack(syn, peer_isn=0xFFFFFFFF), 1.1)
    (request,) = segments(sends)
    assert request.ack == 0  # peer ISN + 1, modulo 2**32
    sends, verdicts = pr.on_segment(answer(syn, 0, 0, TCP_ACK, b"HTTP/1.1 200 OK\r\n"), 1.2)
    assert pr.results[True] == 1


# ---- the http check --------------------------------------------------------------------------


def http_probe(pr: Prober, backend: str = "vm1", peer_isn: int = 5000):
    """Start the probe, answer the SYN; returns (syn, request segment)."""
    syn = start(pr)[backend]
    sends, verdicts = pr.on_segment(syn_ack(syn, peer_isn), 1.1)
    assert verdicts == []
    (request,) = segments(sends)
    return syn, request


def data(syn: Segment, offset: int, payload: bytes, flags: int = TCP_ACK | TCP_PSH, isn=5000):
    """A data segment from the backend, ``offset`` bytes into its byte stream."""
    return answer(syn, isn + 1 + offset, 0, flags, payload)


def test_http_sends_the_request_after_the_syn_ack():
    pr = prober(vip(health=HTTP_CHECK))
    syn, request = http_probe(pr)
    assert request.flags == TCP_PSH | TCP_ACK
    assert request.seq == syn.seq + 1 and request.ack == 5001
    assert request.src_port == syn.src_port and request.dst_port == 80
    lines = request.payload.split(b"\r\n")
    assert lines[0] == b"GET /healthz HTTP/1.0"
    assert b"Host: 10.0.0.100" in lines and request.payload.endswith(b"\r\n\r\n")
    assert pr.results == {True: 0, False: 0}  # not decided by the handshake


def test_http_host_header_of_an_ipv6_vip_is_bracketed():
    pr = prober(vip(health=HTTP_CHECK, address="fd00:100::80"), addresses=(GW6,))
    _, request = http_probe(pr)
    assert b"\r\nHost: [fd00:100::80]\r\n" in request.payload


def test_http_200_is_success_and_the_connection_is_reset():
    pr = prober(vip(health=HTTP_CHECK))
    syn, request = http_probe(pr)
    sends, verdicts = pr.on_segment(data(syn, 0, b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\nok"), 1.2)
    assert verdicts == [] and pr.results == {True: 1, False: 0}
    (reset,) = segments(sends)
    assert reset.flags == TCP_RST
    assert reset.seq == (request.seq + len(request.payload)) & 0xFFFFFFFF  # after the request
    assert pr.states[("web", "vm1")].last_detail == "HTTP 200"


def test_http_503_is_failure_with_the_status_in_the_detail():
    pr = prober(vip(health=HTTP_CHECK, backends=BACKENDS[:1]))
    syn, _ = http_probe(pr)
    sends, _ = pr.on_segment(data(syn, 0, b"HTTP/1.1 503 Service Unavailable\r\n"), 1.2)
    assert segments(sends)[0].flags == TCP_RST
    assert pr.results == {True: 0, False: 1}
    assert pr.states[("web", "vm1")].last_detail == "HTTP 503 (expected 200)"


def test_http_two_failures_give_a_down_verdict_with_the_status():
    pr = prober(vip(health=HTTP_CHECK, backends=BACKENDS[:1]))
    syn, _ = http_probe(pr)
    pr.on_segment(data(syn, 0, b"HTTP/1.0 503 Busy\r\n"), 1.2)
    syn = start(pr, 2.0)["vm1"]
    pr.on_segment(syn_ack(syn), 2.1)
    _, verdicts = pr.on_segment(data(syn, 0, b"HTTP/1.0 503 Busy\r\n"), 2.2)
    (verdict,) = verdicts
    assert verdict.transition.state == DOWN
    assert verdict.transition.reason == "HTTP 503 (expected 200)"


def test_expect_status_other_than_200():
    check = HealthCheck(type="http", path="/", expect_status=204, interval=1.0, timeout=0.5)
    pr = prober(vip(health=check))
    syn, _ = http_probe(pr)
    pr.on_segment(data(syn, 0, b"HTTP/1.1 200 OK\r\n"), 1.2)
    assert pr.results == {True: 0, False: 1}
    assert pr.states[("web", "vm1")].last_detail == "HTTP 200 (expected 204)"


def test_status_line_split_across_two_segments():
    pr = prober(vip(health=HTTP_CHECK))
    syn, _ = http_probe(pr)
    assert pr.on_segment(data(syn, 0, b"HTTP/1.1 2"), 1.2) == ([], [])
    sends, _ = pr.on_segment(data(syn, 10, b"00 OK\r\n"), 1.3)
    assert segments(sends)[0].flags == TCP_RST and pr.results == {True: 1, False: 0}


def test_out_of_order_and_duplicate_segments_do_not_corrupt_the_status_line():
    pr = prober(vip(health=HTTP_CHECK))
    syn, _ = http_probe(pr)
    assert pr.on_segment(data(syn, 10, b"00 OK\r\n"), 1.2) == ([], [])  # ahead of its time
    assert pr.on_segment(data(syn, 0, b"HTTP/1.1 2"), 1.25) == ([], [])
    assert pr.on_segment(data(syn, 0, b"HTTP/1.1 2"), 1.3) == ([], [])  # duplicate
    assert pr.on_segment(syn_ack(syn), 1.3) == ([], [])  # retransmitted SYN-ACK
    sends, _ = pr.on_segment(data(syn, 10, b"00 OK\r\n"), 1.35)  # the retransmission
    assert segments(sends)[0].flags == TCP_RST
    assert pr.results == {True: 1, False: 0}
    assert pr.states[("web", "vm1")].last_detail == "HTTP 200"


def test_fin_before_a_status_line_is_failure():
    pr = prober(vip(health=HTTP_CHECK))
    syn, _ = http_probe(pr)
    assert pr.on_segment(data(syn, 0, b"HTTP/1.1 2", TCP_ACK), 1.2) == ([], [])
    sends, _ = pr.on_segment(data(syn, 10, b"", TCP_FIN | TCP_ACK), 1.3)
    assert sends == [] and pr.results == {True: 0, False: 1}
    assert pr.states[("web", "vm1")].last_detail == "closed before a status line"


def test_reset_after_the_handshake_is_failure():
    pr = prober(vip(health=HTTP_CHECK))
    syn, _ = http_probe(pr)
    pr.on_segment(data(syn, 0, b"", TCP_RST), 1.2)
    assert pr.results == {True: 0, False: 1}


def test_a_non_http_answer_is_failure():
    pr = prober(vip(health=HTTP_CHECK))
    syn, _ = http_probe(pr)
    sends, _ = pr.on_segment(data(syn, 0, b"SSH-2.0-OpenSSH_9.6\r\n"), 1.2)
    assert segments(sends)[0].flags == TCP_RST and pr.results[False] == 1
    assert pr.states[("web", "vm1")].last_detail == "not an HTTP status line"


def test_an_endless_line_is_judged_without_buffering_it_all():
    pr = prober(vip(health=HTTP_CHECK))
    syn, _ = http_probe(pr)
    offset = 0
    sends: list[Send] = []
    for _ in range(10):  # 10 x 100 bytes, no line end
        sends, _ = pr.on_segment(data(syn, offset, b"a" * 100), 1.2)
        offset += 100
        if sends:
            break
    assert offset == 300 and pr.results[False] == 1  # decided within the first 256 bytes


def test_http_answer_after_the_timeout_is_late_and_counts_as_failure():
    pr = prober(vip(health=HTTP_CHECK))
    syn, _ = http_probe(pr)
    pr.on_segment(data(syn, 0, b"HTTP/1.1 200 OK\r\n"), 1.6)  # started 1.0, timeout 0.5
    assert pr.states[("web", "vm1")].last_result is False


def test_an_out_of_order_final_segment_does_not_end_the_probe():
    pr = prober(vip(health=HTTP_CHECK))
    syn, _ = http_probe(pr)
    # The tail arrives first, with the FIN; the head is still in flight.
    pr.on_segment(data(syn, 10, b"00 OK\r\n\r\n", TCP_ACK | TCP_FIN), 1.2)
    pr.on_segment(data(syn, 0, b"HTTP/1.1 2"), 1.25)
    pr.on_segment(data(syn, 10, b"00 OK\r\n\r\n", TCP_ACK | TCP_FIN), 1.3)  # retransmitted
    assert pr.results == {True: 1, False: 0}


# ---- reconfiguration -------------------------------------------------------------------------


def test_set_vip_keeps_the_state_of_remaining_backends_and_drops_the_others():
    pr = prober(vip(), monitor=CalmMonitor())
    syns = start(pr, 1.0)
    pr.on_segment(answer(syns["vm1"], 0, syns["vm1"].seq + 1, TCP_RST | TCP_ACK), 1.1)
    pr.expire(1.5)
    syns = start(pr, 2.0)
    _, verdicts = pr.on_segment(answer(syns["vm1"], 0, syns["vm1"].seq + 1, TCP_RST | TCP_ACK), 2.1)
    assert [v.transition.state for v in verdicts] == [DOWN]
    kept = pr.states[("web", "vm1")]
    # vm3 and vm4 go while their probes are in flight; vm5 is new.
    vm5 = Backend("vm5", "192.168.100.15", "02:00:00:00:01:05")
    pr.set_vip(vip(backends=(*BACKENDS[:2], vm5)), {"vm2", "vm5"}, 2.2)
    assert pr.states[("web", "vm1")] is kept and kept.state == DOWN
    assert set(pr.states) == {("web", "vm1"), ("web", "vm2"), ("web", "vm5")}
    assert pr.states[("web", "vm5")].state == UP
    assert pr.on_segment(syn_ack(syns["vm3"]), 2.3) == ([], [])  # its probe is forgotten
    # Only vm2's probe is still in flight (its second failure); vm3's and vm4's are gone.
    assert [(v.backend, v.transition.state) for v in pr.expire(5.0)] == [("vm2", DOWN)]
    assert pr.results == {True: 0, False: 6}


def test_changed_check_timing_restarts_the_state_from_the_balancers_view():
    pr = prober(vip())
    slower = HealthCheck(type="tcp", interval=2.0, timeout=1.0, rise=2, fall=2)
    pr.set_vip(vip(health=slower), {"vm1"}, 3.0)
    assert pr.states[("web", "vm1")].state == UP and pr.states[("web", "vm2")].state == DOWN
    assert pr.states[("web", "vm1")].policy.interval == 2.0


def test_remove_vip_forgets_its_probes():
    pr = prober(vip(), vip(name="api", port=8080), monitor=CalmMonitor())
    syns = {(s.vip, s.backend): parse_segment(s.frame) for s in pr.due(1.0)}
    assert len(syns) == 8
    pr.remove_vip("web")
    assert {k[0] for k in pr.states} == {"api"} and "web" not in pr.targets
    assert pr.on_segment(syn_ack(syns[("web", "vm1")]), 1.1) == ([], [])
    pr.expire(10.0)
    assert pr.results == {True: 0, False: 4}  # only api's four probes ended


def test_ipv6_vip_is_probed_from_the_first_ipv6_address():
    second6 = ipaddress.ip_address("fd00:1::2").packed
    pr = prober(
        vip(address="fd00:100::80"), vip(name="v4"), addresses=(GW4, GW6, second6, GW4_OTHER)
    )
    sends = pr.due(1.0)
    by_vip = {}
    for send in sends:
        by_vip.setdefault(send.vip, set()).add(parse_segment(send.frame).src)
    assert by_vip == {"web": {GW6}, "v4": {GW4}}
    assert {s.frame[12:14] for s in sends if s.vip == "web"} == {b"\x86\xdd"}  # IPv6 frames
    syn = next(parse_segment(s.frame) for s in sends if s.vip == "web" and s.backend == "vm1")
    assert syn.dst == ipaddress.ip_address("fd00:100::80").packed
    pr.on_segment(syn_ack(syn), 1.1)
    assert pr.results[True] == 1


def test_a_vip_without_a_source_address_of_its_version_is_not_probed():
    pr = prober(vip(address="fd00:100::80"), addresses=(GW4,))
    assert pr.states == {} and pr.targets == {}
    assert pr.due(100.0) == [] and pr.expire(100.0) == []


def test_a_vip_moved_to_an_ip_version_without_a_source_is_no_longer_probed():
    pr = prober(vip(), addresses=(GW4,))
    pr.set_vip(vip(address="fd00:100::80"), ALL, 0.5)
    assert pr.due(100.0) == []


def scan_due(state, now: float) -> bool:
    """The oracle for the schedule: nothing in flight, and the planned time has come."""
    return state.probe_started_at is None and now >= state.next_probe_at


def naive_due(pr: Prober, now: float) -> set[tuple[str, str]]:
    """Which backends a full scan of the health states calls due."""
    return {key for key, state in pr.states.items() if scan_due(state, now)}


@pytest.mark.parametrize("seed", range(5))
def test_the_schedule_starts_exactly_the_probes_a_full_scan_would(seed):
    """Ticks at uneven times, answers or none, a VIP replaced and one removed on the way: the
    heap-driven ``due`` starts a probe for every backend a scan finds due, and only those."""
    rng = random.Random(seed)
    slow = HealthCheck(type="tcp", interval=0.3, timeout=0.3, rise=1, fall=3)  # may overlap
    pr = prober(vip(), vip(name="api", port=81, health=slow))
    now = 0.0
    for tick in range(400):
        now += rng.uniform(0.005, 0.05)
        pr.expire(now)
        expected = naive_due(pr, now)
        started = {(send.vip, send.backend) for send in pr.due(now)}
        assert started == expected, (tick, now)
        for send in rng.sample([s for s in pr._probes.values()], k=len(pr._probes) // 2):
            segment = Segment(
                ipaddress.ip_address("10.0.0.100").packed, pr.targets[send.vip].port,
                GW4, send.port, 5000, (send.isn + 1) & 0xFFFFFFFF, TCP_SYN | TCP_ACK, b"",
            )  # fmt: skip
            pr.on_segment(segment, now + 0.001)
        if tick == 100:
            pr.set_vip(vip(backends=BACKENDS[:2]), {"vm1", "vm2"}, now)
        if tick == 200:
            pr.remove_vip("api")
    assert pr.sent > 50  # the comparison above ran over many probes


def test_due_with_ten_thousand_backends_only_looks_at_the_due_ones():
    many = tuple(Backend(f"vm{i}", "192.168.100.10", "02:00:00:00:01:01") for i in range(10_000))
    pr = prober(vip(backends=many, health=HealthCheck(type="tcp", interval=10.0, timeout=1.0)))
    first = pr.due(0.001)  # phases spread the first probes over the 10 s interval
    assert 0 <= len(first) < 20
    assert len(pr.due(10.0)) + len(first) <= 10_000
    assert not any(scan_due(state, 10.0) for state in pr.states.values())


def test_a_slow_http_application_is_not_the_gateways_round_trip():
    """The RTT sample is the time to the SYN-ACK (the network and the gateway's path), not to
    the status line (that adds the application's own time): an application answering at 70%
    of the timeout is no evidence of overload when its SYN-ACKs come back at once."""
    monitor = LoadMonitor()
    pr = prober(vip(health=HTTP_CHECK), monitor=monitor)
    for second in range(1, 4):  # 12 answered probes: more than the monitor's minimum sample
        for backend, syn in start(pr, float(second)).items():
            pr.on_segment(syn_ack(syn), second + 0.05)
            _, verdicts = pr.on_segment(data(syn, 0, b"HTTP/1.1 200 OK\r\n"), second + 0.35)
            assert pr.states[("web", backend)].last_detail == "HTTP 200"
    view = monitor.view()
    assert view.probe_rtt_share == pytest.approx(0.1)
    assert not monitor.overloaded(3.35) and view.reasons == ()


def test_a_backend_that_goes_down_leaves_the_monitors_count_at_once():
    """Its silence was told to the monitor while it was UP; once DOWN it is no longer one of
    the UP backends whose silence could be a common cause, not even until its next probe."""
    monitor = LoadMonitor()
    pr = prober(vip(), monitor=monitor)
    for second in (1.0, 2.0):
        for backend, syn in start(pr, second).items():
            if backend != "vm1":
                pr.on_segment(syn_ack(syn), second + 0.1)
        pr.expire(second + 0.6)
    assert pr.states[("web", "vm1")].state == DOWN
    assert (monitor.view().silent_backends, monitor.view().answering_backends) == (0, 3)
