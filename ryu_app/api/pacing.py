"""A CPU budget for the REST plane: the management plane must never take the data plane's
latency.

The REST server's threads share the interpreter, and its lock, with the switch's receiving
thread.  A thread that computes keeps the interpreter until it is made to let go (after the
switch interval) or lets go itself, and a client asking in a loop keeps a REST thread
computing all the time: every packet-in then waits for it (issue 11: packet-in p99 0.5 ms
without REST calls, 5-7 ms with a client looping on deep flow pages, writes, status and
metrics).  So REST threads pace themselves:

- a token bucket of CPU seconds fills at ``share`` seconds per second (a fraction of one core)
  up to ``burst``; the CPU a thread used since its last checkpoint (``time.thread_time``) is
  taken from it, and so is the CPU the event loop spent on the thread's behalf (``charge``:
  snapshots and changes run there).  A thread that finds the bucket in debt sleeps until the
  debt is paid: a client asking now and then is never slowed, one asking in a loop gets
  ``share`` of a core;
- ``slice``: a thread that ran this long since it last slept sleeps ``handoff`` however full
  the bucket is, so that a packet-in gets the interpreter within a slice.

Checkpoints are where a REST thread may sleep: before each request (``httpserver``), every few
rows of a long answer (``views``, and ``PacedRows``, which the JSON encoder iterates).
``checkpoint()`` and ``charge()`` do nothing on a thread that has no pacer (the event loop,
tests, an eventlet hub's green threads).  What was delayed is counted (``PacingStats``) and
exported in ``/metrics``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

ROWS_PER_CHECKPOINT = 50  # a long answer may be paced every this many rows


@dataclass
class PacingStats:
    cpu_seconds: float = 0.0  # CPU the REST plane used (its threads, and the loop for them)
    delays: int = 0  # checkpoints that slept because the budget was spent (a request may have many)
    delayed_seconds: float = 0.0  # ... how long they slept in all
    handoffs: int = 0  # checkpoints that slept ``handoff`` at the end of a slice


class Pacer:
    """A CPU budget shared by the threads that ``attach`` it."""

    def __init__(
        self,
        share: float,
        burst: float,
        slice_seconds: float,
        handoff: float,
        cpu: Callable[[], float] = time.thread_time,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if not 0 < share <= 1:
            raise ValueError(f"share must be in (0, 1], got {share!r}")
        self.share = share
        self.burst = burst
        self.slice = slice_seconds
        self.handoff = handoff
        self._cpu = cpu
        self._clock = clock
        self._sleep = sleep
        self._tokens = burst
        self._filled_at = clock()
        self._lock = threading.Lock()
        self._threads = threading.local()  # per thread: cpu (last reading), ran, charged
        self.stats = PacingStats()

    def charge(self, seconds: float) -> None:
        """CPU another thread spent for this one (the event loop, on a REST call's behalf):
        taken from the budget at this thread's next checkpoint."""
        mine = self._threads
        mine.charged = getattr(mine, "charged", 0.0) + max(0.0, seconds)

    def checkpoint(self) -> None:
        """Take what this thread used since its last checkpoint from the budget; sleep until
        the budget is out of debt, or ``handoff`` if the thread ran a whole slice."""
        mine = self._threads
        cpu_now = self._cpu()
        ran = max(0.0, cpu_now - getattr(mine, "cpu", cpu_now))
        used = ran + getattr(mine, "charged", 0.0)
        mine.cpu, mine.charged = cpu_now, 0.0
        mine.ran = getattr(mine, "ran", 0.0) + ran
        debt = self._take(used)
        if debt > 0:  # at least a handoff: a sleep costs ~50 us of timer slack anyway
            asleep = self._nap(max(debt / self.share, self.handoff))
            self.stats.delays += 1
            self.stats.delayed_seconds += asleep
        elif mine.ran >= self.slice:
            self._nap(self.handoff)
            self.stats.handoffs += 1
        else:
            return
        mine.ran = 0.0  # (the sleep's own CPU is counted at the next checkpoint)

    def _nap(self, seconds: float) -> float:
        """Sleep; how long it really took (a short sleep overshoots)."""
        started = self._clock()
        self._sleep(seconds)
        return self._clock() - started

    def _take(self, used: float) -> float:
        """Take ``used`` seconds from the bucket; what it owes now (0: nothing)."""
        now = self._clock()
        with self._lock:
            tokens = min(self.burst, self._tokens + (now - self._filled_at) * self.share)
            self._tokens = tokens - used
            self._filled_at = now
            self.stats.cpu_seconds += used
            return max(0.0, -self._tokens)


_attached = threading.local()


def attach(pacer: Pacer | None) -> None:
    """Pace the calling thread by ``pacer`` from now on (None: not at all)."""
    _attached.pacer = pacer


def checkpoint() -> None:
    """A place where the calling thread may be paced (nothing happens on one that is not)."""
    pacer = getattr(_attached, "pacer", None)
    if pacer is not None:
        pacer.checkpoint()


def charge(seconds: float) -> None:
    """CPU spent elsewhere on the calling thread's behalf (nothing on one that is not paced)."""
    pacer = getattr(_attached, "pacer", None)
    if pacer is not None:
        pacer.charge(seconds)


class PacedRows(list):
    """A list of the rows of an answer whose iteration is paced: the JSON encoder (the pure
    Python one, which an indented answer uses) walks it row by row, ~5 us a row, so a page of
    a thousand rows is a checkpoint every ``ROWS_PER_CHECKPOINT`` rows instead of ~5 ms at a
    stretch.  Anything that reads it by index (the C encoder) sees a plain list."""

    def __iter__(self):
        for number, row in enumerate(super().__iter__()):
            if not number % ROWS_PER_CHECKPOINT:
                checkpoint()
            yield row
