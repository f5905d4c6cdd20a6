"""The new-flow benchmark's fake OpenFlow 1.3 switch.

The switch is lean so that it is never the bottleneck: packet-ins are struct-packed from a
template where only the client address, TCP source port and checksums change; the reader parses
the OpenFlow header and, for flow-mods and packet-outs, the two fields that name the flow; one
thread, one non-blocking socket, ``select``.  Flows are recognised by content, not by order: the
flow-mod's match (ipv4_src, tcp_src) and the frame a packet-out carries encode the flow index.
The bytes themselves are ``bench/switchwire.py``'s; a run's figures are a ``bench/phase.py``
``PhaseResult``.

For the rebuild phase it also answers the controller's health probes (except those sent to a
"dead" tunnel endpoint), keeps the flows placed on one tunnel endpoint (with when each was
sent), and notes when the controller deletes a backend's rules (it retired the backend: some
seconds after marking it down, ``serving.retire_grace``).

``bench/nullcontroller.py`` answers every packet-in at once from canned bytes: what the switch
measures against it is the tool's own ceiling.

Standard library only: the switch never loads the framework it measures.
"""

from __future__ import annotations

import select
import socket
import struct
import sys
import time
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.phase import ControllerError, PhaseResult
from bench.switchwire import (
    BACKEND_BITS,
    COOKIE_AND_MASK,
    DELETES,
    DPID,
    FLOW_MOD_COMMAND,
    FLOW_MOD_COOKIE,
    FLOW_MOD_MATCH,
    FLOW_MOD_PRIORITY,
    HEADER,
    OFPMP_PORT_DESC,
    OFPT_BARRIER_REPLY,
    OFPT_BARRIER_REQUEST,
    OFPT_ECHO_REPLY,
    OFPT_ECHO_REQUEST,
    OFPT_ERROR,
    OFPT_FEATURES_REQUEST,
    OFPT_FLOW_MOD,
    OFPT_GET_CONFIG_REPLY,
    OFPT_GET_CONFIG_REQUEST,
    OFPT_HELLO,
    OFPT_MULTIPART_REQUEST,
    OFPT_PACKET_OUT,
    OFPT_ROLE_REPLY,
    OFPT_ROLE_REQUEST,
    PACKET_OUT_ACTIONS,
    PACKET_OUT_ACTIONS_LEN,
    TUNNEL,
    U16,
    U32,
    U64,
    UPLINK,
    VIP,
    SynFactory,
    address_int,
    features_reply,
    flow_mod_index,
    flow_mod_tunnel,
    hello,
    packet_out_index,
    packet_out_tunnel,
    port_desc_reply,
    probe_answer,
    reply,
)

# ---- the switch ---------------------------------------------------------------------------------

RING = 1 << 21  # per-flow slots, indexed by flow index modulo RING (10 s at 200k/s)
MAX_OUTSTANDING = 1 << 16  # open loop: beyond this backlog, stop offering (counted)
FLOW_MOD_SEEN, PACKET_OUT_SEEN, DONE = 1, 2, 3
STALL_SECONDS = 5.0
DRAIN_IDLE_SECONDS = 3.0  # after a phase: a flow not answered by then is lost
DRAIN_MAX_SECONDS = 60.0


@dataclass
class SwitchCounters:
    packet_outs: int = 0
    flow_mods: int = 0
    foreign_packet_outs: int = 0  # not for one of our flows (probes, ARP, ...)
    other_flow_mods: int = 0  # not per-flow: pipeline, deletes
    duplicates: int = 0  # a second flow-mod or packet-out for one flow
    probes_answered: int = 0  # health probes (SYNs) answered with a SYN-ACK
    probes_silenced: int = 0  # ... left unanswered: their backend is silenced (dead)
    flow_cookie_kinds: Counter = field(default_factory=Counter)  # cookie >> 40 of flow rules
    other_messages: Counter = field(default_factory=Counter)  # by OpenFlow type
    errors: list = field(default_factory=list)  # (type, code) of OFPT_ERROR from the controller


