"""Health probes that travel the clients' own path: through the tunnel to the VIP service.

How a probe travels
-------------------
The controller writes each probe packet itself and sends it with a packet-out through the
gateway's tunnel port, with the same actions a client flow to that backend gets (inner MAC,
``tun_dst``, tunnel key).  The packet is addressed from the gateway's own uplink address to the
VIP and service port, so the VM receives exactly what a client's packet looks like after the
gateway: it checks the tunnel, the VM's decapsulation, the VIP on its loopback and the service.
The VM answers, like to any client, directly through its router (direct server return) to the
gateway's address; the router already reaches that address (it is its ECMP next hop) and a rule
on the gateway sends TCP to its own address up to the controller, where the prober reads it.

So the probe needs nothing on the gateway host (no interface, namespace, route or socket) and
works the same in Mininet and beside real gateways.  GLB Director health-checks through its
tunnel for the same reason.  Each probe has its own source port, so replies find their probe.

- ``tcp``: SYN -> SYN-ACK is success (then RST, as HAProxy closes its checks); an RST or no
  answer within ``timeout`` is failure (no answer while the gateway is overloaded is
  inconclusive instead: ``overload.LoadMonitor.silence``, which this prober also feeds with
  each probe's outcome and round trip: the time to the SYN-ACK, or to a refusal).
- ``http``: after the SYN-ACK, one segment with ``GET path HTTP/1.0``; the status line of the
  answer must carry ``expect_status``.  Then RST.

Pure: ``due``/``expire``/``on_segment`` take ``now`` and return what to send and what changed;
the shell sends the frames and feeds the replies.
"""

from __future__ import annotations

import heapq
import itertools
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass

from ryu_app.core.health import DOWN, UP, HealthPolicy, HealthState, HealthView, Transition
from ryu_app.core.model import CHECK_HTTP, Vip, service_key
from ryu_app.core.overload import LoadMonitor
from ryu_app.core.packets import (
    TCP_ACK,
    TCP_FIN,
    TCP_PSH,
    TCP_RST,
    TCP_SYN,
    Segment,
    tcp_frame,
)

PORT_FIRST, PORT_LAST = 49152, 65535  # source ports of probes (IANA dynamic range)
_STATUS_LINE = re.compile(rb"^HTTP/\d\.\d (\d{3})")
_MAX_RESPONSE_PREFIX = 256  # enough for a status line; more is never buffered


@dataclass(frozen=True)
class Send:
    """A frame to send to one backend of one VIP (with that backend's tunnel actions)."""

    vip: str
    backend: str
    frame: bytes


@dataclass(frozen=True)
class Verdict:
    vip: str
    backend: str
    transition: Transition


@dataclass
class _Probe:
    vip: str
    backend: str
    port: int  # our source port
    isn: int
    started: float
    deadline: float
    peer_isn: int | None = None
    connected: float | None = None  # when the SYN-ACK came: the end of its round trip
    request: bytes = b""
    response: bytes = b""


@dataclass
class _Target:
    """What a VIP's probes look like: addresses, port and check."""

    vip: Vip
    src: bytes
    dst: bytes
    port: int
    request: bytes  # empty for a tcp check


