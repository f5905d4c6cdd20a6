"""The accept back-off (``ryu_app.api.accept``): a listener that waits out a shortage of
descriptors, buffers or memory, and warns at a bounded rate.  Where it is used:
tests/ryu_app/test_supervision.py (the OpenFlow listener) and test_httpserver.py (REST)."""

from __future__ import annotations

import errno
import logging

import pytest

from ryu_app.api.accept import AcceptBackoff, BackoffListener, Throttled

LOG = logging.getLogger("test")


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class ScriptedSocket:
    """accept() raises the errors of ``script`` in turn (an int is an errno), then accepts."""

    def __init__(self, *script):
        self.script = list(script)
        self.attempts = 0
        self.closed = False

    def accept(self):
        self.attempts += 1
        if self.script:
            raise OSError(self.script.pop(0), "scripted")
        return ("sock", ("127.0.0.1", 1))

    def close(self):
        self.closed = True


def test_the_backoff_doubles_from_10_ms_to_1_s_and_resets_on_success():
    backoff = AcceptBackoff("test", LOG, clock=Clock())
    delays = [backoff.failed(OSError(errno.EMFILE, "x")) for _ in range(9)]
    assert delays == [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.0, 1.0]
    backoff.succeeded()
    assert backoff.failed(OSError(errno.EMFILE, "x")) == 0.01
    assert backoff.failures == 10


def test_warnings_are_rate_limited_and_count_what_they_left_out(caplog):
    clock = Clock()
    throttled = Throttled(LOG, every=10, clock=clock)
    caplog.set_level(logging.WARNING, logger=LOG.name)
    assert throttled.warning("out of %s", "descriptors")
    for _ in range(5):
        clock.now += 1
        assert not throttled.warning("out of %s", "descriptors")
    clock.now += 10
    assert throttled.warning("out of %s", "descriptors")
    assert [r.getMessage() for r in caplog.records] == [
        "out of descriptors",
        "out of descriptors (5 more like it since the last such line)",
    ]


def test_the_listener_waits_out_a_shortage_and_skips_one_connections_errors(caplog):
    sleeps = []
    sock = ScriptedSocket(errno.EMFILE, errno.ECONNABORTED, errno.ENFILE, errno.ENOBUFS)
    listener = BackoffListener(sock, AcceptBackoff("test", LOG), sleep=sleeps.append)
    caplog.set_level(logging.INFO, logger=LOG.name)
    assert listener.accept() == ("sock", ("127.0.0.1", 1))
    assert sleeps == [0.01, 0.02, 0.04] and sock.attempts == 5
    assert [r.levelname for r in caplog.records] == ["WARNING", "INFO"]  # one warning, then
    assert "accepting again after 3" in caplog.records[-1].getMessage()
    listener.close()  # the socket's own attributes
    assert sock.closed


def test_the_listener_raises_what_is_not_a_shortage():
    listener = BackoffListener(ScriptedSocket(errno.EBADF), AcceptBackoff("test", LOG))
    with pytest.raises(OSError) as caught:
        listener.accept()
    assert caught.value.errno == errno.EBADF
