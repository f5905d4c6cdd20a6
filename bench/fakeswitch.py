"""The new-flow benchmark's fake OpenFlow 1.3 switch, and a null controller to measure it by.

The switch is lean so that it is never the bottleneck: packet-ins are struct-packed from a
template where only the client address, TCP source port and checksums change; the reader parses
the OpenFlow header and, for flow-mods and packet-outs, the two fields that name the flow; one
thread, one non-blocking socket, ``select``.  Flows are recognised by content, not by order: the
flow-mod's match (ipv4_src, tcp_src) and the frame a packet-out carries encode the flow index.

The null controller answers every packet-in at once with a canned flow-mod and packet-out, from
raw bytes: what the switch measures against it is the tool's own ceiling.

    python bench/fakeswitch.py --null-controller PORT

Standard library only: the switch never loads the framework it measures.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import select
import socket
import struct
import sys
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field

# ---- the emulated network ---------------------------------------------------------------------

DPID = 0x1
GATEWAY_MAC = bytes.fromhex("020000000001")
ROUTER_MAC = bytes.fromhex("02000000fe01")
UPLINK = (1, "gw1-eth0")
TUNNEL = (2, "gw1-vxlan")
VIP = ("10.0.0.100", 80)
CLIENT_NET = 0x0A800000  # 10.128.0.0/9: client address and source port encode the flow index
FIRST_PORT = 1024
PORTS_PER_CLIENT = 65536 - FIRST_PORT

# ---- OpenFlow 1.3 wire format (only what a switch needs here) ---------------------------------

OFP_VERSION = 4
OFPT_HELLO, OFPT_ERROR, OFPT_ECHO_REQUEST, OFPT_ECHO_REPLY = 0, 1, 2, 3
OFPT_FEATURES_REQUEST, OFPT_FEATURES_REPLY = 5, 6
OFPT_GET_CONFIG_REQUEST, OFPT_GET_CONFIG_REPLY = 7, 8
OFPT_PACKET_IN, OFPT_PACKET_OUT, OFPT_FLOW_MOD = 10, 13, 14
OFPT_MULTIPART_REQUEST, OFPT_MULTIPART_REPLY = 18, 19
OFPT_BARRIER_REQUEST, OFPT_BARRIER_REPLY = 20, 21
OFPT_ROLE_REQUEST, OFPT_ROLE_REPLY = 24, 25
OFPMP_PORT_DESC = 13
OFPFC_ADD = 0
OFP_NO_BUFFER = 0xFFFFFFFF
OFPR_ACTION = 1
OXM_IN_PORT = 0x80000004  # class OPENFLOW_BASIC, field 0, length 4
OXM_IPV4_SRC = 0x80001604  # field 11, length 4
OXM_TCP_SRC = 0x80001A02  # field 13, length 2
OXM_ETH_TYPE, OXM_IP_PROTO, OXM_IPV4_DST, OXM_TCP_DST = 5, 10, 12, 14  # field numbers

HEADER = struct.Struct("!BBHI")  # version, type, length, xid
U16 = struct.Struct("!H")
U32 = struct.Struct("!I")
U64 = struct.Struct("!Q")
FEATURES = struct.Struct("!BBHIQIBB2xII")  # header, dpid, n_buffers, n_tables, aux, caps, rsvd
PORT = struct.Struct("!I4x6s2x16sIIIIIIII")  # ofp_port, 64 bytes
MULTIPART_REPLY = struct.Struct("!BBHIHH4x")
# Packet-out: header, buffer_id, in_port, actions_len, pad; then actions, then the frame.
PACKET_OUT_ACTIONS_LEN, PACKET_OUT_ACTIONS = 16, 24
FLOW_MOD = struct.Struct("!QQBBHHHIIIH2x")  # cookie, mask, table, command, idle, hard, ...
FLOW_MOD_COMMAND, FLOW_MOD_PRIORITY, FLOW_MOD_MATCH = 25, 30, 48
ANY = 0xFFFFFFFF  # OFPP_ANY, OFPG_ANY
FRAME_SRC_PORT = struct.Struct("!I4xH")  # IPv4 source (frame offset 26), skip dst, TCP sport
FRAME_SRC_OFFSET = 26

# The SYN: Ethernet, IPv4 (DF, TTL 64), TCP with the options Linux sends (MSS, SACK permitted,
# timestamps, window scale): 74 bytes, like a real one, so parsers do their usual work.
TCP_OPTIONS = bytes.fromhex("020405b40402080a0001e2400000000001030307")
FRAME_LEN = 14 + 20 + 20 + len(TCP_OPTIONS)
PIN_MATCH = struct.pack("!HHII4x", 1, 12, OXM_IN_PORT, UPLINK[0])  # OXM match, padded to 16
PIN_FIXED = struct.pack("!IHBBQ", OFP_NO_BUFFER, FRAME_LEN, OFPR_ACTION, 0, 0) + PIN_MATCH + b"\0\0"
PACKET_IN = struct.Struct(f"!BBHI{len(PIN_FIXED)}s34sHHIIBBHHH{len(TCP_OPTIONS)}s")
PACKET_IN_LEN = PACKET_IN.size
TCP_SEQ, TCP_WINDOW, TCP_DATA_OFFSET, TCP_SYN = 0x1000, 64240, 0xA0, 0x02


def _checksum_sum(data: bytes) -> int:
    """The ones'-complement sum of 16-bit words, not yet folded or inverted."""
    if len(data) % 2:
        data += b"\0"
    return sum(U16.unpack_from(data, i)[0] for i in range(0, len(data), 2))


