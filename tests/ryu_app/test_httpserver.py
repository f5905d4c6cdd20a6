"""The REST API's HTTP server (``ryu_app.api.httpserver``): waitress with a descriptor-derived
connection cap that closes the oldest idle connections to make room, request deadlines, an
accept loop that backs off, and waitress's logs and error answers in the API's shape.

The server runs in this process on an ephemeral loopback port, with small limits and short
timeouts, and is talked to through real sockets."""

from __future__ import annotations

import errno
import json
import logging
import socket
import threading
import time
import urllib.request
from types import SimpleNamespace

import pytest

from ryu_app.api import httpserver, pacing, rest
from ryu_app.api.httpserver import Limits, RestServer, connection_budget, overdue

OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "6")])
    return [b"hello\n"]


class Serving:
    """A RestServer on its own thread, shut down by ``close``."""

    def __init__(self, app=hello, **limits):
        self.server = RestServer(app, "127.0.0.1", 0, Limits(**limits))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.port = self.server.port
        self.sockets: list[socket.socket] = []

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        self.sockets.append(sock)
        return sock

    def get(self, path: str = "/", timeout: float = 5.0) -> tuple[int, bytes]:
        try:
            with OPENER.open(f"http://127.0.0.1:{self.port}{path}", timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.server.shutdown()
        self.thread.join(5)
        assert not self.thread.is_alive()


@pytest.fixture
def serve():
    started = []

    def start(app=hello, **limits) -> Serving:
        serving = Serving(app, **limits)
        started.append(serving)
        return serving

    yield start
    for serving in started:
        serving.close()


def closed_by_peer(sock: socket.socket, within: float) -> bool:
    """Whether the server closes ``sock`` within ``within`` seconds (EOF or reset)."""
    sock.settimeout(within)
    try:
        return sock.recv(1024) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def wait_until(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


# ---- the budget and the timeouts, as pure functions ----------------------------------------


def test_the_connection_budget_leaves_a_reserve_and_two_descriptors_per_connection():
    assert connection_budget(soft_limit=1024, open_now=40, reserve=64) == (1024 - 40 - 64) // 2
    assert connection_budget(soft_limit=8192, open_now=100, reserve=64) == 4014
    assert connection_budget(soft_limit=64, open_now=40) == httpserver.FEWEST_CONNECTIONS
    assert connection_budget(soft_limit=65536, open_now=100) == httpserver.MOST_CONNECTIONS


def channel(request=None, requests=(), last_activity=0.0, request_started=0.0, **flags):
    return SimpleNamespace(
        request=request,
        requests=list(requests),
        last_activity=last_activity,
        request_started=request_started,
        spoken=flags.get("spoken", True),
        total_outbufs_len=flags.get("outbufs", 0),
        will_close=flags.get("will_close", False),
        close_when_flushed=False,
    )


LIMITS = Limits(idle_timeout=30, header_timeout=10, request_timeout=60)
HEADERS_COMING = SimpleNamespace(headers_finished=False)
BODY_COMING = SimpleNamespace(headers_finished=True)


@pytest.mark.parametrize(
    ("conn", "now", "expected"),
    [
        (channel(last_activity=100), 129, None),
        (channel(last_activity=100), 131, "idle"),
        # Headers trickling in: recent activity does not help, the deadline runs from byte one.
        (channel(HEADERS_COMING, last_activity=130, request_started=100), 109, None),
        (channel(HEADERS_COMING, last_activity=130, request_started=100), 111, "slow"),
        (channel(BODY_COMING, last_activity=150, request_started=100), 159, None),
        (channel(BODY_COMING, last_activity=150, request_started=100), 161, "slow"),
        # Accepted, nothing sent: its first request's headers are due from the accept.
        (channel(spoken=False, last_activity=100, request_started=100), 109, None),
        (channel(spoken=False, last_activity=100, request_started=100), 111, "slow"),
        # A request being served, or an answer not sent yet, is never cut off.
        (channel(requests=[object()], last_activity=0), 1000, None),
        (channel(last_activity=0, outbufs=10), 1000, None),
        (channel(last_activity=0, will_close=True), 1000, None),
    ],
    ids=[
        "idle-young",
        "idle-old",
        "headers-in-time",
        "headers-late",
        "body-in-time",
        "body-late",
        "silent-in-time",
        "silent-late",
        "serving",
        "answering",
        "closing",
    ],
)
def test_which_timeout_a_connection_ran_out_of(conn, now, expected):
    assert overdue(conn, now, LIMITS) == expected


def test_eviction_takes_idle_keep_alive_connections_first_and_new_connections_last():
    idle_old, idle_new = channel(last_activity=10), channel(last_activity=20)
    half_sent = channel(HEADERS_COMING, last_activity=25, request_started=1)
    silent = channel(spoken=False, last_activity=5, request_started=5)
    just_accepted = channel(spoken=False, last_activity=30, request_started=30)
    order = sorted(
        [just_accepted, silent, half_sent, idle_new, idle_old], key=httpserver._eviction_order
    )
    assert order == [idle_old, idle_new, half_sent, silent, just_accepted]


# ---- the server ------------------------------------------------------------------------------


def test_it_serves_the_rest_api(serve, harness):
    server = rest.make("127.0.0.1", 0, harness.app)
    try:
        assert isinstance(server, RestServer)
        assert server.limits.max_body == rest.MAX_BODY
        assert server.adj.backlog == 1024 and server.adj.asyncore_use_poll
    finally:
        server.shutdown()
    serving = serve(harness.app)
    status, body = serving.get("/v1/status")
    assert status == 200 and json.loads(body)["gateway"] == "gw1"


def test_at_the_cap_the_oldest_idle_connection_makes_room_for_a_new_request(serve):
    serving = serve(max_connections=4)
    idle = []
    for _ in range(4):
        idle.append(serving.connect())
        assert wait_until(lambda: len(serving.server.active_channels) == len(idle))
        time.sleep(0.02)  # distinct last_activity
    started = time.monotonic()
    assert serving.get() == (200, b"hello\n")
    assert time.monotonic() - started < 1.0
    assert closed_by_peer(idle[0], within=2.0)  # the oldest went ...
    for sock in idle[1:]:
        assert not closed_by_peer(sock, within=0.05)  # ... the others stay
    assert serving.server.stats.evicted == 1 and serving.server.stats.refused == 0


def test_a_fresh_request_gets_in_past_a_crowd_of_connections_at_the_cap(serve):
    serving = serve(max_connections=8)
    crowd = [serving.connect() for _ in range(100)]  # in the backlog, ahead of the request
    started = time.monotonic()
    assert serving.get() == (200, b"hello\n")
    assert time.monotonic() - started < 1.0
    assert serving.server.stats.evicted >= len(crowd) - 8
    assert wait_until(lambda: len(serving.server.active_channels) <= 8)


def test_at_the_cap_with_every_connection_busy_a_new_one_is_refused_at_once(serve):
    release = threading.Event()

    def slow(environ, start_response):
        release.wait(10)
        return hello(environ, start_response)

    serving = serve(slow, max_connections=2, threads=2)
    busy = [serving.connect() for _ in range(2)]
    for sock in busy:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert wait_until(lambda: serving.server.task_dispatcher.active_count == 2)
    extra = serving.connect()
    try:
        assert closed_by_peer(extra, within=2.0)
        assert serving.server.stats.refused == 1 and serving.server.stats.evicted == 0
    finally:
        release.set()
    for sock in busy:
        assert sock.recv(1024).startswith(b"HTTP/1.1 200")


def test_headers_trickled_a_byte_at_a_time_are_cut_off_at_the_header_deadline(serve):
    serving = serve(header_timeout=0.5, idle_timeout=30, cleanup_interval=0.05)
    slowloris = serving.connect()
    slowloris.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
    started = time.monotonic()
    closed_at = None
    while time.monotonic() - started < 5:
        try:
            slowloris.sendall(b"X-Slow: y\r\n")  # active all along: never idle
        except OSError:
            closed_at = time.monotonic() - started
            break
        time.sleep(0.05)
    assert closed_at is not None and 0.4 < closed_at < 2.0, closed_at
    assert serving.server.stats.slow_requests == 1
    assert serving.get() == (200, b"hello\n")


def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout(serve):
    serving = serve(idle_timeout=0.4, cleanup_interval=0.05)
    sock = serving.connect()
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = b""
    while not answer.endswith(b"hello\n"):  # the headers and the body may come apart
        answer += sock.recv(1024)
    assert answer.startswith(b"HTTP/1.1 200")  # kept alive after the answer
    started = time.monotonic()
    assert closed_by_peer(sock, within=3.0)
    assert 0.3 < time.monotonic() - started < 2.0
    assert serving.server.stats.idle_timeouts == 1


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n", 413),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n", 400),
    ],
    ids=["body-over-the-cap", "headers-over-the-cap", "malformed"],
)
def test_the_servers_own_error_answers_are_json(serve, request_bytes, status):
    serving = serve(max_body=1000, max_header_bytes=4096)
    sock = serving.connect()
    sock.sendall(request_bytes)
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ", 2)[1] == str(status).encode(), head  # HTTP/1.0 if the head was bad
    assert b"Content-Type: application/json" in head
    assert set(json.loads(body)) == {"error"}


