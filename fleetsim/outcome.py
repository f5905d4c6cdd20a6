"""What happened to the connections of one run (event x mechanism), in terms both engines
share: why a connection broke (``REASONS``), the classification of one lookup's outcome
(``classify``), and the run's costs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fleetsim.rule import DUPLICATE_NO_VM_RULE, NONE, PREVIOUS

PENDING, ALIVE, BROKEN = 0, 1, 2

LOST_WITH_VM = 1
NEW_TO_DEAD_VM = 2
MOVED_NOT_IN_TABLE = 3
MOVED_SLOT_OWNER = 4
PREVIOUS_WRONG = 5
RESET_BY_OTHER_VM = 6
RETIRED_WHILE_ALIVE = 7
NO_BACKEND = 8
MOVED_TO_DEAD_VM = 9

REASONS = {
    LOST_WITH_VM: "lost with the failed VM",
    NEW_TO_DEAD_VM: "new connection sent to the failed VM before its gateway noticed",
    MOVED_NOT_IN_TABLE: "moved, no entry: its backend not in that gateway's table (drained, down)",
    MOVED_SLOT_OWNER: "moved, no entry: the slot changed owner",
    PREVIOUS_WRONG: "moved, no entry: sent to the slot's earlier owner, began on the current one",
    RESET_BY_OTHER_VM: "moved, no entry: duplicated; the VM without it answered RST (no VM rule)",
    RETIRED_WHILE_ALIVE: "its gateway retired the backend it saw down (VM alive): re-hashed",
    NO_BACKEND: "no backend in the table",
    MOVED_TO_DEAD_VM: "moved, no entry: that gateway's table still names the failed VM it chose",
}
NOT_BLAMED = (LOST_WITH_VM, NEW_TO_DEAD_VM)  # the VM's failure, not the balancer's


def classify(
    mechanism: str,
    conn: np.ndarray,
    dests: np.ndarray,
    current: np.ndarray,
    serving: np.ndarray,
    retired: bool,
    to_dead: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(survived, reason) of TCP non-SYN misses: ``conn`` the backend holding each connection,
    ``dests`` where the gateway sent it (``rule.destinations``), ``current`` the slot's current
    owner there, ``serving`` whether ``conn`` is in that gateway's table, ``retired`` whether
    the miss came from a retired entry rather than a move, ``to_dead`` whether the entry's
    destination is a VM that has failed (a gateway that has not noticed yet)."""
    has = (dests == conn[:, None]).any(axis=1)
    survived = has.copy()
    if mechanism == DUPLICATE_NO_VM_RULE:
        survived &= dests[:, 1] == NONE
    reason = np.zeros(len(conn), np.int8)
    reason[~serving] = MOVED_NOT_IN_TABLE
    reason[serving] = MOVED_SLOT_OWNER
    if mechanism == PREVIOUS:
        reason[serving & (dests[:, 0] != current)] = PREVIOUS_WRONG
    if to_dead is not None:
        reason[to_dead] = MOVED_TO_DEAD_VM
    reason[has] = RESET_BY_OTHER_VM
    reason[dests[:, 0] == NONE] = NO_BACKEND
    if retired:
        reason[:] = RETIRED_WHILE_ALIVE
    reason[survived] = 0
    return survived, reason


@dataclass
class Costs:
    duplicated_flows: int = 0  # flows whose packets went to more than one VM
    duplicated_seconds: float = 0.0  # summed over those flows
    history_bytes: int = 0  # most table history one gateway held for the VIP
    exchange_messages: int = 0  # entry copies sent (one per entry per peer)
    exchange_entries_held: int = 0  # most pushed entries one gateway received
    exchange_entries_pushed: int = 0


@dataclass
class Outcome:
    event: str
    mechanism: str
    open_at_zero: int
    flows: int
    moved_misses: int = 0  # TCP non-SYN misses (moved flows without an entry, retirements)
    by_reason: dict[int, int] = field(default_factory=dict)
    costs: Costs = field(default_factory=Costs)
    seconds: float = 0.0

    @property
    def broken(self) -> int:
        """Connections the balancer broke (not those that died with their VM)."""
        return sum(n for reason, n in self.by_reason.items() if reason not in NOT_BLAMED)

    @property
    def lost_with_vm(self) -> int:
        return sum(n for reason, n in self.by_reason.items() if reason in NOT_BLAMED)


def count_reasons(reasons: np.ndarray) -> dict[int, int]:
    values, counts = np.unique(reasons[reasons > 0], return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts, strict=True)}