def _fold(total: int) -> int:
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total


class SynFactory:
    """Packet-ins of TCP SYNs to the VIP; flow ``index`` <-> (client address, source port).

    Everything but the source port is cached per client address, checksums included: the TCP
    checksum is the cached partial sum plus the port (RFC 1624 style), so one packet-in costs
    one ``struct.pack``.
    """

    def __init__(self, vip: tuple[str, int] = VIP):
        self.vip_ip = socket.inet_aton(vip[0])
        self.vip_port = vip[1]
        self._client = -1
        self._l2l3 = b""
        self._tcp_sum = 0

    def _switch_client(self, client: int) -> None:
        src = U32.pack(client)
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, FRAME_LEN - 14, 0, 0x4000, 64, 6, 0, src, b"")
        ip = ip[:12] + src + self.vip_ip
        ip = ip[:10] + U16.pack(0xFFFF - _fold(_checksum_sum(ip))) + ip[12:]
        self._l2l3 = GATEWAY_MAC + ROUTER_MAC + b"\x08\x00" + ip
        tcp_len = FRAME_LEN - 34
        fixed = struct.pack(
            "!HIIBBHHH", self.vip_port, TCP_SEQ, 0, TCP_DATA_OFFSET, TCP_SYN, TCP_WINDOW, 0, 0
        )
        pseudo = src + self.vip_ip + struct.pack("!BBH", 0, 6, tcp_len)
        self._tcp_sum = _checksum_sum(pseudo + fixed + TCP_OPTIONS)
        self._client = client

    def packet_in(self, index: int) -> bytes:
        client, port = divmod(index, PORTS_PER_CLIENT)
        client += CLIENT_NET
        port += FIRST_PORT
        if client != self._client:
            self._switch_client(client)
        checksum = 0xFFFF - _fold(self._tcp_sum + port)
        return PACKET_IN.pack(
            OFP_VERSION, OFPT_PACKET_IN, PACKET_IN_LEN, index & 0xFFFFFFFF, PIN_FIXED,
            self._l2l3, port, self.vip_port, TCP_SEQ, 0, TCP_DATA_OFFSET, TCP_SYN, TCP_WINDOW,
            checksum, 0, TCP_OPTIONS,
        )  # fmt: skip


def flow_index(client: int, port: int) -> int:
    """The flow index a (client address as int, TCP source port) pair encodes; -1 if none."""
    if client < CLIENT_NET or port < FIRST_PORT:
        return -1
    return (client - CLIENT_NET) * PORTS_PER_CLIENT + port - FIRST_PORT


