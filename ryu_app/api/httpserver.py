"""The REST API's HTTP server: waitress, with the limits a controller's API needs.

The API used to be served by wsgiref's ``simple_server`` with a thread per connection, a listen
backlog of 5 and no timeouts: 2,000 idle connections were 2,000 threads, held forever, and
(with ``nofile`` 1024) they took the descriptors the OpenFlow listener needed.  waitress reads
requests in one ``poll()`` loop and hands only complete requests to a small pool of threads, so
an idle or half-sent request costs a socket and no thread.  On top of it (``RestServer``):

- a cap on open connections derived from the process's descriptor budget
  (``connection_budget``: the soft ``RLIMIT_NOFILE`` less what is open and a reserve for the
  OpenFlow side, the state file, the table builder's pipe and logs; at most 4096);
- at the cap, the oldest *idle* keep-alive connections are closed to make room (nginx reuses
  idle keep-alive connections the same way), then those whose request has not come in full,
  oldest first; never one with a request being served.  If none can go, the new connection is
  closed at once.  waitress's own answer at its limit is to stop accepting, which leaves a
  fresh request in the backlog behind the connections that fill the server;
- up to 64 connections accepted per ``poll()`` pass (waitress takes one per pass, and a pass
  visits every connection);
- a deadline for a request's headers (and one for the whole request), counted from its first
  byte, or from the accept for a connection's first request: waitress's ``channel_timeout``
  measures inactivity only, so a client sending a byte every few seconds (slowloris) would
  hold its connection for as long as it kept that up;
- ``accept()`` errors (``EMFILE``...) pause accepting, 10 ms doubling to 1 s, and close one
  idle connection to free a descriptor; the listener never ends and never spins;
- waitress's own log lines go to the ``lockstep.rest`` logger; its own error answers (413, 431,
  400) are JSON like the API's;
- a CPU budget for the worker threads (``pacing``): a tenth of a core once a 10 ms burst is
  spent, and a pause every quarter millisecond of computing, so that a client asking in a loop
  cannot take the packet path's interpreter.  bench_newflow's REST load (1M flows, 20k new
  flows/s): packet-in p50 / p99 0.8 / 4.9 ms -> 0.13 / 1.3-1.6 ms (0.14 / 0.3-0.5 ms without
  REST calls); the looping client gets ~30 requests/s instead of ~180, a deep flow page in
  ~100 ms instead of ~12 ms.

Everything runs on the thread that calls ``serve_forever``; ``shutdown`` may be called from
another.
"""

from __future__ import annotations

import heapq
import json
import logging
import os
import resource
import threading
import time
from dataclasses import dataclass

from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask, ThreadedTaskDispatcher, WSGITask

from ryu_app.api import pacing
from ryu_app.api.accept import CONNECTION_ERRORS, AcceptBackoff, Throttled

LOG = logging.getLogger("lockstep.rest")

# Descriptors left to everything but REST connections: OpenFlow connections (one switch, a few
# reconnects), the state file and its temporary copy, the table builder's pipe, logs, the
# interpreter's own.  Counted on top of what is open when the server starts.
DESCRIPTOR_RESERVE = 64
# A connection may hold a second descriptor: waitress spools a request body over its
# ``inbuf_overflow`` (512 KiB), or a response over ``outbuf_overflow`` (1 MiB), to a temporary file.
DESCRIPTORS_PER_CONNECTION = 2
FEWEST_CONNECTIONS = 8  # even on a starved budget, the API stays reachable
# Each poll() pass visits every connection (~0.35 us each here) holding the interpreter lock,
# which the packet path needs too: 4096 keeps a pass near 1.5 ms.  A controller's API has a
# handful of clients; beyond this, idle connections make room for new ones.
MOST_CONNECTIONS = 4096
EVICTION_BATCH = 32  # at the cap, close up to this many idle connections at once (nginx: 32)
ACCEPTS_PER_PASS = 64  # connections taken off the backlog per poll() pass
LOOP_TIMEOUT = 1.0  # poll() timeout: how often timeouts are looked at when nothing happens


