"""Keeping the controller process honest: alive as a whole, or dead with a reason.

A gateway's controller is several threads of control: the framework's OpenFlow listener, each
app's event loop, the health ticker, the REST server.  With os-ken 4.x's native hub an
exception that ends one of them is swallowed (``hub.TaskExit`` is ``Exception`` there), so the
process can stay up with half of itself gone: measured, a listener ended by ``EMFILE`` left a
controller that answered every REST call with 503 forever, and nothing above INFO in its log.
What this module gives the launcher instead:

- ``guarded_stream_server``: the framework's ``StreamServer`` (its OpenFlow listener) with that
  accept loop (``api.accept``; ``compat.guard_openflow_listener`` installs it);
- ``first_to_end``: watches the vital threads; the launcher exits non-zero with an ERROR line
  naming the one that ended, so that a supervisor (systemd ``Restart=always``) starts a whole
  controller again;
- ``raise_descriptor_limit``: the soft ``RLIMIT_NOFILE`` raised towards the hard one.
"""

from __future__ import annotations

import functools
import logging
import resource
import time
from collections.abc import Callable, Mapping

from ryu_app.api.accept import AcceptBackoff, BackoffListener

DESCRIPTOR_LIMIT_WANTED = 65536  # soft RLIMIT_NOFILE the launcher asks for (if the hard allows)
WATCH_INTERVAL = 0.5

LOG = logging.getLogger("lockstep.supervision")


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
