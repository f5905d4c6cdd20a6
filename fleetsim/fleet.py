"""The gateways' state as the vectorized engine keeps it: one VIP's configuration (backends and
weights, the same on every gateway), each gateway's healthy view, its current Maglev table and
the tables it replaced (for second chance), all as numpy arrays of global backend indices.

Tables come from the project's own code: ``serving.serving_backends`` picks the backends a
gateway's new flows are hashed over (its healthy set, or panic), ``maglev.table_spec`` and
``maglev.build_spec`` build the table; ``TableBook`` turns each into an array of global
backend indices (int16) once per distinct spec, shared by every gateway that has it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ryu_app.core.maglev import TableSpec, build_spec, table_spec
from ryu_app.core.model import HealthCheck
from ryu_app.core.secondchance import HISTORY_TABLES
from ryu_app.core.serving import serving_backends

NONE = -1


def backend_name(index: int) -> str:
    """Names sort as their indices do, so a table's sorted names map to indices in order."""
    return f"vm{index:05d}"


class TableBook:
    """Maglev tables by spec, as int16 arrays of global backend indices (NONE: empty)."""

    def __init__(self, table_size: int):
        self.table_size = table_size
        self.builds = 0
        self._tables: dict[TableSpec, np.ndarray] = {}

    def table(self, spec: TableSpec) -> np.ndarray:
        found = self._tables.get(spec)
        if found is None:
            found = self._build(spec)
            self._tables[spec] = found
        return found

    def _build(self, spec: TableSpec) -> np.ndarray:
        self.builds += 1
        if not spec.backends:
            return np.full(self.table_size, NONE, np.int16)
        maglev = build_spec(spec)
        index_of = np.array([int(name[2:]) for name in maglev.names], np.int16)
        slots = np.frombuffer(maglev.slots, np.int16 if maglev.slots.itemsize == 2 else np.int32)
        return index_of[slots]


@dataclass
class Replaced:
    table: np.ndarray
    at: float


@dataclass
class Fleet:
    """One VIP on ``gateways`` gateways (some of them spares, not yet live)."""

    backends: int  # configured at the start (indices 0..backends-1)
    spare_backends: int  # indices that a scenario may add
    gateways: int  # total, spares included
    table_size: int
    health: HealthCheck = field(default_factory=HealthCheck)

    def __post_init__(self):
        total = self.backends + self.spare_backends
        self.book = TableBook(self.table_size)
        self.weights = np.ones(total, np.int32)
        self.present = np.zeros(total, bool)
        self.present[: self.backends] = True
        self.dead = np.zeros(total, bool)
        self.healthy = np.ones((self.gateways, total), bool)
        self.born = np.zeros(self.gateways)
        self.specs: list[TableSpec | None] = [None] * self.gateways
        self.tables: list[np.ndarray] = [np.full(self.table_size, NONE, np.int16)] * self.gateways
        self.serving = np.zeros((self.gateways, total), bool)
        self.history: list[list[Replaced]] = [[] for _ in range(self.gateways)]
        self.max_history = 0

    # ---- what a gateway's table is ----------------------------------------------------------

    def spec_of(self, gateway: int) -> TableSpec:
        indices = np.nonzero(self.present)[0]
        backends = [(backend_name(i), int(self.weights[i])) for i in indices]
        healthy = {backend_name(i) for i in indices if self.healthy[gateway, i]}
        chosen, _ = serving_backends(backends, healthy, self.health.panic_threshold)
        return table_spec(self.table_size, chosen)

    def refresh(self, gateway: int, now: float) -> tuple[np.ndarray, np.ndarray] | None:
        """Bring the gateway's table up to its view; (old, new) if it changed.  The replaced
        table goes into the history unless it was empty (as ``TableHistory.replaced``)."""
        spec = self.spec_of(gateway)
        if spec == self.specs[gateway]:
            return None
        old, new = self.tables[gateway], self.book.table(spec)
        if self.specs[gateway] is not None and self.specs[gateway].backends:
            self.remember(gateway, old, now)
        self.specs[gateway], self.tables[gateway] = spec, new
        self.serving[gateway] = False
        for name, _ in spec.backends:
            self.serving[gateway, int(name[2:])] = True
        return old, new

    def remember(self, gateway: int, old: np.ndarray, now: float) -> None:
        """``old`` stopped answering at ``now``: newest first, at most ``HISTORY_TABLES``.  A
        table kept already moves to the front (a flapping backend swaps two tables)."""
        history = self.history[gateway]
        history[:] = [entry for entry in history if entry.table is not old]
        history.insert(0, Replaced(old, now))
        del history[HISTORY_TABLES:]
        self.max_history = max(self.max_history, len(history))

    def recent(self, gateway: int, now: float, window: float) -> list[np.ndarray]:
        """The tables replaced within ``window`` seconds, newest first (older ones dropped)."""
        history = self.history[gateway]
        while history and now - history[-1].at > window:
            history.pop()
        return [replaced.table for replaced in history]

    def alive(self, gateway: int) -> np.ndarray:
        """Backends second chance may send to here: in the VIP and healthy in this view."""
        return self.present & self.healthy[gateway]

    def restart(self, gateway: int, now: float, keep_history: bool = False) -> None:
        """A fresh controller: every configured backend healthy, a new table built from that.

        Its table history: none (a controller before the state file kept it), or, with
        ``keep_history`` (the state file keeps, per VIP, the specs of the tables replaced
        within the window with the time each was replaced, and the spec of the table in use
        when the controller stopped), the tables it had plus the one it stopped with, as
        replaced ``now`` (a table already kept moves to the front, as any replaced table)."""
        stopped = self.specs[gateway]
        if not keep_history:
            self.history[gateway] = []
        elif stopped is not None and stopped.backends:
            self.remember(gateway, self.tables[gateway], now)
        self.healthy[gateway] = True
        self.specs[gateway] = None
        self.born[gateway] = now
        self.refresh(gateway, now)

    def history_bytes(self) -> int:
        """The most table history one gateway held for this VIP (2 bytes a slot, as the core's
        ``array('h')`` tables)."""
        return self.max_history * self.table_size * 2