@dataclass(frozen=True)
class Limits:
    threads: int = 4  # requests served at once (each waits for the controller's loop)
    backlog: int = 1024  # the kernel caps it at net.core.somaxconn (4096 here)
    max_body: int = 1 << 20  # the API's own cap (rest.MAX_BODY) is passed in
    max_header_bytes: int = 16 * 1024
    idle_timeout: float = 30.0  # a keep-alive connection with no request in progress
    header_timeout: float = 10.0  # from a request's first byte to the end of its headers
    request_timeout: float = 30.0  # ... to the end of its body
    max_connections: int | None = None  # None: from the descriptor budget
    cleanup_interval: float = 1.0  # how often connections are checked against the timeouts
    # The REST plane's CPU budget (``pacing``): a share of one core (None: no budget), what it
    # may use at once before being held to that share, and a thread's longest run between two
    # sleeps (of ``cpu_handoff``), so that a packet-in never waits long for the interpreter.
    cpu_share: float | None = 0.1
    cpu_burst: float = 0.010
    cpu_slice: float = 0.00025
    cpu_handoff: float = 0.0002


@dataclass
class Stats:
    """What the server did to connections (all counted on its loop's thread)."""

    accepted: int = 0
    evicted: int = 0  # closed at the cap to make room for a new connection
    refused: int = 0  # closed at once: at the cap, with nothing that could be closed instead
    idle_timeouts: int = 0
    slow_requests: int = 0  # headers or body not in within their deadline
    accept_failures: int = 0


def open_descriptors() -> int:
    """How many descriptors this process has open now (Linux: /proc/self/fd)."""
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # less the one listdir itself opened
    except OSError:
        return 32


