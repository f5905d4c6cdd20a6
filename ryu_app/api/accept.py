"""Accept loops that survive a shortage of descriptors, buffers or memory.

``accept()`` failing for want of a resource that frees itself as connections close (EMFILE,
ENFILE, ENOBUFS, ENOMEM) pauses the listener, 10 ms doubling to 1 s, and tries again, with a
rate-limited WARNING; it never ends the listener and never spins.  Measured before this
existed: a listener ended by ``EMFILE`` left a controller that answered every REST call with
503 forever.  The REST server (``httpserver``) accepts through it, and the shell patches the
framework's OpenFlow listener to do the same (``shell.supervision.guarded_stream_server``).
"""

from __future__ import annotations

import errno
import logging
import math
import time
from collections.abc import Callable

# accept() failed for want of a resource that frees itself as connections close: wait, retry.
SHORTAGE = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# accept() reported an error of one pending connection (Linux passes network errors on the new
# socket through accept(): its man page says to retry as for EAGAIN): retry at once.
CONNECTION_ERRORS = frozenset(
    {
        errno.ECONNABORTED,
        errno.EPROTO,
        errno.EPERM,
        errno.ENETDOWN,
        errno.ENOPROTOOPT,
        errno.EHOSTDOWN,
        errno.ENONET,
        errno.EHOSTUNREACH,
        errno.EOPNOTSUPP,
        errno.ENETUNREACH,
    }
)
FIRST_DELAY = 0.01
LONGEST_DELAY = 1.0
WARN_EVERY = 10.0  # seconds between two warnings of one kind (the rest are counted)

LOG = logging.getLogger("lockstep.supervision")


class Throttled:
    """A warning that is logged at most once per ``every`` seconds; the ones in between are
    counted and the count goes with the next line (a listener out of descriptors would
    otherwise write a line per attempt)."""

    def __init__(self, logger: logging.Logger, every: float = WARN_EVERY, clock=time.monotonic):
        self.logger = logger
        self.every = every
        self.clock = clock
        self.last = -math.inf
        self.suppressed = 0

    def warning(self, message: str, *args) -> bool:
        now = self.clock()
        if now - self.last < self.every:
            self.suppressed += 1
            return False
        if self.suppressed:
            message += f" ({self.suppressed} more like it since the last such line)"
        self.logger.warning(message, *args)
        self.last, self.suppressed = now, 0
        return True


class AcceptBackoff:
    """How long a listener waits after ``accept()`` failed for want of resources: 10 ms,
    doubling to 1 s while it keeps failing, back to nothing after one success."""

    def __init__(
        self,
        what: str,
        logger: logging.Logger,
        first: float = FIRST_DELAY,
        longest: float = LONGEST_DELAY,
        clock=time.monotonic,
    ):
        self.what = what
        self.logger = logger
        self.first = first
        self.longest = longest
        self.delay = 0.0
        self.failures = 0  # in all
        self.failing = 0  # since the last success
        self.warnings = Throttled(logger, clock=clock)

    def failed(self, error: BaseException) -> float:
        """Count a failure, warn (rate-limited) and return how long to wait before the next
        attempt."""
        self.delay = min(self.delay * 2, self.longest) if self.delay else self.first
        self.failures += 1
        self.failing += 1
        self.warnings.warning(
            "%s: accept() failed (%s); retrying in %.0f ms, not accepting until then",
            self.what,
            error,
            self.delay * 1000,
        )
        return self.delay

    def succeeded(self) -> None:
        if self.failing:
            self.logger.info(
                "%s: accepting again after %d failed attempt(s)", self.what, self.failing
            )
        self.delay = 0.0
        self.failing = 0


class BackoffListener:
    """A listening socket whose ``accept()`` waits out a shortage (``SHORTAGE``) instead of
    raising it, and skips errors of single pending connections.  Anything else (the socket was
    closed, say) is raised: that listener is over, and its thread's end is the supervisor's
    business.  Every other attribute is the socket's."""

    def __init__(self, sock, backoff: AcceptBackoff, sleep: Callable[[float], None] = time.sleep):
        self._sock = sock
        self.backoff = backoff
        self._sleep = sleep

    def accept(self):
        while True:
            try:
                pair = self._sock.accept()
            except OSError as error:
                if error.errno in CONNECTION_ERRORS:
                    continue
                if error.errno not in SHORTAGE:
                    raise
                self._sleep(self.backoff.failed(error))
                continue
            self.backoff.succeeded()
            return pair

    def __getattr__(self, name: str):
        return getattr(self._sock, name)
