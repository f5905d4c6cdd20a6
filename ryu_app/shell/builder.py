"""Maglev tables built in a process of their own.

A table is ~40 ms of pure Python (65,537 slots).  Built on a thread of the controller's process
it holds the interpreter lock away from the thread that answers packet-ins, in slices of the
interpreter's switch interval, for as long as it runs: a health change that rebuilds the
tables of 100 VIPs put up to half a second into the packet path's latency (bench_newflow's
rebuild phase: p99 ~90-400 ms with the build in a thread, ~8 ms with this).  A worker process
builds them on another core; the controller only waits for the answer (a thread waiting on a
pipe holds no lock) and unpickles it (~0.1 ms).

The worker is a plain child on a pipe: it builds what it is sent, and ends when the pipe does
(the controller exited, or was killed), so nothing outlives the controller.  ``build`` blocks
its caller: call it from a worker thread.  If the worker cannot be started or dies, tables are
built in this process from then on, and that is logged once.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import threading

from ryu_app.core import maglev
from ryu_app.core.maglev import MaglevTable, TableSpec, build_spec

LOG = logging.getLogger("lockstep.builder")
# The workers run below the controller's priority: with a worker on every core, a burst of
# builds would otherwise take the CPU from the thread that answers packet-ins (the kernel now
# gives it the core whenever it wants one; the builds take what is left).
WORKER_NICENESS = 10


class TableBuilder:
    """One worker process (``build``), plus ``workers - 1`` more for ``build_many``."""

    def __init__(self, in_process: bool = False, workers: int | None = None):
        self.in_process = in_process  # True: never start a worker process
        self.workers = 1 if in_process else max(1, workers or os.cpu_count() or 1)
        self._helpers: list[TableBuilder] = []  # the other workers' builders
        self._lock = threading.Lock()  # one question on the pipe at a time
        self._pipe = None
        self._process = None

    def start(self) -> None:
        """Start the worker now (it takes a few hundred ms to be ready, and loads the compiled
        table fill: ``maglev.warm_up``), not at the first build, which would then wait for it.
        Building in this process, load the compiled fill here, now (before any switch)."""
        if self.in_process:
            LOG.info("tables built in this process, fill: %s", maglev.warm_up())
        else:
            try:
                with self._lock:
                    self._pipe or self._start()
                self._start_helpers()
            except OSError as problem:
                LOG.warning("no table-building process (%r): building in this one", problem)
                self.in_process = True

    def build(self, spec: TableSpec) -> MaglevTable:
        if not self.in_process:
            try:
                with self._lock:
                    pipe = self._pipe or self._start()
                    pipe.send(spec)
                    table, error = pipe.recv()
            except (OSError, EOFError) as problem:
                LOG.warning("no table-building process (%r): building in this one", problem)
                self.in_process = True
                self.close()
            else:
                if error is not None:
                    raise error
                return table
        return build_spec(spec)

    def build_many(
        self, requests: list, deliver, still_wanted=lambda request: True, skipped=None
    ) -> None:
        """Build ``requests`` (each with a ``spec``) on every worker at once, in the order given
        (the caller puts the newest first), calling ``deliver(request, table, error)`` from a
        thread per worker as each is built.  A request no longer ``still_wanted`` when its turn
        comes is skipped (superseded: a newer one is queued or the VIP went), and handed to
        ``skipped`` if given, so that the caller can count every request as done.  Blocks until all
        are done.  ~1.5 ms a table with the compiled fill, so 1,000 tables take about a second
        over two cores (bench_scale)."""
        self._start_helpers()
        pending = list(reversed(requests))  # pop() takes from the end: the first given first
        taking = threading.Lock()

        def drain(builder: TableBuilder) -> None:
            while True:
                with taking:
                    if not pending:
                        return
                    request = pending.pop()
                if not still_wanted(request):
                    if skipped is not None:
                        skipped(request)
                    continue
                try:
                    deliver(request, builder.build(request.spec), None)
                except Exception as error:  # noqa: BLE001 - handed to the caller
                    deliver(request, None, error)

        threads = [threading.Thread(target=drain, args=(b,)) for b in [self, *self._helpers]]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _start_helpers(self) -> None:
        if not self._helpers and self.workers > 1 and not self.in_process:
            self._helpers = [TableBuilder(workers=1) for _ in range(self.workers - 1)]
            for helper in self._helpers:
                helper.start()

    def _start(self):
        # spawn: a fresh interpreter, not a fork of this threaded process (whose locks a
        # forked child could inherit held); it imports only what ``_serve`` needs.
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(theirs,), name="lockstep-tables", daemon=True
        )
        self._process.start()
        theirs.close()  # the child's end lives in the child only: its EOF is our exit
        self._pipe = ours
        return ours

    def close(self) -> None:
        """End the worker(s) (each exits when its pipe closes)."""
        for helper in self._helpers:
            helper.close()
        self._helpers = []
        if self._pipe is not None:
            self._pipe.close()
            self._pipe = None
        if self._process is not None:
            self._process.join(timeout=2)
            if self._process.is_alive():
                self._process.kill()
            self._process = None


def _serve(pipe) -> None:
    """The worker process: lower its priority (``WORKER_NICENESS``), load the compiled table
    fill (~0.3 s from numba's cache, ~0.6 s the
    first time, here and not on the controller's packet path), then answer each ``TableSpec``
    with (table, None) or (None, the error raised), until the controller's end of the pipe
    closes.  Without numba the plain loop builds (``maglev.warm_up`` falls back)."""
    with contextlib.suppress(OSError):
        os.nice(WORKER_NICENESS)
    maglev.warm_up()
    while True:
        try:
            spec = pipe.recv()
        except (EOFError, OSError):
            return
        try:
            pipe.send((build_spec(spec), None))
        except Exception as error:  # noqa: BLE001 - handed back to the controller
            pipe.send((None, error))
