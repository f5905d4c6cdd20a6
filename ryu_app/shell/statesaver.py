"""Who writes the state file, and when: REST changes at once, backend ids when they changed.

Backend ids change without a REST call (a backend retired after a DOWN verdict gets a new one),
and a restarted controller must find the ids its switch's rules carry (``balancer.SavedIds``).
So the app looks at the balancer's ``ids_version`` and ``history_version`` (second chance's
replaced tables, which a restarted controller needs as well) on each health tick (on the event
loop: counters compared, nothing more while nothing changed) and, when one moved, copies the ids
and the history there
and has them made into ``SavedIds`` and written by a worker, never on the loop or the packet
path: a write fsyncs (ms, or much more on a busy disk) while the loop holds the core's lock,
which the switch's receiving thread needs for every packet-in.  At most one write per
``SAVE_INTERVAL``: a burst of retirements is one write.  A write that fails is counted, logged
(once per failing streak, and its end) and tried again an interval later.

Both kinds of write go through one lock and write the whole file (the VIPs REST saved last, if
any, and the ids taken last), so neither undoes the other whichever comes second.  A file that
holds that already is left as it is (a start saves the ids it read: mostly no change).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ryu_app.api import statefile
from ryu_app.core.balancer import Balancer, IdsSnapshot, SavedIds

LOG = logging.getLogger("lockstep.gateway")
SAVE_INTERVAL = 1.0  # seconds between two writes of changed ids (and between tries)


def _direct(function, *args):
    return function(*args)


def _write_file(path, vips, ids) -> None:
    statefile.write(path, vips, ids)  # (looked up at each call: tests replace it)


class StateSaver:
    """The state file of one gateway, written from REST threads (``save_vips``) and by the
    coalesced ids save (``due`` on the loop, then ``write_ids`` in a worker)."""

    def __init__(
        self,
        path: Path,
        vips: Sequence | None,
        ids: SavedIds | None,
        write: Callable | None = None,
        lock=None,
        offload: Callable = _direct,
    ):
        self.path = path
        self._vips = None if vips is None else tuple(vips)  # None: no REST change saved
        self._ids = ids  # what the file holds (the state file's at start)
        self._write = write or _write_file
        self._lock = lock or threading.Lock()  # the app's suits its hub (green or not)
        self._offload = offload  # runs the write in an OS thread (under a green hub)
        # The balancer's (ids_version, history_version) written last.
        self._version_saved: tuple[int, int] | None = None
        self._writing = False
        self._next_try = float("-inf")
        self._failing = False  # the last write failed (logged once per such streak)
        self.saves = 0
        self.failures = 0

    def save_vips(self, vips: Sequence) -> None:
        """A REST change's VIPs, with the ids taken last (a REST thread; OSError if the file
        cannot be written: then nothing changed)."""
        with self._lock:
            self._write(self.path, vips, self._ids)
            self._vips = tuple(vips)

    def due(
        self, balancer: Balancer, now: float
    ) -> tuple[tuple[int, int], IdsSnapshot, float] | None:
        """On the loop: the ids and history to write now (with their versions; a snapshot,
        made into ``SavedIds`` by the worker; the wall-clock time it was taken), if they
        changed since the last write and no write ran in the last interval nor runs now;
        else None."""
        version = (balancer.ids_version, balancer.history_version)
        if version == self._version_saved or self._writing or now < self._next_try:
            return None
        self._writing = True
        self._next_try = now + SAVE_INTERVAL
        return version, balancer.ids_snapshot(now), time.time()

    def write_ids(self, version: tuple[int, int], snapshot: IdsSnapshot, wall: float) -> None:
        """In a worker: write what ``due`` handed out; never raises."""
        try:
            ids = snapshot.saved(wall)
            with self._lock:
                self._offload(self._write, self.path, self._vips, ids)
                self._ids = ids
        except Exception as error:  # noqa: BLE001 - a worker must report, not vanish
            self.failures += 1
            if not self._failing:
                LOG.error("cannot save backend ids to %s (tried again later): %s", self.path, error)
            self._failing = True
        else:
            if self._failing:
                LOG.info("backend ids saved to %s again", self.path)
            self._failing = False
            self._version_saved = version
            self.saves += 1
        finally:
            self._writing = False
