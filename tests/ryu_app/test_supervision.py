"""Supervision in-process: the guarded OpenFlow listener (the framework's
StreamServer, patched through compat), the vital-thread watch, the descriptor limit.  The real
process under descriptor starvation and a dying thread:
tests/integration/test_process_supervision.py; the accept back-off itself: test_accept.py."""

from __future__ import annotations

import errno
import logging
import resource
import socket
import threading
import time
from types import SimpleNamespace

import pytest

from ryu_app.api.accept import AcceptBackoff
from ryu_app.shell import compat, launcher, supervision

LOG = logging.getLogger("test.supervision")


class FlakyListen:
    """Wraps a real listening socket: the first ``failures`` accept() calls raise EMFILE."""

    def __init__(self, sock, failures: int):
        self.sock, self.failures, self.attempts = sock, failures, 0

    def accept(self):
        self.attempts += 1
        if self.attempts <= self.failures:
            raise OSError(errno.EMFILE, "Too many open files")
        return self.sock.accept()

    def __getattr__(self, name):
        return getattr(self.sock, name)


def test_the_framework_listener_is_guarded_and_outlives_emfile():
    compat.guard_openflow_listener()
    controller = compat.load("controller.controller")
    assert controller.StreamServer.guarded
    compat.guard_openflow_listener()  # twice is once
    assert controller.StreamServer.__bases__ == (compat.load("lib.hub").StreamServer,)

    handled = threading.Event()

    def handle(sock, address):
        sock.close()
        handled.set()

    server = controller.StreamServer(("127.0.0.1", 0), handle)
    inner = server.server._sock
    flaky = FlakyListen(inner, failures=3)
    server.server._sock = flaky
    ended = []

    def serve():
        try:
            server.serve_forever()
        except OSError as error:  # the listening socket closed below: the test's end
            ended.append(error)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with socket.create_connection(inner.getsockname(), timeout=5):
            assert handled.wait(5)
        assert flaky.attempts >= 4 and thread.is_alive()  # the 5th may be waiting already
        assert server.server.backoff.failures == 3
    finally:
        inner.shutdown(socket.SHUT_RDWR)
        inner.close()
        thread.join(5)
    assert ended and not thread.is_alive()  # a closed socket is not waited out


def test_a_thread_that_cannot_start_is_a_shortage_too(monkeypatch):
    hub = compat.load("lib.hub")
    guarded = supervision.guarded_stream_server(hub)
    server = guarded.__new__(guarded)
    accepted = []

    class Once:
        backoff = AcceptBackoff("test", LOG)

        def accept(self):
            if accepted:
                raise OSError(errno.EBADF, "done")
            accepted.append(SimpleNamespace(close=lambda: accepted.append("closed")))
            return accepted[0], ("127.0.0.1", 1)

    server.server, server.handle = Once(), None
    sleeps = []
    monkeypatch.setattr(hub, "spawn", lambda *a: (_ for _ in ()).throw(RuntimeError("no thread")))
    monkeypatch.setattr(hub, "sleep", sleeps.append)
    with pytest.raises(OSError):
        server.serve_forever()
    assert accepted[1] == "closed" and sleeps == [0.01]


# ---- vital threads -------------------------------------------------------------------------


class FakeThread:
    def __init__(self, alive=True):
        self.running = alive

    def is_alive(self):
        return self.running


def test_first_to_end_names_the_thread_that_ended():
    ticker, rest = FakeThread(), FakeThread()
    polls = []

    def sleep(seconds):
        polls.append(seconds)
        if len(polls) == 3:
            rest.running = False

    assert supervision.first_to_end({"ticker": ticker, "REST": rest}, sleep) == "REST"
    assert polls == [supervision.WATCH_INTERVAL] * 3


def test_a_green_thread_is_alive_until_dead():
    assert supervision.alive(SimpleNamespace(dead=False))
    assert not supervision.alive(SimpleNamespace(dead=True))


def test_vital_threads_are_named_for_the_log():
    loop, ticker, rest, listener, ofp_loop = (FakeThread() for _ in range(5))
    applications = {
        "LockstepApp": SimpleNamespace(
            vital_threads={"event loop": loop, "health ticker": ticker, "REST server": rest}
        ),
        "ofp_event": SimpleNamespace(threads=[ofp_loop], main_thread=listener),
    }
    assert launcher.vital_threads(applications) == {
        "LockstepApp's event loop": loop,
        "LockstepApp's health ticker": ticker,
        "LockstepApp's REST server": rest,
        "ofp_event's event loop": ofp_loop,
        "ofp_event's OpenFlow listener": listener,
    }


# ---- the descriptor limit ------------------------------------------------------------------


def limits(soft, hard, fail=False):
    calls = []

    def setrlimit(kind, value):
        if fail:
            raise ValueError("not allowed")
        calls.append(value)

    return (lambda kind: (soft, hard)), setrlimit, calls


INF = resource.RLIM_INFINITY


@pytest.mark.parametrize(
    ("soft", "hard", "result", "set_to"),
    [
        (1024, 524288, (1024, 65536, 524288), [(65536, 524288)]),
        (1024, 4096, (1024, 4096, 4096), [(4096, 4096)]),
        (1024, INF, (1024, 65536, INF), [(65536, INF)]),
        (100000, 200000, (100000, 100000, 200000), []),  # never lowered
        (4096, 4096, (4096, 4096, 4096), []),
    ],
)
def test_the_soft_descriptor_limit_is_raised_towards_the_hard_one(soft, hard, result, set_to):
    getrlimit, setrlimit, calls = limits(soft, hard)
    assert supervision.raise_descriptor_limit(65536, getrlimit, setrlimit) == result
    assert calls == set_to


def test_a_limit_that_cannot_be_raised_is_left_with_a_warning(caplog):
    getrlimit, setrlimit, _ = limits(1024, 4096, fail=True)
    assert supervision.raise_descriptor_limit(65536, getrlimit, setrlimit) == (1024, 1024, 4096)
    assert "could not raise" in caplog.text


def test_polling_for_vital_threads_does_not_busy_wait():
    started = time.monotonic()
    thread = FakeThread()
    threading.Timer(0.3, lambda: setattr(thread, "running", False)).start()
    assert supervision.first_to_end({"t": thread}, interval=0.05) == "t"
    assert 0.25 < time.monotonic() - started < 2


def test_a_vital_threads_exception_is_logged_with_its_traceback_and_still_ends_it(caplog):
    def serve():
        raise RuntimeError("listener broke")

    with pytest.raises(RuntimeError):
        supervision.reported("the REST server", serve, logger=LOG)()
    (record,) = caplog.records
    assert record.levelname == "ERROR" and record.getMessage() == "the REST server failed"
    assert "listener broke" in caplog.text and record.exc_info is not None
    assert supervision.reported("x", lambda a, b=0: a + b)(1, b=2) == 3
