"""Maglev population vectorized with numpy: the same slots as ``maglev._populate``, slot for slot.

The population is sequential: claim ``t`` (backend ``schedule[t % period]``) takes that backend's
next preferred free slot, so claims interfere only where two backends prefer the same free slot.
This module fills the table in batches of consecutive claims and settles each batch at once:

1. **Windows.** Every backend that claims ``K`` times in the batch lists its next ``K + margin``
   free slots in preference order (``_probe_windows`` walks its permutation from its cursor;
   late in the fill, ``_inverse_windows`` ranks the few free slots by their place in it).
2. **Contests.** A slot in only one window is taken by its backend if that backend reaches it.
   Only slots in two or more windows (the contested ones, a fraction of the batch) can be lost.
3. **Fixed point.** Each backend meets its window's entries in order; meeting entry ``j`` after
   ``lost`` earlier entries were taken by others, it is on its claim ``c = j - lost`` and so
   meets the slot at the time of that claim.  A contested slot goes to the backend that meets it
   first.  ``_settle_contests`` iterates "who meets each slot first" and "which entries are
   lost" until neither changes; the sequential result is the only fixed point (by induction
   over time: the first claimant of a slot is decided by earlier claims alone), so the answer
   is exact, not approximate.
4. If a backend lost so many entries that its window ran out, only the claims before its first
   claim without an entry are kept: every entry met before then lay inside the windows, so
   they are exact; the next batch goes on from there.

The last ``TAIL_FREE`` claims are made one by one in Python (``_finish_in_python``): batches of
a few claims cost more numpy calls than they save.
Batches take ``BATCH_FRACTION`` of the free slots: larger batches mean fewer numpy calls but
more contested entries and more fixed-point rounds.  ``maglev.build_table`` calls this only
where it measured faster than the plain loop (``maglev.vector_pays``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BATCH_FRACTION = 0.35  # of the free slots claimed per batch
MARGIN = 0.15  # extra window entries per claim, for entries lost to other backends
TAIL_FREE = 256  # the last claims are made in plain Python (``_finish_in_python``)
PROBE_SLACK = 1.15  # permutation steps probed per free slot expected
MAX_SETTLE_ROUNDS = 64  # a batch whose fixed point needs more is split in two


def populate(permutations: Sequence[tuple[int, int]], schedule: Sequence[int], size: int):
    """Slot -> backend index (int32 numpy array): ``maglev._populate``'s table, vectorized."""
    offsets = np.array([offset for offset, _ in permutations], dtype=np.int64)
    skips = np.array([skip for _, skip in permutations], dtype=np.int64)
    schedule_array = np.asarray(schedule, dtype=np.int16 if len(skips) < 2**15 else np.int32)
    fill = _Fill(offsets, skips, size)
    start = 0  # the next claim's place in the schedule
    while fill.free > TAIL_FREE:
        claims = max(1, min(fill.free, int(fill.free * BATCH_FRACTION)))
        if fill.free_slots is None and _inverse_is_cheaper(claims, fill.free, size, len(skips)):
            fill.use_free_list()
        made = _claim_batch(fill, schedule_array, start, claims)
        start = (start + made) % len(schedule_array)
    _finish_in_python(fill, schedule, start)
    return fill.owners


def _finish_in_python(fill: _Fill, schedule: Sequence[int], start: int) -> None:
    """The last ``TAIL_FREE`` claims one by one (batches of a few claims cost more numpy calls
    than they save): each claiming backend ranks the free slots by its preference once, then
    claims walk those rankings past slots taken meanwhile."""
    free_slots = np.flatnonzero(fill.owners < 0)
    period = len(schedule)
    claimants = [schedule[(start + claim) % period] for claim in range(len(free_slots))]
    if not claimants:
        return
    involved = sorted(set(claimants))
    row_of = {backend: row for row, backend in enumerate(involved)}
    rows = np.array(involved)
    skips = fill.skips[rows]
    inverses = np.array([pow(int(skip), -1, fill.size) for skip in skips])
    places = ((free_slots[None, :] - fill.cursor[rows][:, None]) * inverses[:, None]) % fill.size
    rankings = free_slots[np.argsort(places, axis=1)].tolist()
    heads = [0] * len(involved)
    taken: set[int] = set()
    slots = []
    for backend in claimants:
        row = row_of[backend]
        ranking, head = rankings[row], heads[row]
        while ranking[head] in taken:
            head += 1
        taken.add(ranking[head])
        slots.append(ranking[head])
        heads[row] = head + 1
    fill.owners[slots] = claimants


