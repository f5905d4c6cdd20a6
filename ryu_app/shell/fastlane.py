"""The fast lane: the messages a gateway gets once per flow go from the switch's socket
straight to a sink.

Every new flow costs a gateway one packet-in (and, when it ends, one flow-removed), so this
path is the load balancer's capacity.  Through the framework a message is read in two ``recv``
calls (header, then body), parsed into message and match objects, wrapped in an event, put on
the app's queue and picked up by another thread: measured here, that was most of the ~130 us a
new flow cost.

``FastLaneDatapath`` is the framework's ``Datapath`` with another receive loop: it reads
whatever the socket has (one ``recv`` for a burst of messages), splits it into OpenFlow
messages, and hands every PACKET_IN and FLOW_REMOVED (``FAST_TYPES``) of a switch in the main
phase, and every flow statistics reply part (``FAST_MULTIPART``: switch mode's pins, read back
in bulk), as raw bytes and a burst at a time, to ``sink(datapath, messages)`` on the receiving
thread.  Every other message takes the framework's path exactly as before (parser, event to
the apps, the handshake handlers), so hello, features, port descriptions, echo and errors stay
os-ken's business.  The order of messages is kept: a pending burst is handed over before any
other message is dispatched.

Writes are made by the thread that sends (``send``), under one lock per switch, instead of
being queued for the framework's sending thread: a hand-over between threads per burst cost
more than the burst's own work, and showed up as milliseconds in the latency tail.  A write
waits while the switch's receive buffer is full (at most the socket timeout; then the
connection is closed for writing, as the framework's send loop does on an error).

The sink runs on the datapath's receiving thread: it must not raise (an exception here would
end the connection) and must not block for long (it holds up this switch's input).
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import struct
import threading
from collections.abc import Callable

from ryu_app.core import pinread
from ryu_app.shell import compat

compat.load("base.app_manager")  # first: controller.controller cannot be imported before it
controller = compat.load("controller.controller")
handler = compat.load("controller.handler")
ofp_event = compat.load("controller.ofp_event")
ofproto_parser = compat.load("ofproto.ofproto_parser")
hub = compat.load("lib.hub")

LOG = logging.getLogger("lockstep.fastlane")
OFP_VERSION = compat.ofproto_v1_3.OFP_VERSION
# The messages a gateway gets once per flow: the new flow's packet-in, the flow-removed at its end.
FAST_TYPES = frozenset({compat.ofproto_v1_3.OFPT_PACKET_IN, compat.ofproto_v1_3.OFPT_FLOW_REMOVED})
# Flow statistics replies (switch mode's pins read back, ``core.pinread``): up to tens of
# megabytes a second, parsed lazily by the core; the framework's parser would build an object
# per rule.  Other multipart replies (port descriptions, meters) keep the framework's path.
MULTIPART_REPLY = compat.ofproto_v1_3.OFPT_MULTIPART_REPLY
FAST_MULTIPART = pinread.REPLY_KINDS
HEADER = struct.Struct("!BBHI")  # version, type, length, xid
RECV_SIZE = 256 * 1024  # one read takes what the switch has sent (up to this much)

Sink = Callable[["FastLaneDatapath", list], None]


class FastLaneDatapath(controller.Datapath):
    """A datapath whose ``FAST_TYPES`` messages (in the main phase) go to ``sink`` in bursts
    of raw bytes."""

    sink: Sink | None = None  # set by ``install``; None: every message takes the framework's path

    def __init__(self, sock, address):
        super().__init__(sock, address)
        self._write_lock = new_lock()

    def send(self, buf, close_socket=False) -> bool:
        """Write ``buf`` to the switch now, from the calling thread; False if the connection
        is closed for writing (the framework's ``send`` returns False then too)."""
        with self._write_lock:
            if self.send_q is None:
                return False
            try:
                self.socket.sendall(buf)
            except OSError as error:
                LOG.debug("write to switch at %s failed: %s", self.address, error)
                close_socket = True
            if close_socket:
                self._stop_writing()
                return False
        return True

    def _stop_writing(self) -> None:
        """What the framework's send loop does when it ends: no more writes (``send_q`` None
        also ends the echo loop, which then closes the datapath), shut down our direction."""
        self.send_q = None
        self._close_write()

    def _send_loop(self):
        """Nothing to do: ``send`` writes itself.  (``serve`` starts this thread and joins it.)"""

    def _recv_loop(self):
        buffer = bytearray()
        while self.state != handler.DEAD_DISPATCHER:
            try:
                data = self.socket.recv(RECV_SIZE)
            except (TimeoutError, ssl.SSLError):  # read timeouts: try again (as os-ken does)
                continue
            except (EOFError, OSError):  # the switch is gone
                break
            if not data:
                break
            buffer += data
            used = self._dispatch(buffer)
            if used:
                del buffer[:used]
            # A green socket with data waiting never yields: let the other green threads run.
            if compat.GREEN_HUB:
                hub.sleep(0)

    def _dispatch(self, buffer: bytearray) -> int:
        """Hand over every complete message in ``buffer``; returns how many bytes were used."""
        end, offset = len(buffer), 0
        fast: list[bytes] = []
        sink = self.sink
        while end - offset >= HEADER.size:
            version, msg_type, length, xid = HEADER.unpack_from(buffer, offset)
            length = max(length, HEADER.size)  # a nonsense length: skip the header (as os-ken)
            if end - offset < length:
                break
            message = bytes(buffer[offset : offset + length])
            offset += length
            if (
                (msg_type in FAST_TYPES or _fast_multipart(msg_type, message))
                and version == OFP_VERSION
                and sink is not None
                and self.state == handler.MAIN_DISPATCHER
            ):
                fast.append(message)
                continue
            if fast:
                sink(self, fast)
                fast = []
            self._to_framework(version, msg_type, length, xid, message)
        if fast:
            sink(self, fast)
        return offset

    def _to_framework(self, version, msg_type, length, xid, message) -> None:
        """What os-ken's own receive loop does with a message: parse it, send its event to the
        observing apps, and run the handlers the ``ofp_event`` brick has for it right here."""
        msg = ofproto_parser.msg(self, version, msg_type, length, xid, message)
        if not msg or self.ofp_brick is None:
            return
        event = ofp_event.ofp_msg_to_ev(msg)
        self.ofp_brick.send_event_to_observers(event, self.state)
        for brick_handler in self.ofp_brick.get_handlers(event):
            if self.state in brick_handler.callers[event.__class__].dispatchers:
                brick_handler(event)


def _fast_multipart(msg_type: int, message: bytes) -> bool:
    return msg_type == MULTIPART_REPLY and message[8:10] in _FAST_MULTIPART_KINDS


_FAST_MULTIPART_KINDS = frozenset(kind.to_bytes(2, "big") for kind in FAST_MULTIPART)


def new_lock():
    """A lock for this hub: a green one under eventlet (a thread lock held across a green
    switch would stop every green thread that then wants it), else a thread lock."""
    return hub.Semaphore(1) if compat.GREEN_HUB else threading.Lock()


def connection(sock, address) -> None:
    """Serve one switch connection with a ``FastLaneDatapath`` (os-ken's
    ``datapath_connection_factory``, whose ``Datapath`` it replaces)."""
    LOG.debug("switch connected from %s", address)
    with contextlib.closing(FastLaneDatapath(sock, address)) as datapath:
        try:
            datapath.serve()
        except Exception:
            LOG.exception("switch connection from %s ended by an error", address)
            raise


def install(sink: Sink) -> None:
    """Route the ``FAST_TYPES`` messages of every switch that connects from now on to ``sink`` (this
    process only: the framework's OpenFlow server looks its connection factory up when it
    starts listening, after the apps are instantiated)."""
    FastLaneDatapath.sink = staticmethod(sink)
    controller.datapath_connection_factory = connection
