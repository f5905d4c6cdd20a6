"""The second-chance destination rule (``ryu_app.core.secondchance.destinations``), vectorized
over many flows at one gateway: tables are numpy arrays of global backend indices.

Kept behind this one function so that the engine never spells the rule twice; a unit test
holds it equal to the core's rule flow by flow (tests/fleetsim/test_fleetsim_rule.py).

Mechanisms (the names the simulator's tables use):

- ``off``: today: the current owner;
- ``previous``: the newest earlier owner that is alive here, else the current owner;
- ``duplicate``: the current owner and up to ``MAX_EXTRA`` earlier owners (the VM without the
  connection drops the segment: needs the VM rule);
- ``duplicate-no-vm-rule``: the same destinations, but a VM that gets a segment of a connection
  it does not hold answers RST (no VM rule), so a duplicated connection is reset;
- ``exchange``: gateways push the per-flow entries of changed slots to their peers (simulated
  in the engine); a miss without a pushed entry is ``off``.
"""

from __future__ import annotations

import numpy as np

from ryu_app.core.secondchance import MAX_EXTRA

OFF = "off"
PREVIOUS = "previous"
DUPLICATE = "duplicate"
DUPLICATE_NO_VM_RULE = "duplicate-no-vm-rule"
EXCHANGE = "exchange"
MECHANISMS = (OFF, PREVIOUS, DUPLICATE, DUPLICATE_NO_VM_RULE, EXCHANGE)
USES_HISTORY = (PREVIOUS, DUPLICATE, DUPLICATE_NO_VM_RULE)
CORE_MODE = {PREVIOUS: "previous", DUPLICATE: "duplicate", DUPLICATE_NO_VM_RULE: "duplicate"}

NONE = -1


def earlier_owners(
    slots: np.ndarray, current: np.ndarray, history: list[np.ndarray], alive: np.ndarray
) -> np.ndarray:
    """(n, MAX_EXTRA) int32: each flow's earlier owners, newest table first, distinct, not the
    current owner, alive here (``alive``: bool per backend index), NONE-padded."""
    found = np.full((len(slots), MAX_EXTRA), NONE, np.int32)
    count = np.zeros(len(slots), np.int32)
    for table in history:
        owner = table[slots].astype(np.int32)
        usable = (owner != NONE) & (owner != current) & (count < MAX_EXTRA)
        usable[usable] &= alive[owner[usable]]
        for column in range(MAX_EXTRA):
            usable &= found[:, column] != owner
        rows = np.nonzero(usable)[0]
        found[rows, count[rows]] = owner[rows]
        count[rows] += 1
    return found


def destinations(
    mechanism: str,
    slots: np.ndarray,
    table: np.ndarray,
    history: list[np.ndarray],
    alive: np.ndarray,
) -> np.ndarray:
    """(n, 1 + MAX_EXTRA) int32: where each flow's TCP non-SYN miss goes at this gateway, the
    first column what its new entry records (the core's ``destinations``), NONE-padded."""
    current = table[slots].astype(np.int32)
    result = np.full((len(slots), 1 + MAX_EXTRA), NONE, np.int32)
    result[:, 0] = current
    if mechanism not in USES_HISTORY or not history:
        return result
    earlier = earlier_owners(slots, current, history, alive)
    if mechanism == PREVIOUS:
        chosen = earlier[:, 0] != NONE
        result[chosen, 0] = earlier[chosen, 0]
        return result
    result[:, 1:] = earlier
    return result