def connection_budget(
    soft_limit: int,
    open_now: int,
    reserve: int = DESCRIPTOR_RESERVE,
    per_connection: int = DESCRIPTORS_PER_CONNECTION,
) -> int:
    """The most REST connections the process can hold without taking the descriptors the
    rest of the controller needs (never below ``FEWEST_CONNECTIONS``, never above
    ``MOST_CONNECTIONS``)."""
    if soft_limit == resource.RLIM_INFINITY:
        soft_limit = 1 << 20
    spare = soft_limit - open_now - reserve
    return max(FEWEST_CONNECTIONS, min(MOST_CONNECTIONS, spare // per_connection))


class _Demoted(logging.LoggerAdapter):
    """A logger whose warnings are debug lines: waitress warns "Task queue depth is N" for
    every request that waits for a thread, which under load is a line per request."""

    def warning(self, message, *args, **kwargs):
        self.debug(message, *args, **kwargs)


class _Dispatcher(ThreadedTaskDispatcher):
    logger = LOG
    queue_logger = _Demoted(LOG, {})


class _Task(WSGITask):
    logger = LOG

    def service(self):
        """Serve a request on a worker thread, within the server's CPU budget: the thread
        pays for its last request (and what waitress did meanwhile) before it starts."""
        pacing.attach(self.channel.server.pacer)
        pacing.checkpoint()
        super().service()


class _JsonErrorTask(ErrorTask):
    """waitress's own error answers (a body over the cap, headers too large, a malformed
    request) as JSON, the API's error format, instead of text/plain."""

    logger = LOG

    def execute(self):
        error = self.request.error
        body = json.dumps({"error": f"{error.reason}: {error.body}"}).encode() + b"\n"
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class _Channel(HTTPChannel):
    """waitress's connection, noting when the request it waits for began."""

    logger = LOG
    task_class = _Task
    error_task_class = _JsonErrorTask
    spoken = False  # whether the client has sent anything yet

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # A connection's first request is due from the moment it is accepted (as nginx's
        # client_header_timeout); a later one from its first byte.
        self.request_started = self.creation_time

    def received(self, data):
        if data and self.request is None and self.spoken:
            self.request_started = time.time()
        self.spoken = self.spoken or bool(data)
        return super().received(data)

    def del_channel(self, map=None):  # noqa: A002 - waitress's signature
        super().del_channel(map)
        self.server.closing.discard(self)


def _may_close(channel: _Channel) -> bool:
    """Whether closing ``channel`` loses nothing it was asked: no request being served or
    queued, no answer waiting to be sent, not closing already."""
    return not (
        channel.requests
        or channel.total_outbufs_len
        or channel.will_close
        or channel.close_when_flushed
    )


def _between_requests(channel: _Channel) -> bool:
    """A keep-alive connection that was served and has not begun its next request."""
    return channel.spoken and channel.request is None


def _eviction_order(channel: _Channel) -> tuple[int, float]:
    """Keep-alive connections between requests first, the longest idle first; then those
    whose request is still to come in full (half-sent, or nothing sent yet), the oldest
    first, so that a connection just accepted is the last to go."""
    if _between_requests(channel):
        return 0, channel.last_activity
    return 1, channel.request_started


def overdue(channel: _Channel, now: float, limits: Limits) -> str | None:
    """Which timeout ``channel`` has run out of at ``now``, if any: ``idle`` (between requests
    for ``idle_timeout``) or ``slow`` (a request's headers, or the whole request, not in
    within its deadline).  A connection with a request being served is never overdue."""
    if not _may_close(channel):
        return None
    if _between_requests(channel):
        return "idle" if now - channel.last_activity > limits.idle_timeout else None
    request = channel.request
    if request is not None and request.headers_finished:
        deadline = limits.request_timeout
    else:
        deadline = limits.header_timeout
    return "slow" if now - channel.request_started > deadline else None


class RestServer(TcpWSGIServer):
    """waitress's TCP server with a descriptor-derived connection cap that closes idle
    connections to make room, request deadlines and an accept loop that backs off."""

    channel_class = _Channel
    logger = LOG

    def __init__(self, app, host: str, port: int, limits: Limits | None = None):
        limits = limits or Limits()
        listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        soft_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        budget = connection_budget(soft_limit, open_descriptors())
        self.limits = limits
        self.max_connections = limits.max_connections or budget
        adjustments = Adjustments(
            listen=listen,
            threads=limits.threads,
            backlog=limits.backlog,
            max_request_body_size=limits.max_body,
            max_request_header_size=limits.max_header_bytes,
            channel_timeout=limits.idle_timeout,
            cleanup_interval=limits.cleanup_interval,
            connection_limit=1 << 30,  # ours is max_connections, with eviction (_accept_one)
            asyncore_use_poll=True,  # select() cannot watch a descriptor above 1023
            asyncore_loop_timeout=LOOP_TIMEOUT,
            log_socket_errors=False,  # a client's reset is not news
            ident="lockstep",
        )
        dispatcher = _Dispatcher()
        dispatcher.set_thread_count(limits.threads)
        self.stats = Stats()
        self.pacer = None
        if limits.cpu_share is not None:
            self.pacer = pacing.Pacer(
                limits.cpu_share, limits.cpu_burst, limits.cpu_slice, limits.cpu_handoff
            )
        self.backoff = AcceptBackoff("REST listener", LOG)
        self.cap_warnings = Throttled(LOG)
        self._accept_again_at = 0.0
        self.closing: set[_Channel] = set()  # marked to be closed on the loop's next pass
        self._loop_ended = threading.Event()
        self._serving = False
        sockets = {}
        try:
            super().__init__(
                app, sockets, dispatcher=dispatcher, adj=adjustments, sockinfo=adjustments.listen[0]
            )
        except BaseException:  # the port is taken, say: leave nothing open behind
            wasyncore.close_all(sockets)
            dispatcher.shutdown(timeout=1)
            raise
        self.trigger.logger = LOG
        LOG.info(
            "REST server: waitress, %d threads, at most %d connections (descriptor limit %d), "
            "idle timeout %g s, headers within %g s, bodies up to %d bytes",
            limits.threads,
            self.max_connections,
            soft_limit,
            limits.idle_timeout,
            limits.header_timeout,
            limits.max_body,
        )

    @property
    def port(self) -> int:
        return int(self.effective_port)

    # ---- the loop ---------------------------------------------------------------------------

    def serve_forever(self) -> None:
        """Serve until ``shutdown``: waitress's loop with a poll timeout that also wakes it when
        a paused listener may accept again."""
        self._serving = True
        try:
            while self._map:
                wasyncore.poll2(self._poll_timeout(time.time()), self._map)
        finally:
            self._loop_ended.set()

    def shutdown(self, timeout: float = 5.0) -> None:
        """Close every connection and the listener, stop the threads (from any thread)."""
        if self._serving:
            self.trigger.pull_trigger(lambda: wasyncore.close_all(self._map))
            self._loop_ended.wait(timeout)
        else:
            wasyncore.close_all(self._map)
        self.task_dispatcher.shutdown(timeout=timeout)

    def _poll_timeout(self, now: float) -> float:
        if now < self._accept_again_at:
            return min(LOOP_TIMEOUT, self._accept_again_at - now)
        return LOOP_TIMEOUT

    def readable(self) -> bool:
        """Called before every poll: check the timeouts now and then; listen unless paused."""
        now = time.time()
        if now >= self.next_channel_cleanup:
            self.next_channel_cleanup = now + self.adj.cleanup_interval
            self.maintenance(now)
        return self.accepting and now >= self._accept_again_at

    def maintenance(self, now: float) -> None:
        """Close the connections that ran out of a timeout (``overdue``)."""
        for channel in list(self.active_channels.values()):
            reason = overdue(channel, now, self.limits)
            if reason == "idle":
                self.stats.idle_timeouts += 1
            elif reason == "slow":
                self.stats.slow_requests += 1
            else:
                continue
            self.close_soon(channel)

    # ---- accepting --------------------------------------------------------------------------

    def handle_accept(self) -> None:
        """Take up to ``ACCEPTS_PER_PASS`` connections off the backlog.  waitress takes one per
        ``poll()`` pass, and a pass visits every connection: under a flood of reconnecting
        clients a fresh request then waits in the backlog behind them for long."""
        for _ in range(ACCEPTS_PER_PASS):
            if not self._accept_one():
                return

    def _accept_one(self) -> bool:
        """Accept one connection; False if there was none (or accepting must pause)."""
        try:
            pair = self.accept()  # None: nothing there (EAGAIN, ECONNABORTED)
        except OSError as error:
            self._accept_failed(error)
            return False
        if pair is None:
            return False
        self.backoff.succeeded()
        sock, address = pair
        full = len(self.active_channels) - len(self.closing) >= self.max_connections
        if full and not self._make_room():
            self.stats.refused += 1
            sock.close()
            self.cap_warnings.warning(
                "REST: %d connections open, all of them busy: refused a new one (%d so far)",
                len(self.active_channels),
                self.stats.refused,
            )
            return True
        try:
            self.set_socket_options(sock)
            self.channel_class(self, sock, address, self.adj, map=self._map)
        except OSError:
            sock.close()
            return True
        self.stats.accepted += 1
        return True

    def close_soon(self, channel: _Channel) -> None:
        """Have waitress close ``channel`` on the loop's next pass (it is counted as closing
        until then)."""
        channel.will_close = True
        self.closing.add(channel)

    def _make_room(self) -> bool:
        """At the cap: mark the oldest idle connections (``_eviction_order``) to be closed on
        the loop's next pass, a batch at a time.  False if none may be closed."""
        candidates = [c for c in self.active_channels.values() if _may_close(c)]
        batch = min(EVICTION_BATCH, max(1, self.max_connections // 8))
        victims = heapq.nsmallest(batch, candidates, key=_eviction_order)
        for channel in victims:
            self.close_soon(channel)
        self.stats.evicted += len(victims)
        if victims:
            self.cap_warnings.warning(
                "REST: at the cap of %d connections: closing the %d oldest idle one(s) to make "
                "room (%d so far)",
                self.max_connections,
                len(victims),
                self.stats.evicted,
            )
        return bool(victims)

    def _accept_failed(self, error: OSError) -> None:
        if error.errno in CONNECTION_ERRORS:
            return  # that one connection's problem: the next accept() is fine
        self.stats.accept_failures += 1
        # Out of descriptors (or anything else): let one idle connection go, so the next try
        # can succeed, and pause before it.  Never end the listener.
        candidates = [c for c in self.active_channels.values() if _may_close(c)]
        if candidates:
            self.close_soon(min(candidates, key=_eviction_order))
            self.stats.evicted += 1
        self._accept_again_at = time.time() + self.backoff.failed(error)

    def handle_error(self) -> None:
        """An unexpected exception in the listener's handler: waitress's default closes the
        listening socket, which would leave the API silently gone.  Log it and go on."""
        LOG.exception("REST listener: unexpected error (it goes on listening)")
        self._accept_again_at = time.time() + self.backoff.failed(RuntimeError("see above"))