class FakeSwitch:
    """One OpenFlow 1.3 switch connection, driven from one thread with ``select``."""

    def __init__(self, sock: socket.socket, dpid: int = DPID, ports=(UPLINK, TUNNEL), vips=(VIP,)):
        self.sock = sock
        self.dpid = dpid
        self.ports = list(ports)
        self.syns = SynFactory(vips)
        self.counters = SwitchCounters()
        self.ready_priority: int | None = None
        self.ready = False
        self.next_index = 0  # flows sent so far; the next flow's index
        self.done = 0
        self.abandoned = 0  # incomplete flows of earlier phases
        self.sent_at = array("d", bytes(8 * RING))
        self.state = bytearray(RING)
        self.measure_first = self.measure_end = sys.maxsize
        self.measure_started_at: float | None = None
        self.latencies: list[float] = []
        self.latency_sent_at = array("d")  # send time of each entry of ``latencies``
        # The rebuild phase: answer health probes (except to silenced tunnel endpoints), keep
        # the flows placed on one tunnel endpoint, and note when the controller deletes the
        # rules of a backend (backend id -> time): that is when it retired the backend.
        self.answer_probes = False
        self.silenced: set[int] = set()
        self.watch_tunnel = -1
        self.watched: list[tuple[int, int, float]] = []  # (flow, backend id, when it was sent)
        self.backend_deletes: dict[int, float] = {}
        self._in = b""
        self._out = bytearray()

    @classmethod
    def connect(cls, address: tuple[str, int], deadline: float, alive=lambda: True, **kwargs):
        """Connect to a controller, retrying until it listens (or ``deadline``, or it dies)."""
        while True:
            try:
                sock = socket.create_connection(address, timeout=1.0)
                break
            except OSError:
                if time.monotonic() > deadline or not alive():
                    raise ControllerError(f"controller not listening on {address}") from None
                time.sleep(0.05)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.setblocking(False)
        switch = cls(sock, **kwargs)
        switch._queue(hello())
        return switch

    def close(self) -> None:
        self.sock.close()

    # ---- wire ----------------------------------------------------------------------------

    def _queue(self, data: bytes) -> None:
        self._out += data
        self._flush()

    def _flush(self) -> None:
        try:
            sent = self.sock.send(self._out)
        except BlockingIOError:
            return
        except OSError as error:
            raise ControllerError(f"connection lost: {error}") from None
        del self._out[:sent]

    def pump(self, timeout: float) -> None:
        """Wait up to ``timeout`` for the socket, then write what is queued and read."""
        writers = [self.sock] if self._out else []
        readable, writable, _ = select.select([self.sock], writers, [], timeout)
        if writable:
            self._flush()
        if readable:
            self._read()

    def _read(self) -> None:
        try:
            chunk = self.sock.recv(1 << 20)
        except BlockingIOError:
            return
        except OSError as error:
            raise ControllerError(f"connection lost: {error}") from None
        if not chunk:
            raise ControllerError("controller closed the connection")
        now = time.perf_counter()
        buf = self._in + chunk if self._in else chunk
        size, offset = len(buf), 0
        while size - offset >= HEADER.size:
            _, kind, length, xid = HEADER.unpack_from(buf, offset)
            if length < HEADER.size:
                raise ControllerError(f"OpenFlow message of length {length}")
            if size - offset < length:
                break
            if kind == OFPT_PACKET_OUT:
                self.counters.packet_outs += 1
                index = packet_out_index(buf, offset, length)
                if index >= 0:
                    self._seen(index, PACKET_OUT_SEEN, now)
                else:
                    self._other_packet_out(buf, offset, length)
            elif kind == OFPT_FLOW_MOD:
                self._flow_mod(buf, offset, length, now)
            else:
                self._control(kind, xid, buf[offset : offset + length])
            offset += length
        self._in = buf[offset:]

    def _flow_mod(self, buf, offset: int, length: int, now: float) -> None:
        self.counters.flow_mods += 1
        index = flow_mod_index(buf, offset, length)
        if index >= 0:
            cookie = U64.unpack_from(buf, offset + FLOW_MOD_COOKIE)[0]
            self.counters.flow_cookie_kinds[cookie >> 40] += 1
            if self.watch_tunnel >= 0 and flow_mod_tunnel(buf, offset, length) == self.watch_tunnel:
                self._watched(index, cookie & BACKEND_BITS)
            self._seen(index, FLOW_MOD_SEEN, now)
            return
        self.counters.other_flow_mods += 1
        if length >= FLOW_MOD_MATCH and buf[offset + FLOW_MOD_COMMAND] in DELETES:
            cookie, mask = COOKIE_AND_MASK.unpack_from(buf, offset + FLOW_MOD_COOKIE)
            if mask & BACKEND_BITS == BACKEND_BITS:  # the rules of one backend
                self.backend_deletes.setdefault(cookie & BACKEND_BITS, now)  # retired
        elif length >= FLOW_MOD_MATCH:
            priority = U16.unpack_from(buf, offset + FLOW_MOD_PRIORITY)[0]
            self.ready = self.ready or priority == self.ready_priority

    def _seen(self, index: int, what: int, now: float) -> None:
        if not self.next_index - RING < index < self.next_index or index < 0:
            if what == PACKET_OUT_SEEN:
                self.counters.foreign_packet_outs += 1
            else:
                self.counters.other_flow_mods += 1
            return
        slot = index & (RING - 1)
        state = self.state[slot]
        if state & what:
            self.counters.duplicates += 1
            return
        state |= what
        self.state[slot] = state
        if state == DONE:
            self.done += 1
            if self.measure_first <= index < self.measure_end:
                sent_at = self.sent_at[slot]
                self.latencies.append(now - sent_at)
                self.latency_sent_at.append(sent_at)

    def _watched(self, index: int, backend_id: int) -> None:
        """A flow placed on the watched tunnel endpoint: kept with its backend id and when
        its SYN was sent (its VIP is ``vip_of(index)``)."""
        self.watched.append((index, backend_id, self.sent_at[index & (RING - 1)]))

    def _other_packet_out(self, buf, offset: int, length: int) -> None:
        """A packet-out that is not for a flow of ours: a health probe is answered (unless its
        tunnel endpoint is silenced); anything else is counted."""
        self.counters.foreign_packet_outs += 1
        if not self.answer_probes:
            return
        frame = (
            offset + PACKET_OUT_ACTIONS + U16.unpack_from(buf, offset + PACKET_OUT_ACTIONS_LEN)[0]
        )
        answer = probe_answer(buf[frame : offset + length])
        if answer is None:  # the RST that ends a probe, or not a probe at all
            return
        if packet_out_tunnel(buf, offset) in self.silenced:
            self.counters.probes_silenced += 1
        else:
            self.counters.probes_answered += 1
            self._queue(answer)

    def silence(self, tunnel_ip: str) -> None:
        """From now on, probes sent to this tunnel endpoint get no answer: the VM is dead."""
        self.silenced.add(address_int(tunnel_ip))

    def _control(self, kind: int, xid: int, message: bytes) -> None:
        if kind == OFPT_HELLO:
            return
        if kind == OFPT_ECHO_REQUEST:
            self._queue(reply(OFPT_ECHO_REPLY, xid, message[HEADER.size :]))
        elif kind == OFPT_FEATURES_REQUEST:
            self._queue(features_reply(xid, self.dpid))
        elif kind == OFPT_BARRIER_REQUEST:
            self._queue(reply(OFPT_BARRIER_REPLY, xid))
        elif kind == OFPT_GET_CONFIG_REQUEST:
            self._queue(reply(OFPT_GET_CONFIG_REPLY, xid, U32.pack(0xFFFF)))
        elif kind == OFPT_ROLE_REQUEST:
            self._queue(reply(OFPT_ROLE_REPLY, xid, message[HEADER.size :]))
        elif kind == OFPT_MULTIPART_REQUEST and U16.unpack_from(message, 8)[0] == OFPMP_PORT_DESC:
            self._queue(port_desc_reply(xid, self.ports))
        else:
            self.counters.other_messages[kind] += 1
            if kind == OFPT_ERROR and len(self.counters.errors) < 10:
                self.counters.errors.append(struct.unpack_from("!HH", message, 8))

    def _send_syns(self, count: int, now: float) -> None:
        packet_in, sent_at, state = self.syns.packet_in, self.sent_at, self.state
        first = self.next_index
        for index in range(first, first + count):
            slot = index & (RING - 1)
            sent_at[slot] = now
            state[slot] = 0
        self.next_index = first + count
        self._queue(b"".join([packet_in(index) for index in range(first, first + count)]))

    # ---- phases --------------------------------------------------------------------------

    def wait_ready(
        self, priority: int, timeout: float, alive=lambda: True, settle: float = 0.3
    ) -> None:
        """Answer the handshake until a flow-mod of ``priority`` (the pipeline) arrives, then
        for ``settle`` seconds more (the rest of the pipeline, late port-desc requests)."""
        self.ready_priority = priority
        deadline = time.monotonic() + timeout
        while not self.ready:
            if time.monotonic() > deadline or not alive():
                raise ControllerError(f"no flow-mod of priority {priority} within {timeout} s")
            self.pump(0.05)
        settle_until = time.monotonic() + settle
        while time.monotonic() < settle_until:
            self.pump(0.05)

    def outstanding(self) -> int:
        return self.next_index - self.done - self.abandoned

    def _stalled(self, seconds: float = STALL_SECONDS) -> ControllerError:
        return ControllerError(
            f"no flow completed for {seconds} s ({self.outstanding()} outstanding)"
        )

    def run(
        self,
        window: int = 0,
        rate: float = 0.0,
        warmup: float = 0.0,
        duration: float = 1.0,
        cpu_clocks=lambda: (0.0, 0.0),
        hook: Callable[[float], bool] | None = None,
        stall_seconds: float = STALL_SECONDS,
        timeline: bool = False,
    ) -> PhaseResult:
        """Closed loop (``window`` outstanding) or open loop (``rate`` per second).

        ``cpu_clocks()`` gives (controller, whole machine) busy CPU seconds so far.  ``hook(now)``,
        if given, is called on every turn of the loop; when it returns True the phase ends
        there (``duration`` is then a limit).  ``measure_started_at`` is set once measuring
        starts, after ``warmup``."""
        if (window > 0) == (rate > 0):
            raise ValueError("give exactly one of window and rate")
        start = time.perf_counter()
        measure_from, measure_to = start + warmup, start + warmup + duration
        self.latencies = []
        self.latency_sent_at = array("d")
        self.measure_first = self.measure_end = sys.maxsize
        self.measure_started_at = None
        offered = not_offered = 0
        marks = None  # (time, done, switch, controller, machine CPU) when measuring starts
        last_done, last_progress = self.done, start
        while True:
            now = time.perf_counter()
            if marks is None and now >= measure_from:
                marks = (now, self.done, time.process_time(), *cpu_clocks())
                self.measure_first = self.next_index
                self.measure_started_at = now
            if now >= measure_to or (hook is not None and hook(now) and marks is not None):
                break
            outstanding = self.outstanding()
            if window:
                count = window - outstanding
            else:
                count = int((now - start) * rate) - offered
                room = MAX_OUTSTANDING - outstanding
                if count > room:
                    not_offered += count - room
                    offered += count - room
                    count = room
                offered += max(count, 0)
            if count > 0:
                self._send_syns(count, now)
            if self.done != last_done:
                last_done, last_progress = self.done, now
            elif outstanding and now - last_progress > stall_seconds:
                raise self._stalled(stall_seconds)
            wait = 0.05 if window else min(0.05, start + (offered + 1) / rate - now)
            self.pump(max(wait, 0.0))
        self.measure_end = self.next_index
        return self._phase_result(marks, now, rate, not_offered, cpu_clocks, timeline)

    def _phase_result(
        self, marks: tuple, now: float, rate: float, not_offered: int, cpu_clocks, timeline: bool
    ) -> PhaseResult:
        """The phase's figures from the marks taken when measuring started (time, flows done,
        this process's, the controller's and the machine's CPU) to ``now``; the answers still
        due are waited for first."""
        t0, done0, switch0, controller0, machine0 = marks
        elapsed = now - t0
        completed = self.done - done0
        switch = (time.process_time() - switch0) / elapsed
        controller, machine = cpu_clocks()
        controller = (controller - controller0) / elapsed
        other = max(0.0, (machine - machine0) / elapsed - controller - switch)
        self._drain()
        incomplete, no_flow_mod = self.incomplete_between(self.measure_first, self.measure_end)
        self.abandoned += self.outstanding()
        points = []
        if timeline:
            points = [
                (t, s * 1e3) for t, s in zip(self.latency_sent_at, self.latencies, strict=True)
            ]
        return PhaseResult(
            flows_per_s=completed / elapsed,
            offered_per_s=rate,
            latencies_ms=sorted(seconds * 1e3 for seconds in self.latencies),
            incomplete=incomplete,
            no_flow_mod=no_flow_mod,
            not_offered=not_offered,
            switch_cpu=switch,
            controller_cpu=controller,
            other_cpu=other,
            timeline=points,
        )

    def _drain(self) -> None:
        """Wait for the answers still due, while they keep coming (a backlog is late, not lost)."""
        start = last_progress = time.perf_counter()
        done = self.done
        while self.outstanding():
            now = time.perf_counter()
            if self.done != done:
                done, last_progress = self.done, now
            if now - last_progress > DRAIN_IDLE_SECONDS or now - start > DRAIN_MAX_SECONDS:
                return
            self.pump(0.05)

    def incomplete_between(self, first: int, end: int) -> tuple[int, int]:
        """Of the flows with index first..end-1: how many never completed, and how many of
        those got their packet-out but no flow-mod."""
        incomplete = no_flow_mod = 0
        for index in range(max(first, end - RING), end):
            state = self.state[index & (RING - 1)]
            if state != DONE:
                incomplete += 1
                no_flow_mod += state == PACKET_OUT_SEEN
        return incomplete, no_flow_mod

    def prefill(self, flows: int, window: int, report=print) -> float:
        """Place ``flows`` new flows as fast as the controller takes them; returns seconds."""
        start = time.perf_counter()
        first, target = self.next_index, self.next_index + flows
        next_report = start + 10
        last_done, last_progress = self.done, start
        while self.next_index < target:
            now = time.perf_counter()
            count = min(window - self.outstanding(), target - self.next_index)
            if count > 0:
                self._send_syns(count, now)
            self.pump(0.05)
            if self.done != last_done:
                last_done, last_progress = self.done, now
            elif now - last_progress > STALL_SECONDS:
                raise self._stalled()
            if now > next_report:
                report(f"    prefill: {self.next_index - first:,} of {flows:,} flows")
                next_report += 10
        self._drain()
        self.abandoned += self.outstanding()
        return time.perf_counter() - start
