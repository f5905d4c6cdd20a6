"""The Maglev population loop compiled by numba: ``maglev._populate``'s table, slot for slot.

The loop is the paper's: claim ``t`` goes to backend ``schedule[t % period]``, which walks its
permutation (``offset + j * skip``, from its cursor) past taken slots and takes the first free
one.  It is sequential (a claim depends on every earlier one), so numpy's whole-array passes fit
it badly (a numpy fill in batches settled by a fixed point was tried: ~10x slower than this, see
README); compiled, a probe costs ~2 ns instead of ~35 ns of Python, and the whole fill of 65,537
slots ~1.8 ms.  Everything the table's identity depends on (the mmh3 hashes, offsets, skips, the
weighted schedule) is computed in Python by ``maglev`` beforehand, exactly as for the plain loop;
this module only probes.

numba is imported here only, and ``maglev`` imports this module only in ``maglev.warm_up`` (a
long-lived process's start, or the first table of >= 2**17 slots), so importing the core and
``lockstep lookup`` at the default size pay nothing for it.  ``warm_up`` compiles the loop
(~0.5 s) or loads it from numba's on-disk cache (``cache=True``: ``__pycache__`` beside this file,
numba's per-user cache directory when that is read-only, or ``NUMBA_CACHE_DIR``); if no cache can
be written it compiles in memory.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence

import numba
import numpy as np


def _jit(function):
    """``numba.njit`` with the on-disk cache where numba can place one, in memory otherwise
    (numba refuses ``cache=True`` at decoration when no cache directory is writable).  ``nogil``:
    a build on a thread of the controller's process leaves the interpreter to the packet path."""
    try:
        return numba.njit(cache=True, nogil=True)(function)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return numba.njit(cache=False, nogil=True)(function)


@_jit
def _fill(offsets, skips, schedule, owners):  # pragma: no cover (compiled; tested by result)
    """Fill ``owners`` (every slot, in place) claiming in ``schedule`` order, cyclically."""
    size = owners.shape[0]
    for slot in range(size):
        owners[slot] = -1
    cursor = offsets.copy()
    period = schedule.shape[0]
    position = 0
    for _ in range(size):
        index = schedule[position]
        position += 1
        if position == period:
            position = 0
        skip = skips[index]
        slot = cursor[index]
        while owners[slot] >= 0:
            slot += skip
            if slot >= size:
                slot -= size
        owners[slot] = index
        slot += skip
        if slot >= size:
            slot -= size
        cursor[index] = slot


def populate(permutations: Sequence[tuple[int, int]], schedule: Sequence[int], size: int) -> array:
    """Slot -> backend index as the ``array`` ``maglev.build_table`` keeps ('h' below 2**15
    backends, 'i' above), filled in place by the compiled loop (no copy)."""
    typecode = "h" if len(permutations) < 2**15 else "i"
    slots = array(typecode, bytes(size * array(typecode).itemsize))
    offsets = np.array([offset for offset, _ in permutations], dtype=np.int64)
    skips = np.array([skip for _, skip in permutations], dtype=np.int64)
    order = np.asarray(schedule, dtype=np.int32)
    _fill(
        offsets, skips, order, np.frombuffer(slots, dtype=np.int16 if typecode == "h" else np.int32)
    )
    return slots


def warm_up() -> None:
    """Compile (or load from the cache) both table types' loops now, not at the first real
    build: ~0.25 s with numba's cache (its import included), ~0.55 s without."""
    offsets, skips, schedule = (
        np.array(values, dtype=np.int64) for values in ([0, 1], [1, 2], [0, 1])
    )
    for dtype in (np.int16, np.int32):  # 'h' and 'i' tables
        _fill(offsets, skips, schedule.astype(np.int32), np.empty(5, dtype=dtype))