def packet_out_index(buf, offset: int, length: int) -> int:
    """The flow index of the frame a packet-out carries; -1 for any other packet-out."""
    frame = offset + PACKET_OUT_ACTIONS + U16.unpack_from(buf, offset + PACKET_OUT_ACTIONS_LEN)[0]
    if frame + FRAME_SRC_OFFSET + FRAME_SRC_PORT.size > offset + length:
        return -1
    return flow_index(*FRAME_SRC_PORT.unpack_from(buf, frame + FRAME_SRC_OFFSET))


def flow_mod_index(buf, offset: int, length: int) -> int:
    """The flow index of an ADD flow-mod whose match has ipv4_src and tcp_src; else -1."""
    if length < FLOW_MOD_MATCH + 4 or buf[offset + FLOW_MOD_COMMAND] != OFPFC_ADD:
        return -1
    position = offset + FLOW_MOD_MATCH + 4
    end = offset + FLOW_MOD_MATCH + U16.unpack_from(buf, offset + FLOW_MOD_MATCH + 2)[0]
    client = port = -1
    while position + 4 <= end:
        oxm = U32.unpack_from(buf, position)[0]
        if oxm == OXM_IPV4_SRC:
            client = U32.unpack_from(buf, position + 4)[0]
        elif oxm == OXM_TCP_SRC:
            port = U16.unpack_from(buf, position + 4)[0]
        position += 4 + (oxm & 0xFF)
    return flow_index(client, port) if client >= 0 and port >= 0 else -1


def hello() -> bytes:
    return HEADER.pack(OFP_VERSION, OFPT_HELLO, HEADER.size, 0)


def features_reply(xid: int, dpid: int) -> bytes:
    return FEATURES.pack(
        OFP_VERSION, OFPT_FEATURES_REPLY, FEATURES.size, xid, dpid, 0, 254, 0, 0x4F, 0
    )


def port_desc_reply(xid: int, ports: list[tuple[int, str]]) -> bytes:
    body = b"".join(
        PORT.pack(number, bytes([2, 0, 0, 0, 0xEE, number]), name.encode(), 0, 4, 0, 0, 0, 0, 0, 0)
        for number, name in ports
    )
    length = MULTIPART_REPLY.size + len(body)
    head = MULTIPART_REPLY.pack(OFP_VERSION, OFPT_MULTIPART_REPLY, length, xid, OFPMP_PORT_DESC, 0)
    return head + body


def reply(kind: int, xid: int, body: bytes = b"") -> bytes:
    return HEADER.pack(OFP_VERSION, kind, HEADER.size + len(body), xid) + body


def oxm(field_number: int, value: bytes) -> bytes:
    """One OXM TLV of class OPENFLOW_BASIC, no mask."""
    return U32.pack(0x80000000 | field_number << 9 | len(value)) + value


def match(oxms: bytes) -> bytes:
    length = 4 + len(oxms)
    return U16.pack(1) + U16.pack(length) + oxms + bytes(-length % 8)


def output(port: int) -> bytes:
    return struct.pack("!HHIH6x", 0, 16, port, 0xFFFF)  # OFPAT_OUTPUT, max_len NO_BUFFER


def flow_mod(xid: int, priority: int, match_bytes: bytes, actions: bytes, cookie: int = 0) -> bytes:
    """An ADD flow-mod with one apply-actions instruction."""
    instruction = struct.pack("!HH4x", 4, 8 + len(actions)) + actions  # OFPIT_APPLY_ACTIONS
    body = FLOW_MOD.pack(cookie, 0, 0, OFPFC_ADD, 0, 0, priority, OFP_NO_BUFFER, ANY, ANY, 0)
    body += match_bytes + instruction
    return HEADER.pack(OFP_VERSION, OFPT_FLOW_MOD, HEADER.size + len(body), xid) + body


# ---- the switch ---------------------------------------------------------------------------------

RING = 1 << 21  # per-flow slots, indexed by flow index modulo RING (10 s at 200k/s)
MAX_OUTSTANDING = 1 << 16  # open loop: beyond this backlog, stop offering (counted)
FLOW_MOD_SEEN, PACKET_OUT_SEEN, DONE = 1, 2, 3
STALL_SECONDS = 5.0
DRAIN_IDLE_SECONDS = 3.0  # after a phase: a flow not answered by then is lost
DRAIN_MAX_SECONDS = 60.0


