"""Reading switch mode's state back from the switch: its pins and its slot rules' counters
(docs/switch-mode.md, "What REST and metrics read").  Pure: takes ``now`` and the replies'
bytes, returns the requests to send.

In switch mode the switch places and pins new flows itself, so the controller's flow table
knows none of them.  While a VIP is in switch mode and the switch is connected, a *round* of
flow statistics requests (``ofstats``) reads, per switch-mode VIP:

- its pins: rules of the per-flow cookie kind (``pipeline.KIND_FLOW``: learned pins carry
  ``flow_cookie(backend_id)``), whose match names the VIP's address and port (so that the pins
  of a controller-mode VIP on the same gateway, up to a million, are not read each second);
- its slot rules (``switchrules.KIND_SLOT``): packets per backend, SYN (priority 210) and
  other (190), and the SYNs of each slot (how evenly clients' source ports fill the slots).

Between two whole rounds, ``syn_delta`` is how many SYNs the slot rules placed and over how
long: the switch's analogue of controller mode's packet-in rate, which the gateway gives its
``overload.LoadMonitor`` (in switch mode a flood never reaches the controller).  When a probe
goes unanswered the gateway asks for the next round at once (``hurry``): a round a second
apart, plus the switch's own lag in updating rule counters (its revalidators, ~0.5 s), let a
flood's evidence come after a second silent probe had taken a VM down (bench_flood).

Bounded everywhere: one request in flight (its reply may come in many parts, each handled as
it comes: nothing holds a whole reply); one forgotten after ``REPLY_TIMEOUT`` without its last
part; at most ``MAX_PINS`` pins kept per round, the rest only counted (by backend) as
truncated; a malformed part is counted and ends its round (the last whole snapshot stays).
A round starts ``poll_interval`` after the one before started: about a second, longer while
there are many pins.  Measured here (2 cores shared, load 2-3): 2.5-3 us a pin in Open
vSwitch's layout (``ovs_pin_key``), ~1 ms per 64 KiB reply part, so 100,000 pins cost
~0.3 s of the loop's time a round, in slices of a part each; at one round per 5 s, ~6% of a
core.

What a whole round read is published at its end as one ``PinSnapshot``, immutable: REST and
``/metrics`` take the reference on the loop and read it on their own threads.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ryu_app.core import ofstats
from ryu_app.core import openflow as of
from ryu_app.core.flowkey import ETH_IPV4, Flow, flow_key
from ryu_app.core.model import HASH_5TUPLE, MODE_SWITCH, PROTO_TCP, Vip
from ryu_app.core.pipeline import (
    COOKIE_ALL_FLOWS_MASK,
    KIND_FLOW,
    PRIORITY_FLOW,
    kind_cookie,
)
from ryu_app.core.slots import PORT_SHIFT
from ryu_app.core.switchrules import KIND_SLOT, PRIORITY_SLOT, PRIORITY_SYN_SLOT

POLL_SECONDS = 1.0  # between the starts of two rounds, with few pins
PINS_PER_EXTRA_SECOND = 25_000  # ... plus a second per this many pins the last round read
# A round asked for early (``hurry``) starts at least this long after the last one started
# (plus the time with many pins, as ``poll_interval``): so a delta spans no tiny interval.
HURRY_GAP = 0.25
REPLY_TIMEOUT = 3.0  # a request whose reply has not ended by then is forgotten
MAX_PINS = 100_000  # pins kept per snapshot; the rest are counted only
MAX_COUNTED_IDS = 4096  # distinct backend ids counted per round (a sane switch sends ours)
MAX_SLOTS = 1 << 15  # slots of one VIP whose SYNs are kept (port-bits tables: at most 2**12)
XID_BASE = 0x50490000  # "PI": our requests' xids, so a late reply is told from a current one
REPLY_KINDS = frozenset({ofstats.OFPMP_FLOW})

PINS, SLOTS = "pins", "slots"
SYN, OTHER = "syn", "other"
_SLOT_KIND = {PRIORITY_SYN_SLOT: SYN, PRIORITY_SLOT: OTHER}
_ID_MASK = 0xFFFFFFFF
_COOKIES = {PINS: kind_cookie(KIND_FLOW), SLOTS: kind_cookie(KIND_SLOT)}
# OXM field numbers (OpenFlow basic class) a pin's and a slot rule's match name.
_IPV4_SRC, _IPV4_DST, _TCP_SRC, _TCP_DST = (of.FIELDS[n].number for n in (
    "ipv4_src", "ipv4_dst", "tcp_src", "tcp_dst"))  # fmt: skip
_ETH_TYPE, _IP_PROTO = of.FIELDS["eth_type"].number, of.FIELDS["ip_proto"].number


# A pin's match as Open vSwitch writes it (its order: addresses before ip_proto), read in one
# unpack: match type and length, then each OXM header and value.  Anything else (another
# switch's order, a masked field) takes the general path (``ofstats.match_fields``).
_OVS_PIN = struct.Struct("!HHIIIHI4sI4sIBIHIH")
_OVS_PIN_HEADERS = tuple(
    struct.unpack("!I", of.oxm_header(name))[0]
    for name in ("in_port", "eth_type", "ipv4_src", "ipv4_dst", "ip_proto", "tcp_src", "tcp_dst")
)
_PIN_KEY_HEAD = struct.Struct("!BHH")  # flowkey's 5-tuple key: protocol, ports; then addresses


def ovs_pin_key(message: bytes, match_at: int) -> bytes | None:
    """The 5-tuple flow key of a pin whose match is laid out as Open vSwitch writes it (a
    fifth of the general path's cost), or None if it is laid out otherwise."""
    if len(message) < match_at + _OVS_PIN.size:
        return None
    (kind, length, h_port, _, h_type, eth_type, h_src, src, h_dst, dst, h_proto, proto,
     h_sport, sport, h_dport, dport) = _OVS_PIN.unpack_from(message, match_at)  # fmt: skip
    if (kind, length, eth_type, proto) != (of.OFPMT_OXM, _OVS_PIN.size, ETH_IPV4, PROTO_TCP) or (
        h_port,
        h_type,
        h_src,
        h_dst,
        h_proto,
        h_sport,
        h_dport,
    ) != _OVS_PIN_HEADERS:
        return None
    return _PIN_KEY_HEAD.pack(PROTO_TCP, sport, dport) + src + dst


# The slot rules' SYN counts say how evenly clients' source ports fill the slots (the
# deployment constraint of ``port-bits``: ports must vary in bits 1..k; a NAT that hands out
# ports in steps of 2**(k+1) puts all its clients' flows in one slot).  Judged only once there
# are this many SYNs a slot on average: below that, chance alone makes the fullest slot
# several times the mean.
SKEW_MIN_MEAN = 10


def slot_skew(syns: Mapping[int, int], slots: int) -> float | None:
    """The fullest slot's SYNs over the mean over all ``slots`` (1.0: even; ``slots``: all in
    one), or None while there are too few SYNs to tell (``SKEW_MIN_MEAN``)."""
    total = sum(syns.values())
    if slots <= 0 or total < SKEW_MIN_MEAN * slots:
        return None
    return max(syns.values()) * slots / total


def poll_interval(pins: int) -> float:
    """Seconds from one round's start to the next's, after a round that read ``pins``."""
    return POLL_SECONDS + pins / PINS_PER_EXTRA_SECOND


def vip_filter(vip: Vip) -> bytes:
    """The match a request for one VIP's rules names: every pin and slot rule of the VIP
    matches at least this (and a rule of another VIP does not)."""
    return of.match(eth_type=ETH_IPV4, ip_proto=PROTO_TCP, ipv4_dst=vip.address, tcp_dst=vip.port)


class Request(NamedTuple):
    vip: str
    what: str  # PINS or SLOTS
    message: bytes


@dataclass(frozen=True)
class PinSnapshot:
    """What one round read (``taken_at``: when it started).  ``pins``: 5-tuple flow key
    (``flowkey.flow_key``) -> (backend id, packets), at most ``MAX_PINS``; ``counts``: backend
    id -> pins, all of them; ``truncated``: pins counted but not kept.  ``slot_packets``:
    (backend id, SYN or OTHER) -> packets its slot rules carried; ``slot_syns``: per VIP,
    slot -> SYN packets of that slot's rule."""

    taken_at: float
    vips: frozenset[str]
    pins: dict[bytes, tuple[int, int]]
    counts: dict[int, int]
    truncated: int
    slot_packets: dict[tuple[int, str], int]
    slot_syns: dict[str, dict[int, int]]
    _ordered: list = field(default_factory=list, compare=False, repr=False)

    def ordered(self) -> list[bytes]:
        """The pins' keys in order (what ``GET /v1/flows`` pages through): sorted once, on the
        first caller's thread (not the loop's), then kept."""
        if not self._ordered and self.pins:
            self._ordered.extend(sorted(self.pins))
        return self._ordered


@dataclass
class ReaderCounters:
    rounds: int = 0  # completed
    requests: int = 0
    timeouts: int = 0
    malformed: int = 0  # reply parts that did not parse (their round dropped)
    stale: int = 0  # reply parts of a request no longer in flight
    unreadable_pins: int = 0  # pins whose match names no IPv4 TCP 5-tuple (counted, not kept)


class _Round:
    """A round being read: its requests left, and what the replies so far said."""

    def __init__(self, started: float, requests: list[Request], max_pins: int):
        self.started = started
        self.left = requests
        self.vips = frozenset(request.vip for request in requests)
        self.max_pins = max_pins
        self.pins: dict[bytes, tuple[int, int]] = {}
        self.counts: dict[int, int] = {}
        self.truncated = 0
        self.unreadable = 0
        self.slot_packets: dict[tuple[int, str], int] = {}
        self.slot_syns: dict[str, dict[int, int]] = {}

    def count(self, backend_id: int) -> None:
        if backend_id not in self.counts and len(self.counts) >= MAX_COUNTED_IDS:
            backend_id = 0  # (no backend has id 0)
        self.counts[backend_id] = self.counts.get(backend_id, 0) + 1

    def snapshot(self) -> PinSnapshot:
        return PinSnapshot(
            self.started, self.vips, self.pins, self.counts, self.truncated,
            self.slot_packets, self.slot_syns,
        )  # fmt: skip


class PinReader:
    """Reads switch-mode VIPs' pins and slot counters in rounds (see the module's doc).  The
    gateway asks ``due`` on each health tick (while its switch is connected) and hands over
    flow statistics replies (``on_reply``); ``snapshot`` is the last whole round."""

    def __init__(self, max_pins: int = MAX_PINS, timeout: float = REPLY_TIMEOUT):
        self.max_pins = max_pins
        self.timeout = timeout
        self.snapshot: PinSnapshot | None = None
        self.counters = ReaderCounters()
        self._round: _Round | None = None
        self._in_flight: tuple[Request, int, float] | None = None  # request, xid, sent at
        self._next_round = float("-inf")
        self._last_start = float("-inf")  # when the last round started
        # SYNs the slot rules placed between the last two whole rounds, and the seconds
        # between them (``syn_delta``); None until there are two rounds to compare.
        self.syn_delta: tuple[int, float] | None = None
        self._xid = 0
        self._now = 0.0  # the last tick's time: when a request sent from ``on_reply`` left

    def due(self, now: float, states: Mapping[str, Any]) -> list[bytes]:
        """The request to send now, if any: the next of a round, or a new round's first.
        ``states``: the balancer's VIPs (name -> ``VipState``); a VIP in switch mode is read."""
        self._now = now
        if self._in_flight is not None:
            if now - self._in_flight[2] <= self.timeout:
                return []
            self.counters.timeouts += 1
            self._drop_round(now)
        if self._round is None:
            if now < self._next_round:
                return []
            vips = [state.vip for state in states.values() if state.vip.mode == MODE_SWITCH]
            if not vips:
                self.snapshot = self.syn_delta = None  # nothing in switch mode to report
                self._next_round = now + POLL_SECONDS
                return []
            requests = [_request(vip, what) for vip in vips for what in (PINS, SLOTS)]
            self._round = _Round(now, requests, self.max_pins)
            self._last_start = now
        return self._send_next(now)

    def _send_next(self, now: float) -> list[bytes]:
        request = self._round.left.pop(0)
        self._xid = (self._xid + 1) & 0xFFFF
        xid = XID_BASE | self._xid
        self._in_flight = (request, xid, now)
        self.counters.requests += 1
        message = bytearray(request.message)
        message[4:8] = xid.to_bytes(4, "big")
        return [bytes(message)]

    def _drop_round(self, now: float) -> None:
        self._round = self._in_flight = None
        self._next_round = now + POLL_SECONDS

    def on_reply(self, message: bytes) -> list[bytes]:
        """One part of a flow statistics reply: read into the round if it answers the request
        in flight.  Returns the round's next request when this part ended its reply (the round
        goes on at once, not a tick later); publishes the snapshot when the round is over."""
        in_flight = self._in_flight
        try:
            part = ofstats.reply_part(message)
            if in_flight is None or part.xid != in_flight[1]:
                self.counters.stale += 1
                return []
            request = in_flight[0]
            if request.what == PINS:
                _read_pins(self._round, message, self.counters)
            else:
                _read_slots(self._round, request.vip, message)
        except of.WireError:
            self.counters.malformed += 1
            if in_flight is not None:
                self._drop_round(self._now)
            return []
        if part.more:
            return []
        self._in_flight = None
        if self._round.left:
            return self._send_next(self._now)
        finished, self._round = self._round, None
        previous, self.snapshot = self.snapshot, finished.snapshot()
        self.syn_delta = syn_delta(previous, self.snapshot)
        self.counters.rounds += 1
        self.counters.unreadable_pins += finished.unreadable
        self._next_round = finished.started + poll_interval(sum(finished.counts.values()))
        return []

    def hurry(self, now: float) -> None:
        """Start the next round as soon as ``HURRY_GAP`` (and the time for the last round's
        pins) after the last one started, not up to a second later: a probe went unanswered,
        and if a flood is why, the slot rules' SYN counters say so before the next probe is
        judged.  A round in flight is not hurried (its end schedules the next)."""
        if self._round is None:
            pins = sum(self.snapshot.counts.values()) if self.snapshot else 0
            earliest = self._last_start + poll_interval(pins) - POLL_SECONDS + HURRY_GAP
            self._next_round = min(self._next_round, max(now, earliest))

    def forget(self) -> None:
        """The switch went or came back: a request in flight has no reply coming; the last
        snapshot stays (its age says how old it is)."""
        self._round = self._in_flight = None
        self._next_round = float("-inf")


def syn_delta(previous: PinSnapshot | None, current: PinSnapshot) -> tuple[int, float] | None:
    """(SYNs the slot rules placed from ``previous``'s round to ``current``'s, the seconds
    between them), or None without a baseline.  Counted per VIP and slot, both rounds having
    read it, so that no delta is negative or huge: a slot rule written again (a health change,
    a reconnect) starts its count over, and then only its new count counts (the SYNs since it
    was written, at most); a VIP or slot the previous round did not read is its baseline."""
    if previous is None or current.taken_at <= previous.taken_at:
        return None
    placed = 0
    for vip, syns in current.slot_syns.items():
        before = previous.slot_syns.get(vip)
        if before is None:
            continue
        for slot, count in syns.items():
            old = before.get(slot)
            if old is not None:
                placed += count - old if count >= old else count
    return placed, current.taken_at - previous.taken_at


def _request(vip: Vip, what: str) -> Request:
    message = ofstats.flow_stats_request(_COOKIES[what], COOKIE_ALL_FLOWS_MASK, vip_filter(vip))
    return Request(vip.name, what, message)


def _read_pins(round_: _Round, message: bytes, counters: ReaderCounters) -> None:
    """Count each pin by its cookie's backend; keep the first ``max_pins`` by 5-tuple."""
    pins = round_.pins
    for entry in ofstats.flow_stats(message):
        if entry.priority != PRIORITY_FLOW:
            continue
        backend_id = entry.cookie & _ID_MASK
        round_.count(backend_id)
        if len(pins) >= round_.max_pins:
            round_.truncated += 1
            continue
        key = ovs_pin_key(message, entry.match_at)
        if key is None:
            flow = pin_flow(ofstats.match_fields(message, entry.match_at))
            if flow is None:
                round_.unreadable += 1
                continue
            key = flow_key(flow, HASH_5TUPLE)
        pins[key] = (backend_id, entry.packets)


def pin_flow(fields: dict[int, tuple[bytes, bytes | None]]) -> Flow | None:
    """The flow a pin's match names (IPv4, TCP, both addresses and ports, unmasked), or None."""
    try:
        eth_type, proto = fields[_ETH_TYPE], fields[_IP_PROTO]
        src, dst = fields[_IPV4_SRC], fields[_IPV4_DST]
        src_port, dst_port = fields[_TCP_SRC], fields[_TCP_DST]
    except KeyError:
        return None
    exact = (eth_type, proto, src, dst, src_port, dst_port)
    if any(mask is not None for _, mask in exact):
        return None
    if int.from_bytes(eth_type[0], "big") != ETH_IPV4 or proto[0] != bytes((PROTO_TCP,)):
        return None
    if len(src[0]) != 4 or len(dst[0]) != 4 or len(src_port[0]) != 2 or len(dst_port[0]) != 2:
        return None
    ports = int.from_bytes(src_port[0], "big"), int.from_bytes(dst_port[0], "big")
    return Flow(4, src[0], dst[0], PROTO_TCP, *ports)


def _read_slots(round_: _Round, vip: str, message: bytes) -> None:
    """Sum the slot rules' packets by backend and kind; keep each slot's SYNs."""
    packets = round_.slot_packets
    syns = round_.slot_syns.setdefault(vip, {})
    for entry in ofstats.flow_stats(message):
        kind = _SLOT_KIND.get(entry.priority)
        if kind is None:
            continue
        key = (entry.cookie & _ID_MASK, kind)
        if key in packets or len(packets) < MAX_COUNTED_IDS:
            packets[key] = packets.get(key, 0) + entry.packets
        if kind == SYN and len(syns) < MAX_SLOTS:
            source_port = ofstats.match_fields(message, entry.match_at).get(_TCP_SRC)
            if source_port is not None and len(source_port[0]) == 2:
                syns[int.from_bytes(source_port[0], "big") >> PORT_SHIFT] = entry.packets