def _inverse_is_cheaper(claims: int, free: int, size: int, backends: int) -> bool:
    """Ranking all free slots per backend (``backends * free``) against probing for a window
    (``claims * size / free`` permutation steps, most of them onto taken slots)."""
    return backends * free < (claims + 2 * backends) * size / free


class _Batch:
    """One batch's claims grouped by backend: ``backends`` (sorted, those that claim),
    ``counts`` (claims each) and ``times`` (each claim's place in the batch, grouped by
    backend in that order, ascending within a backend); ``first`` indexes a backend's run."""

    def __init__(self, schedule: np.ndarray, start: int, claims: int):
        who = schedule[(start + np.arange(claims)) % len(schedule)]
        self.times = np.argsort(who, kind="stable")  # radix sort: ``schedule`` is int16/int32
        self.backends, self.counts = np.unique(who, return_counts=True)
        self.first = np.concatenate(([0], np.cumsum(self.counts)[:-1]))
        self.claims = claims


def _segment_starts(lengths: np.ndarray) -> np.ndarray:
    return np.concatenate(([0], np.cumsum(lengths)[:-1]))


def _rank_in_segments(flags: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """For each position, how many ``flags`` are set before it within its segment."""
    before = np.cumsum(flags) - flags
    return before - np.repeat(before[starts], lengths)


def _probe_windows(owners, cursor, skips, widths, free):
    """Each backend's next free slots (up to ``widths[i]``), walking its permutation from its
    cursor: (local backend of each entry, entry slot, entries per backend), backend-major, in
    preference order.  Probes a rectangle (backends x steps), then longer ones for the rows
    still short, until every row has its width."""
    size = len(owners)
    rows = np.arange(len(widths))
    found = np.zeros(len(widths), dtype=np.int64)
    done = 0  # steps probed so far, every row still in ``rows``
    steps = int(widths.max() * (size / free) * PROBE_SLACK) + 4
    pieces = []
    while len(rows):
        slots = np.multiply.outer(skips[rows], np.arange(done, done + steps))
        slots += cursor[rows, None]
        np.remainder(slots, size, out=slots)
        found_at = np.flatnonzero(owners[slots] < 0)
        local = rows[found_at // steps]
        pieces.append((local, slots.ravel()[found_at]))
        found += np.bincount(local, minlength=len(widths))
        done += steps
        rows = np.flatnonzero(found < widths)
        if len(rows):
            steps = int((widths[rows] - found[rows]).max() * (size / free) * 2) + 16
    local = np.concatenate([piece[0] for piece in pieces])
    slots = np.concatenate([piece[1] for piece in pieces])
    if len(pieces) > 1:
        order = np.argsort(local, kind="stable")  # by backend, each in preference order
        local, slots = local[order], slots[order]
    rank = np.arange(len(local)) - np.repeat(_segment_starts(found), found)
    keep = rank < widths[local]
    return local[keep], slots[keep], widths


def _inverse_windows(free_slots, cursor, inverses, skips, widths, size):
    """The same windows as ``_probe_windows`` from the list of free slots: a slot's place in a
    backend's permutation from its cursor is ``(slot - cursor) * skip^-1 mod size``."""
    places = ((free_slots[None, :] - cursor[:, None]) * inverses[:, None]) % size
    widest = int(widths.max())
    if widest < places.shape[1]:
        nearest = np.argpartition(places, widest - 1, axis=1)[:, :widest]
        places = np.take_along_axis(places, nearest, axis=1)
    order = np.argsort(places, axis=1)[:, :widest]
    slots = (cursor[:, None] + np.take_along_axis(places, order, axis=1) * skips[:, None]) % size
    keep = np.arange(widest)[None, :] < widths[:, None]
    local = np.broadcast_to(np.arange(len(widths))[:, None], keep.shape)
    return local[keep], slots[keep], widths


def _contested(slots: np.ndarray, scratch: np.ndarray) -> np.ndarray:
    """Indices (ascending) of the entries whose slot is in more than one window, and each
    one's first entry index for that slot (its group).  ``scratch``: one int32 per slot."""
    index = np.arange(len(slots), dtype=np.int32)
    scratch[slots] = index  # the last write of a slot wins
    last = scratch[slots]
    scratch[slots[::-1]] = index[::-1]  # now the first
    first = scratch[slots]
    shared = np.flatnonzero((last != index) | (first != index))
    return shared, first[shared]


def _settle_contests(batch: _Batch, local, place, group):
    """Which contested entries are lost (taken earlier by another backend): the fixed point
    described in the module docstring, or None if it is not reached in MAX_SETTLE_ROUNDS.

    ``local``, ``place`` and ``group`` are the contested entries' backend (local index), place
    in that backend's window, and slot (any number naming it), backend-major."""
    count = len(local)
    if not count:
        return np.zeros(0, dtype=bool)
    new_run = np.ones(count, dtype=bool)
    new_run[1:] = local[1:] != local[:-1]
    run_start = np.maximum.accumulate(np.where(new_run, np.arange(count), 0))
    claims, first = batch.counts[local], batch.first[local]
    lost = np.zeros(count, dtype=bool)
    earliest = np.empty(int(group.max()) + 1, dtype=np.int64)
    for _ in range(MAX_SETTLE_ROUNDS):
        before = np.cumsum(lost) - lost
        claim = place - (before - before[run_start])
        meets = claim < claims
        time = np.where(meets, batch.times[first + np.minimum(claim, claims - 1)], batch.claims)
        earliest.fill(batch.claims)
        np.minimum.at(earliest, group, time)
        settled = meets & (time > earliest[group])
        if np.array_equal(settled, lost):
            return lost
        lost = settled
    return None


class _Fill:
    """The population's state between batches."""

    def __init__(self, offsets: np.ndarray, skips: np.ndarray, size: int):
        self.owners = np.full(size, -1, dtype=np.int32)
        self.cursor = offsets.copy()  # the next slot each backend tries
        self.skips = skips
        self.size = size
        self.free = size
        self.free_slots: np.ndarray | None = None  # kept once windows come from the free list
        self.inverses: np.ndarray | None = None
        self.scratch = np.empty(size, dtype=np.int32)

    def use_free_list(self) -> None:
        self.free_slots = np.flatnonzero(self.owners < 0)
        self.inverses = np.array([pow(int(skip), -1, self.size) for skip in self.skips])

    def windows(self, backends: np.ndarray, widths: np.ndarray):
        cursor, skips = self.cursor[backends], self.skips[backends]
        if self.free_slots is None:
            return _probe_windows(self.owners, cursor, skips, widths, self.free)
        inverses = self.inverses[backends]
        return _inverse_windows(self.free_slots, cursor, inverses, skips, widths, self.size)

    def commit(self, backends: np.ndarray, slots: np.ndarray, last: np.ndarray) -> None:
        """``slots[i]`` goes to ``backends[i]``; ``last`` marks each backend's last claim."""
        self.owners[slots] = backends
        self.cursor[backends[last]] = (slots[last] + self.skips[backends[last]]) % self.size
        self.free -= len(slots)
        if self.free_slots is not None:
            self.free_slots = self.free_slots[self.owners[self.free_slots] < 0]


def _claim_batch(fill: _Fill, schedule: np.ndarray, start: int, claims: int) -> int:
    """Make the ``claims`` claims from ``schedule[start]`` on, or the first of them: those
    before the first claim of a backend whose window ran out, or half of them when the fixed
    point is slow.  Returns how many were made (at least one)."""
    batch = _Batch(schedule, start, claims)
    widths = np.minimum(batch.counts + 1 + (batch.counts * MARGIN).astype(np.int64), fill.free)
    local, slots, widths = fill.windows(batch.backends, widths)
    starts = _segment_starts(widths)
    place = np.arange(len(local)) - np.repeat(starts, widths)
    contested, group = _contested(slots, fill.scratch)
    settled = _settle_contests(batch, local[contested], place[contested], group)
    if settled is None:
        return _claim_batch(fill, schedule, start, claims // 2)
    lost = np.zeros(len(local), dtype=bool)
    lost[contested] = settled
    claim = place - _rank_in_segments(lost, starts, widths)
    counts = np.repeat(batch.counts, widths)
    taken = ~lost & (claim < counts)
    made = np.bincount(local[taken], minlength=len(widths))
    short = made < batch.counts
    if short.any():
        # The first claim that found no entry left: everything before it is exact.
        claims = int(batch.times[(batch.first + made)[short]].min())
        time = batch.times[np.repeat(batch.first, widths) + np.minimum(claim, counts - 1)]
        taken &= time < claims
        made = np.bincount(local[taken], minlength=len(widths))
    last = claim[taken] == np.repeat(made, widths)[taken] - 1
    fill.commit(batch.backends[local[taken]], slots[taken], last)
    return claims