class ControllerError(RuntimeError):
    """The controller closed the connection, stopped answering, or never got ready."""


@dataclass
class PhaseResult:
    flows_per_s: float
    offered_per_s: float  # open loop: the rate asked for; closed loop: 0
    latencies_ms: list[float]  # sorted; flows sent in the measured interval
    incomplete: int  # flows sent in the measured interval that never completed
    no_flow_mod: int  # ... of which the packet-out came but no flow-mod
    not_offered: int  # open loop: sends skipped because MAX_OUTSTANDING were outstanding
    switch_cpu: float  # cores busy in the measured interval: this process
    controller_cpu: float  # ... the controller
    other_cpu: float  # ... everything else on the machine (another load skews the figures)

    def percentile_ms(self, fraction: float) -> float | None:
        values = self.latencies_ms
        if not values:
            return None
        return values[max(0, math.ceil(fraction * len(values)) - 1)]  # nearest rank


@dataclass
class SwitchCounters:
    packet_outs: int = 0
    flow_mods: int = 0
    foreign_packet_outs: int = 0  # not for one of our flows (probes, ARP, ...)
    other_flow_mods: int = 0  # not per-flow: pipeline, deletes
    duplicates: int = 0  # a second flow-mod or packet-out for one flow
    flow_cookie_kinds: Counter = field(default_factory=Counter)  # cookie >> 40 of flow rules
    other_messages: Counter = field(default_factory=Counter)  # by OpenFlow type
    errors: list = field(default_factory=list)  # (type, code) of OFPT_ERROR from the controller


class FakeSwitch:
    """One OpenFlow 1.3 switch connection, driven from one thread with ``select``."""

    def __init__(self, sock: socket.socket, dpid: int = DPID, ports=(UPLINK, TUNNEL)):
        self.sock = sock
        self.dpid = dpid
        self.ports = list(ports)
        self.syns = SynFactory()
        self.counters = SwitchCounters()
        self.ready_priority: int | None = None
        self.ready = False
        self.next_index = 0  # flows sent so far; the next flow's index
        self.done = 0
        self.abandoned = 0  # incomplete flows of earlier phases
        self.sent_at = array("d", bytes(8 * RING))
        self.state = bytearray(RING)
        self.measure_first = self.measure_end = sys.maxsize
        self.latencies: list[float] = []
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
                self._seen(packet_out_index(buf, offset, length), PACKET_OUT_SEEN, now)
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
            self.counters.flow_cookie_kinds[U64.unpack_from(buf, offset + 8)[0] >> 40] += 1
            self._seen(index, FLOW_MOD_SEEN, now)
            return
        self.counters.other_flow_mods += 1
        if length >= FLOW_MOD_MATCH:
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
                self.latencies.append(now - self.sent_at[slot])

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

    def _stalled(self) -> ControllerError:
        return ControllerError(
            f"no flow completed for {STALL_SECONDS} s ({self.outstanding()} outstanding)"
        )

    def run(
        self,
        window: int = 0,
        rate: float = 0.0,
        warmup: float = 0.0,
        duration: float = 1.0,
        cpu_clocks=lambda: (0.0, 0.0),
    ) -> PhaseResult:
        """Closed loop (``window`` outstanding) or open loop (``rate`` per second).

        ``cpu_clocks()`` gives (controller, whole machine) busy CPU seconds so far."""
        if (window > 0) == (rate > 0):
            raise ValueError("give exactly one of window and rate")
        start = time.perf_counter()
        measure_from, measure_to = start + warmup, start + warmup + duration
        self.latencies = []
        self.measure_first = self.measure_end = sys.maxsize
        offered = not_offered = 0
        marks = None  # (time, done, switch, controller, machine CPU) when measuring starts
        last_done, last_progress = self.done, start
        while True:
            now = time.perf_counter()
            if marks is None and now >= measure_from:
                marks = (now, self.done, time.process_time(), *cpu_clocks())
                self.measure_first = self.next_index
            if now >= measure_to:
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
            elif outstanding and now - last_progress > STALL_SECONDS:
                raise self._stalled()
            wait = 0.05 if window else min(0.05, start + (offered + 1) / rate - now)
            self.pump(max(wait, 0.0))
        self.measure_end = self.next_index
        t0, done0, switch0, controller0, machine0 = marks
        elapsed = now - t0
        completed = self.done - done0
        switch = (time.process_time() - switch0) / elapsed
        controller, machine = cpu_clocks()
        controller = (controller - controller0) / elapsed
        other = max(0.0, (machine - machine0) / elapsed - controller - switch)
        self._drain()
        incomplete, no_flow_mod = self._incomplete(self.measure_first, self.measure_end)
        self.abandoned += self.outstanding()
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

    def _incomplete(self, first: int, end: int) -> tuple[int, int]:
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