class FlakyAccept:
    """A listening socket whose accept() fails with ``error`` the first ``failures`` times."""

    def __init__(self, sock, failures: int, error: int = errno.EMFILE):
        self.sock, self.failures, self.error, self.attempts = sock, failures, error, 0

    def accept(self):
        self.attempts += 1
        if self.attempts <= self.failures:
            raise OSError(self.error, "Too many open files")
        return self.sock.accept()

    def __getattr__(self, name):
        return getattr(self.sock, name)


def test_accept_out_of_descriptors_backs_off_and_serves_again(serve, caplog):
    serving = serve()
    flaky = FlakyAccept(serving.server.socket, failures=6)
    serving.server.socket = flaky
    caplog.set_level(logging.INFO, logger="lockstep.rest")
    started = time.monotonic()
    assert serving.get(timeout=10) == (200, b"hello\n")
    took = time.monotonic() - started
    # 10 + 20 + 40 + 80 + 160 + 320 ms of pauses: no spinning, no giving up (the 8th attempt
    # finds the backlog empty).
    assert flaky.attempts == 8 and 0.6 < took < 3.0, (flaky.attempts, took)
    assert serving.server.stats.accept_failures == 6
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "Too many open files" in warnings[0].getMessage()
    assert any("accepting again after 6" in r.getMessage() for r in caplog.records)
    assert serving.server.backoff.delay == 0  # reset by the success


