"""Keeping the controller process honest: alive as a whole, or dead with a reason.

A gateway's controller is several threads of control: the framework's OpenFlow listener, each
app's event loop, the health ticker, the REST server.  With os-ken 4.x's native hub an
exception that ends one of them is swallowed (``hub.TaskExit`` is ``Exception`` there), so the
process can stay up with half of itself gone: measured, a listener ended by ``EMFILE`` left a
controller that answered every REST call with 503 forever, and nothing above INFO in its log.
What this module gives the launcher instead:

- ``AcceptBackoff`` and ``BackoffListener``: ``accept()`` failing for want of resources
  (descriptors, buffers, memory) pauses the listener, 10 ms doubling to 1 s, and tries again,
  with a rate-limited WARNING; it never ends the listener and never spins;
- ``guarded_stream_server``: the framework's ``StreamServer`` (its OpenFlow listener) with that
  accept loop (``compat.guard_openflow_listener`` installs it);
- ``first_to_end``: watches the vital threads; the launcher exits non-zero with an ERROR line
  naming the one that ended, so that a supervisor (systemd ``Restart=always``) starts a whole
  controller again;
- ``raise_descriptor_limit``: the soft ``RLIMIT_NOFILE`` raised towards the hard one.
"""

from __future__ import annotations

import errno
import functools
import logging
import math
import resource
import time
from collections.abc import Callable, Mapping

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
DESCRIPTOR_LIMIT_WANTED = 65536  # soft RLIMIT_NOFILE the launcher asks for (if the hard allows)
WATCH_INTERVAL = 0.5

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


def guarded_stream_server(hub):
    """The framework's ``hub.StreamServer`` (the OpenFlow listener), whose accept loop backs
    off and retries (``BackoffListener``) instead of ending at the first ``EMFILE``.  ``hub``
    is ``os_ken.lib.hub`` or ``ryu.lib.hub``: both serve ``while True: accept(); spawn()``."""
    logger = logging.getLogger("lockstep.openflow")

    class GuardedStreamServer(hub.StreamServer):
        guarded = True

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            backoff = AcceptBackoff("OpenFlow listener", logger)
            self.server = BackoffListener(self.server, backoff, hub.sleep)

        @functools.partial(reported, "the OpenFlow listener", logger=logger)
        def serve_forever(self):
            while True:
                sock, address = self.server.accept()
                try:
                    hub.spawn(self.handle, sock, address)
                except RuntimeError as error:  # "can't start new thread": a shortage too
                    sock.close()
                    hub.sleep(self.server.backoff.failed(error))

    return GuardedStreamServer


def reported(what: str, function: Callable, logger: logging.Logger = LOG) -> Callable:
    """``function``, for a vital thread: an exception that ends it is logged with its
    traceback (os-ken's native hub swallows it) before it ends the thread."""

    @functools.wraps(function)
    def run(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except BaseException:
            logger.exception("%s failed", what)
            raise

    return run


def alive(thread) -> bool:
    """Whether a hub thread still runs: a native ``threading.Thread`` or an eventlet
    ``GreenThread`` (which has no ``is_alive``, but ``dead``)."""
    is_alive = getattr(thread, "is_alive", None)
    if is_alive is not None:
        return is_alive()
    return not thread.dead


def first_to_end(
    threads: Mapping[str, object],
    sleep: Callable[[float], None] = time.sleep,
    interval: float = WATCH_INTERVAL,
) -> str:
    """Wait until one of ``threads`` (name -> thread) has ended; return its name.  Polls: a
    native thread cannot be waited for together with others, and this runs on the main thread,
    which must stay free for signals (Ctrl-C)."""
    while True:
        for name, thread in threads.items():
            if not alive(thread):
                return name
        sleep(interval)


def raise_descriptor_limit(
    wanted: int = DESCRIPTOR_LIMIT_WANTED,
    getrlimit=resource.getrlimit,
    setrlimit=resource.setrlimit,
) -> tuple[int, int, int]:
    """Raise the soft ``RLIMIT_NOFILE`` to ``wanted``, or to the hard limit if that is lower
    (an unprivileged process may go up to the hard limit; Debian's default soft limit is 1024,
    which ~1,000 idle REST connections used to exhaust).  Never lowers it.  Returns (soft limit
    before, soft limit now, hard limit)."""
    soft, hard = getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and target > soft:
        try:
            setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as error:
            LOG.warning(
                "could not raise the descriptor limit from %d to %d: %s", soft, target, error
            )
            return soft, soft, hard
        return soft, target, hard
    return soft, soft, hard