# ---- the null controller ------------------------------------------------------------------------


def null_controller(server: socket.socket) -> None:
    """Accept one switch and answer each packet-in with a flow-mod and a packet-out, from canned
    bytes, until the switch goes.  Sends its own table miss (priority 0) as the ready signal."""
    connection, _ = server.accept()
    server.close()
    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    actions = output(TUNNEL[0])
    ready = flow_mod(2, 0, match(b""), output(0xFFFFFFFD))  # table miss -> OFPP_CONTROLLER
    connection.sendall(hello() + reply(OFPT_FEATURES_REQUEST, 1) + ready)
    # The per-flow rule: fixed fields first, then ipv4_src and tcp_src, the only ones that vary.
    fixed = (
        oxm(0, U32.pack(UPLINK[0])) + oxm(OXM_ETH_TYPE, b"\x08\x00") + oxm(OXM_IP_PROTO, b"\x06")
    )
    fixed += oxm(OXM_IPV4_DST, socket.inet_aton(VIP[0])) + oxm(OXM_TCP_DST, U16.pack(VIP[1]))
    template = flow_mod(0, 200, match(fixed + oxm(11, bytes(4)) + oxm(13, bytes(2))), actions)
    varying = struct.Struct("!IIIH")
    head = template[HEADER.size : HEADER.size + FLOW_MOD.size + 4 + len(fixed)]
    tail = template[len(head) + HEADER.size + varying.size :]
    packet_out = struct.Struct("!BBHIIIH6x")
    packet_out_fields = (OFP_NO_BUFFER, UPLINK[0], len(actions))  # buffer, in_port, actions_len
    pending = b""
    while True:
        chunk = connection.recv(1 << 20)
        if not chunk:
            return
        buf = pending + chunk if pending else chunk
        answers = []
        offset = 0
        while len(buf) - offset >= HEADER.size:
            _, kind, length, xid = HEADER.unpack_from(buf, offset)
            if len(buf) - offset < length:
                break
            if kind == OFPT_PACKET_IN:  # our own packet-ins: the frame is at a fixed place
                frame = buf[offset + PACKET_IN_LEN - FRAME_LEN : offset + length]
                client, port = FRAME_SRC_PORT.unpack_from(frame, FRAME_SRC_OFFSET)
                size = PACKET_OUT_ACTIONS + len(actions) + len(frame)
                answers += (
                    HEADER.pack(OFP_VERSION, OFPT_FLOW_MOD, len(template), xid),
                    head,
                    varying.pack(OXM_IPV4_SRC, client, OXM_TCP_SRC, port),
                    tail,
                    packet_out.pack(OFP_VERSION, OFPT_PACKET_OUT, size, xid, *packet_out_fields),
                    actions,
                    frame,
                )
            offset += length
        pending = buf[offset:]
        if answers:
            connection.sendall(b"".join(answers))


def main() -> int:
    parser = argparse.ArgumentParser(description="the new-flow benchmark's null controller")
    parser.add_argument("--null-controller", type=int, metavar="PORT", required=True)
    args = parser.parse_args()
    with contextlib.suppress(ConnectionError, KeyboardInterrupt):
        null_controller(socket.create_server(("127.0.0.1", args.null_controller)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