def test_out_of_descriptors_an_idle_connection_is_let_go(serve):
    serving = serve()
    idle = serving.connect()
    assert wait_until(lambda: len(serving.server.active_channels) == 1)
    serving.server.socket = FlakyAccept(serving.server.socket, failures=1)
    assert serving.get() == (200, b"hello\n")
    assert closed_by_peer(idle, within=2.0)


def test_waitress_logs_go_to_the_lockstep_rest_logger(serve, caplog):
    def short(environ, start_response):
        start_response("200 OK", [("Content-Length", "100")])
        return [b"only this"]

    serving = serve(short)
    caplog.set_level(logging.DEBUG)
    sock = serving.connect()
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    sock.recv(1024)
    assert wait_until(lambda: any("too few bytes" in r.getMessage() for r in caplog.records))
    names = {r.name for r in caplog.records}
    assert "lockstep.rest" in names and not any(n.startswith("waitress") for n in names)


def test_a_taken_port_fails_at_once_and_leaves_nothing_open(serve):
    serving = serve()
    before = httpserver.open_descriptors()
    threads = threading.active_count()
    with pytest.raises(OSError):
        RestServer(hello, "127.0.0.1", serving.port)
    assert httpserver.open_descriptors() == before
    assert wait_until(lambda: threading.active_count() == threads)


# ---- the REST plane's CPU budget (issue 11, finding 3) ---------------------------------------


def burn(seconds: float) -> None:
    """Compute for ``seconds`` of this thread's CPU, with a checkpoint every ~0.1 ms (as a
    render has every few rows)."""
    until = time.thread_time() + seconds
    while time.thread_time() < until:
        sum(range(500))
        pacing.checkpoint()


def test_a_client_looping_on_heavy_requests_gets_its_share_of_a_core(serve):
    """Through the real server: each request computes 20 ms; with a budget of a fifth of a
    core (burst 10 ms) five of them cannot take less than (100 - 10) / 0.2 = 450 ms."""

    def heavy(environ, start_response):
        burn(0.020)
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
        return [b"ok\n"]

    serving = serve(heavy, cpu_share=0.2, cpu_burst=0.010, cpu_slice=0.0005)
    started = time.monotonic()
    for _ in range(5):
        assert serving.get("/")[0] == 200
    took = time.monotonic() - started
    stats = serving.server.pacer.stats
    assert took >= 0.45
    assert stats.cpu_seconds >= 0.1
    assert stats.delays >= 1 and stats.delayed_seconds >= 0.3
    assert stats.handoffs >= 10  # within the burst, a sleep every half millisecond


def test_without_a_budget_nothing_is_paced(serve):
    serving = serve(cpu_share=None)
    assert serving.get("/")[0] == 200
    assert serving.server.pacer is None