class Prober:
    def __init__(
        self,
        addresses: Iterable[bytes],
        mac: bytes,
        rng: random.Random | None = None,
        monitor: LoadMonitor | None = None,
    ):
        self.sources = {len(a): a for a in reversed(list(addresses))}  # first address wins
        self.mac = mac
        self.rng = rng or random.Random()
        self.monitor = monitor or LoadMonitor()
        self.states: dict[tuple[str, str], HealthState] = {}
        # The backends each VIP has a state for: ``remove_vip`` looks at one VIP's, not at
        # every state (set_vip calls it: at 1,000 VIPs x 100 backends the scan of all states
        # made start-up quadratic, ~2-3 s).
        self._backends_of: dict[str, set[str]] = {}
        # Each state's ``view()`` as of its last change (a result, or its start): what the
        # REST side shows, copied in one step (``views.copy()``) however many backends.
        self.views: dict[tuple[str, str], HealthView] = {}
        # When each backend's next probe is due: a heap of (time, tie-breaker, key), and the
        # one time per key that counts (heap entries of replaced or removed states are stale).
        self._schedule: list[tuple[float, int, tuple[str, str]]] = []
        self._scheduled: dict[tuple[str, str], float] = {}
        self._tie = itertools.count()
        self.targets: dict[str, _Target] = {}
        self._probes: dict[int, _Probe] = {}
        self._active: dict[tuple[str, str], int] = {}  # (vip, backend) -> port in flight
        self._next_port = PORT_FIRST + self.rng.randrange(PORT_LAST - PORT_FIRST)
        self.sent = 0
        self.results = {True: 0, False: 0}

    # ---- configuration ---------------------------------------------------------------------

    def set_vip(self, vip: Vip, healthy: set[str], now: float) -> None:
        """Probe ``vip``'s backends; ``healthy`` is where each one starts (the balancer's view,
        so a replaced VIP keeps its backends' state).  A VIP with ``health.type`` ``none`` has
        static backends: none is probed (and none has a state here)."""
        service = service_key(vip)  # what the probe-answer rules match: they must agree
        src = self.sources.get(len(service.address))
        if src is None or service.check_port is None:
            # (No gateway address of the VIP's IP version: the config check reports it.)
            self.remove_vip(vip.name)
            return
        self.remove_vip(vip.name, keep={b.name for b in vip.backends})
        health = vip.health
        policy = HealthPolicy(health.interval, health.timeout, health.rise, health.fall)
        port = service.check_port
        request = b""
        if health.type == CHECK_HTTP:
            host = f"[{vip.address}]" if ":" in vip.address else vip.address
            host += "" if port == 80 else f":{port}"
            request = (
                f"GET {health.path} HTTP/1.0\r\nHost: {host}\r\n"
                "User-Agent: lockstep-health\r\nConnection: close\r\n\r\n"
            ).encode("ascii")
        self.targets[vip.name] = _Target(vip, src, service.address, port, request)
        for backend in vip.backends:
            key = (vip.name, backend.name)
            initial = UP if backend.name in healthy else DOWN
            old = self.states.get(key)
            # Same policy and the same verdict as the balancer's: keep the streaks.  Otherwise
            # (new backend, changed tunnel or MAC, new policy) start again from the balancer's
            # view, so the two never disagree.
            if old is not None and old.policy == policy and old.state == initial:
                continue
            if self._probes:
                self._drop_probes(lambda probe, key=key: (probe.vip, probe.backend) == key)
            self.monitor.forget(key)
            self.states[key] = state = HealthState(policy, now, initial, phase=self.rng.random())
            self._backends_of.setdefault(vip.name, set()).add(backend.name)
            self.views[key] = state.view()
            self._plan(key, state.next_probe_at)

    def remove_vip(self, name: str, keep: set[str] | frozenset = frozenset()) -> None:
        self.targets.pop(name, None)
        backends = self._backends_of.get(name, set())
        for backend in [b for b in backends if b not in keep]:
            key = (name, backend)
            self.monitor.forget(key)
            del self.states[key]
            del self.views[key]
            del self._scheduled[key]
            backends.discard(backend)
        if not backends:
            self._backends_of.pop(name, None)
        if self._probes:
            self._drop_probes(lambda probe: probe.vip == name and probe.backend not in keep)

    def abandon(self) -> None:
        """Forget the probes in flight without a verdict (the switch went away: their answers
        cannot come back, which says nothing about the backends)."""
        for state in self.states.values():
            state.abandon_probe()
        self._probes.clear()
        self._active.clear()

    def _drop_probes(self, doomed) -> None:
        for port in [port for port, probe in self._probes.items() if doomed(probe)]:
            probe = self._probes.pop(port)
            self._active.pop((probe.vip, probe.backend), None)

    # ---- the probe cycle -------------------------------------------------------------------

    def due(self, now: float) -> list[Send]:
        """Start every probe whose time has come.  O(probes started): called every few tens
        of ms with thousands of backends, it must not look at the ones not due."""
        sends, busy = [], []
        schedule = self._schedule
        while schedule and schedule[0][0] <= now:
            at, _, key = heapq.heappop(schedule)
            state = self.states.get(key)
            if state is None or self._scheduled.get(key) != at:
                continue  # the backend went, or was planned again since
            port = self._free_port() if state.probe_started_at is None else None
            if port is None:  # its last probe is still out (timeout > interval), or no port
                busy.append(key)  # is free: look again on the next call
                continue
            deadline = state.start_probe(now)
            self._plan(key, state.next_probe_at)
            target = self.targets[key[0]]
            isn = self.rng.getrandbits(32)
            probe = _Probe(key[0], key[1], port, isn, now, deadline)
            self._probes[port] = probe
            self._active[key] = port
            sends.append(self._send(target, probe, probe.isn, 0, TCP_SYN))
        for key in busy:
            self._plan(key, now)
        return sends

    def _plan(self, key: tuple[str, str], at: float) -> None:
        self._scheduled[key] = at
        heapq.heappush(self._schedule, (at, next(self._tie), key))

    def expire(self, now: float) -> list[Verdict]:
        """Probes whose timeout passed without an answer count as failures, or, while the
        gateway is overloaded, as inconclusive.  All of them are told to the monitor before
        any is judged: silence of most backends at once is its evidence of a common cause."""
        late = [p for p in self._probes.values() if now >= p.deadline]
        for probe in late:
            key = (probe.vip, probe.backend)
            state = self.states.get(key)
            self.monitor.probe_ended(key, False, state is not None and state.is_up, now)
        return [v for p in late if (v := self._finish(p, False, now, "no answer", answered=False))]

    def on_segment(self, segment: Segment, now: float) -> tuple[list[Send], list[Verdict]]:
        """A TCP segment addressed to the gateway: the answer to one of our probes, or noise."""
        probe = self._probes.get(segment.dst_port)
        if probe is None:
            return [], []
        target = self.targets.get(probe.vip)
        if target is None or (segment.src, segment.src_port, segment.dst) != (
            target.dst,
            target.port,
            target.src,
        ):
            return [], []
        flags = segment.flags
        if probe.peer_isn is None:  # waiting for the SYN-ACK
            if segment.ack != (probe.isn + 1) & 0xFFFFFFFF or not flags & TCP_ACK:
                return [], []  # a stale answer to an earlier probe on this port
            if flags & TCP_RST:
                return [], self._verdicts(probe, False, now, "connection refused")
            if flags & (TCP_SYN | TCP_ACK) != TCP_SYN | TCP_ACK:
                return [], []
            probe.peer_isn = segment.seq
            probe.connected = now
            if not target.request:
                return [self._reset(target, probe)], self._verdicts(probe, True, now, "connected")
            probe.request = target.request
            reply = self._send(
                target, probe, probe.isn + 1, segment.seq + 1, TCP_PSH | TCP_ACK, target.request
            )
            return [reply], []
        return self._http_answer(target, probe, segment, now)

    def _http_answer(self, target, probe, segment, now):
        expected = (probe.peer_isn + 1 + len(probe.response)) & 0xFFFFFFFF
        in_order = segment.seq == expected  # anything else is a retransmission or overtook one
        if segment.payload and in_order:
            probe.response = (probe.response + segment.payload)[:_MAX_RESPONSE_PREFIX]
        line_done = b"\r\n" in probe.response or len(probe.response) >= _MAX_RESPONSE_PREFIX
        if not line_done:
            if in_order and segment.flags & (TCP_RST | TCP_FIN):
                detail = "closed before a status line"
                return [], self._verdicts(probe, False, now, detail)
            return [], []
        match = _STATUS_LINE.match(probe.response)
        status = int(match.group(1)) if match else None
        expect = target.vip.health.expect_status
        ok = status == expect
        detail = f"HTTP {status}" if status is not None else "not an HTTP status line"
        if not ok and status is not None:
            detail += f" (expected {expect})"
        return [self._reset(target, probe)], self._verdicts(probe, ok, now, detail)

    # ---- helpers ---------------------------------------------------------------------------

    def _verdicts(self, probe: _Probe, ok: bool, now: float, detail: str) -> list[Verdict]:
        verdict = self._finish(probe, ok, now, detail)
        return [verdict] if verdict else []

    def _finish(
        self, probe: _Probe, ok: bool, now: float, detail: str, answered: bool = True
    ) -> Verdict | None:
        """End ``probe``.  An answer is told to the monitor here (a silent probe was told by
        ``expire``); one that came after the timeout, like no answer at all, is a failure
        unless the monitor finds the gateway overloaded (then inconclusive: no verdict, no
        streak moved).  A refusal or a wrong status is always a failure: the VM answered."""
        del self._probes[probe.port]
        key = (probe.vip, probe.backend)
        self._active.pop(key, None)
        state = self.states.get(key)
        if state is None:  # the backend went while its probe was out
            return None
        timeout = state.policy.timeout
        took = now - probe.started
        if answered:
            # The round trip is to the SYN-ACK: an HTTP status line comes after the
            # application's own work, which says nothing about the gateway's load.
            rtt = took if probe.connected is None else probe.connected - probe.started
            self.monitor.probe_ended(key, True, state.is_up, now, rtt / timeout)
        if not answered or ok and took > timeout:
            if answered:
                detail = f"answered after the {timeout}s timeout"
            inconclusive, detail = self.monitor.silence(state.policy, probe.started, now, detail)
            if inconclusive:
                state.record_inconclusive(now, detail)
                self.views[key] = state.view()
                return None
            ok = False
        self.results[ok] += 1
        transition = state.record(ok, now, detail)
        self.views[key] = state.view()
        if not state.is_up:  # (probe_ended was told it was UP: this result took it down)
            self.monitor.forget(key)
        return Verdict(probe.vip, probe.backend, transition) if transition else None

    def _reset(self, target: _Target, probe: _Probe) -> Send:
        seq = probe.isn + 1 + len(probe.request)
        return self._send(target, probe, seq, 0, TCP_RST)

    def _send(self, target, probe, seq, ack, flags, payload=b"") -> Send:
        self.sent += 1
        frame = tcp_frame(
            self.mac,
            b"\0" * 6,  # the tunnel actions set the backend's MAC
            target.src,
            target.dst,
            probe.port,
            target.port,
            seq & 0xFFFFFFFF,
            ack & 0xFFFFFFFF,
            flags,
            payload,
        )
        return Send(probe.vip, probe.backend, frame)

    def _free_port(self) -> int | None:
        span = PORT_LAST - PORT_FIRST + 1
        if len(self._probes) >= span:
            return None
        port = self._next_port
        while port in self._probes:
            port = PORT_FIRST + (port - PORT_FIRST + 1) % span
        self._next_port = PORT_FIRST + (port - PORT_FIRST + 1) % span
        return port
