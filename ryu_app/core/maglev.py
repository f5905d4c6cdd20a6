"""Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable Software Network
Load Balancer", NSDI 2016, section 3.4), with integer weights.

Every gateway controller builds its lookup table from nothing but the set of (name, weight)
pairs of a VIP's healthy backends and the table size, so two controllers that share no state
still send the same flow to the same backend:

- Backends are sorted by name before building; the order they were configured or reported
  healthy in does not matter (Envoy issue 20703 and Cilium PR 13461 are what happens otherwise).
- ``offset`` and ``skip`` come from mmh3 with fixed seeds, never from Python's ``hash()``, which
  changes with ``PYTHONHASHSEED``.
- The table size must be prime so that every backend's preference list
  ``(offset + j * skip) mod table_size`` visits every slot exactly once (the rule, with the
  sizes' bounds and the weights', is the domain model's: ``model.table_size_problem``).
- The ``port-bits`` placement's variant (``core.slots``, docs/switch-mode.md) has ``2**k``
  slots, one per value of k source-port bits: there every odd ``skip`` is coprime with the
  size, so ``slot_permutation`` draws an odd one from the same seeds; the population is the
  same (``_populate``).

Weights follow the same round-robin population as the paper: in every round each backend earns
``weight`` credits and claims its next preferred free slot once it holds ``max_weight`` credits.
With equal weights that is exactly the paper's algorithm (one claim per backend per round); with
unequal weights a backend's slot count is proportional to its weight, and weight 0 (draining)
claims nothing.

The population loop is the hot spot of a rebuild.  Its cost is dominated by the last free
slots: when ``free`` slots are left, a backend probes about ``table_size / free`` taken slots
before it finds one, so the final few hundred slots cost more probes than the first 90% of the
table.  ``_populate`` therefore switches strategy near the end (see ``_fill_tail``).

The same loop compiled by numba (``maglev_numba``) fills 65,537 slots in ~1.5 ms instead of
~20-40 ms, slot for slot the same.  Loading it costs a process ~0.3 s (numba's import and its
on-disk cache; ~0.6 s the first time, compiling), more than a one-off table of the default size
takes in Python, so it is used once a process has loaded it (``warm_up``: the table-building
process does at start) or a table is big enough to pay for loading it (``COMPILED_MIN_SIZE``).
``lockstep lookup`` at the default size thus never imports numba.  Without numba (not installed,
or it fails to compile) the plain loop fills every table, as before.
"""

from __future__ import annotations

import functools
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import mmh3

from ryu_app.core.model import (
    DEFAULT_TABLE_SIZE,
    MAX_WEIGHT,
    PLACEMENT_HASH,
    PLACEMENT_PORT_BITS,
    is_power_of_two,
    table_size_problem,
)

# Fixed seeds: part of Lockstep's wire contract.  Changing them changes every table and breaks
# every connection across an upgrade of mixed versions, so they never change.
OFFSET_SEED = 0x4C4F434B  # "LOCK"
SKIP_SEED = 0x53544550  # "STEP"

NO_BACKEND = -1

# From this size a table's fill in Python (~0.5 s at 655,373 slots) costs as much as loading the
# compiled loop from nothing (bench/bench_mapping.py), so it loads it on demand.
COMPILED_MIN_SIZE = 1 << 17


# A port-bits table's bound here is what the population needs (a power of two, at most one
# slot per 16-bit port value); the deployment's rule (``model.slot_table_size_problem``) is
# narrower, the bench measures outside it.
MAX_SLOT_TABLE_SIZE = 1 << 16


def check_table_size(table_size: int, placement: str = PLACEMENT_HASH) -> int:
    if placement == PLACEMENT_PORT_BITS:
        problem = _slot_table_problem(table_size)
    else:
        problem = table_size_problem(table_size)
    if problem:
        raise ValueError(f"table_size {problem}")
    return table_size


def _slot_table_problem(table_size: int) -> str | None:
    if isinstance(table_size, bool) or not isinstance(table_size, int):
        return f"must be an integer, got {type(table_size).__name__}"
    if not (is_power_of_two(table_size) and 2 <= table_size <= MAX_SLOT_TABLE_SIZE):
        return f"must be a power of two 2..{MAX_SLOT_TABLE_SIZE} for port-bits, got {table_size}"
    return None


# Remembered per (name, size): a burst of rebuilds (one shared VM down in 1,000 VIPs) hashes
# the same backends' names for every table (~0.06 ms of a ~1.7 ms build at 100 backends).
@functools.lru_cache(maxsize=1 << 14)
def backend_permutation(name: str, table_size: int) -> tuple[int, int]:
    """(offset, skip) of a backend's preference list, identical on every machine."""
    key = name.encode("utf-8")
    offset = mmh3.hash(key, OFFSET_SEED, signed=False) % table_size
    skip = mmh3.hash(key, SKIP_SEED, signed=False) % (table_size - 1) + 1
    return offset, skip


@functools.lru_cache(maxsize=1 << 14)
def slot_permutation(name: str, table_size: int) -> tuple[int, int]:
    """(offset, skip) of a backend in a ``port-bits`` table of ``table_size = 2**k`` slots:
    the same seeds as ``backend_permutation``, ``skip`` odd so that ``offset + j * skip``
    visits every slot once.  Part of the cross-gateway contract, like the seeds."""
    key = name.encode("utf-8")
    offset = mmh3.hash(key, OFFSET_SEED, signed=False) % table_size
    skip = (mmh3.hash(key, SKIP_SEED, signed=False) % (table_size // 2)) * 2 + 1
    return offset, skip


PERMUTATIONS = {PLACEMENT_HASH: backend_permutation, PLACEMENT_PORT_BITS: slot_permutation}


@dataclass(frozen=True)
class MaglevTable:
    """An immutable lookup table: ``slots[i]`` indexes ``names`` (or is -1 when empty).

    ``names`` holds only the backends with a positive weight, sorted.  Immutable so that a
    rebuilt table can be swapped in with one reference assignment while lookups go on.
    """

    table_size: int
    names: tuple[str, ...]
    slots: array

    def lookup(self, flow_hash: int) -> str | None:
        if not self.names:
            return None
        return self.names[self.slots[flow_hash % self.table_size]]

    def owners(self) -> tuple[str | None, ...]:
        """Every slot's backend by name (None: empty), in slot order: comparable across
        tables, unlike ``slots``' indices."""
        if not self.names:
            return (None,) * self.table_size
        return tuple(self.names[index] for index in self.slots)

    def slot_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(self.names, 0)
        for index in self.slots:
            if index >= 0:
                counts[self.names[index]] += 1
        return counts


class TableSpec(NamedTuple):
    """A Maglev table's identity: everything its slots depend on.  Two VIPs with equal specs
    share one table (``balancer.TableCache``); the table-building process is sent specs.
    ``placement`` says which Maglev variant fills it (``PERMUTATIONS``)."""

    table_size: int
    backends: tuple[tuple[str, int], ...]  # (name, weight), weight > 0, sorted by name
    placement: str = PLACEMENT_HASH


def table_spec(
    table_size: int, backends: Iterable[tuple[str, int]], placement: str = PLACEMENT_HASH
) -> TableSpec:
    """The spec of the table over these (name, weight) backends: weight-0 backends own no
    slots, so they are left out."""
    return TableSpec(table_size, tuple(sorted((n, w) for n, w in backends if w > 0)), placement)


def build_spec(spec: TableSpec) -> MaglevTable:
    """The table a spec names (pure: the balancer's cache and the building process call it)."""
    return build_table(spec.backends, spec.table_size, spec.placement)


def normalize_backends(backends: Iterable[tuple[str, int]]) -> tuple[tuple[str, int], ...]:
    """Validate and sort (name, weight) pairs; the result is the table's whole identity."""
    seen: dict[str, int] = {}
    for name, weight in backends:
        if not isinstance(name, str) or not name:
            raise ValueError(f"backend name must be a non-empty string, got {name!r}")
        if isinstance(weight, bool) or not isinstance(weight, int):
            raise ValueError(f"backend {name!r}: weight must be an integer, got {weight!r}")
        if not 0 <= weight <= MAX_WEIGHT:
            raise ValueError(f"backend {name!r}: weight must be 0..{MAX_WEIGHT}, got {weight}")
        if name in seen:
            raise ValueError(f"backend {name!r} appears twice")
        seen[name] = weight
    return tuple(sorted(seen.items()))


def build_table(
    backends: Iterable[tuple[str, int]],
    table_size: int = DEFAULT_TABLE_SIZE,
    placement: str = PLACEMENT_HASH,
) -> MaglevTable:
    """Build the lookup table for a set of (name, weight) backends.

    The result depends only on the set of pairs, ``table_size`` and ``placement`` (a prime
    table for ``hash``, ``2**k`` slots for ``port-bits``).  Backends of weight 0 get no slots.
    With no backend of positive weight the table is empty and every lookup answers None; with
    exactly one, that backend owns every slot.
    """
    check_table_size(table_size, placement)
    active = table_spec(table_size, normalize_backends(backends)).backends
    names = tuple(name for name, _ in active)
    typecode = "h" if len(names) < 2**15 else "i"
    if not names:
        return MaglevTable(table_size, names, array(typecode))
    if len(names) == 1:
        return MaglevTable(table_size, names, array(typecode, bytes(table_size * 2)))
    permutation = PERMUTATIONS[placement]
    permutations = [permutation(name, table_size) for name in names]
    schedule = claim_schedule([weight for _, weight in active])
    return MaglevTable(table_size, names, _fill(permutations, schedule, table_size, typecode))


def _fill(permutations, schedule, table_size: int, typecode: str) -> array:
    """The population, by the compiled loop where it is loaded or pays (see the module's
    docstring), else by ``_populate``: the same slots either way."""
    if table_size >= COMPILED_MIN_SIZE:
        warm_up()
    if _compiled is not None:
        return _compiled.populate(permutations, schedule, table_size)
    return array(typecode, _populate(permutations, schedule, table_size))


_compiled = None  # the ``maglev_numba`` module once ``warm_up`` loaded it
_not_compiled: str | None = None  # why it could not be loaded, once tried


def warm_up() -> str:
    """Load the compiled fill now, once per process (compiling it if numba's cache has no copy),
    so that no later build waits for it; from then on every table of this process is filled by
    it.  Returns which fill builds tables here, for the caller's log."""
    global _compiled, _not_compiled
    if _compiled is None and _not_compiled is None:
        try:
            from ryu_app.core import maglev_numba  # noqa: PLC0415 (numba loads only here)

            maglev_numba.warm_up()
        except Exception as problem:  # noqa: BLE001 - ImportError, or numba failing to compile
            _not_compiled = f"{type(problem).__name__}: {problem}"
        else:
            _compiled = maglev_numba
    if _compiled is not None:
        return f"compiled (numba {_compiled.numba.__version__})"
    return f"plain Python ({_not_compiled})"


def claim_schedule(weights: Sequence[int]) -> list[int]:
    """Backend indices in claiming order over one period of rounds.

    In each round backend ``i`` earns ``weights[i]`` credits and claims once it has
    ``max(weights)``; after ``max(weights)`` rounds the credits are back at zero, so the
    schedule repeats.  Over one period backend ``i`` claims exactly ``weights[i]`` times.
    """
    top = max(weights)
    if all(weight == top for weight in weights):
        return list(range(len(weights)))
    credits = [0] * len(weights)
    schedule = []
    for _ in range(top):
        for index, weight in enumerate(weights):
            credits[index] += weight
            if credits[index] >= top:
                credits[index] -= top
                schedule.append(index)
    return schedule


def _populate(permutations: Sequence[tuple[int, int]], schedule: Sequence[int], size: int) -> list:
    """Fill ``size`` slots with backend indices, claiming in ``schedule`` order (cyclically)."""
    owners = [NO_BACKEND] * size
    cursor = [offset for offset, _ in permutations]  # next slot each backend will try
    skips = [skip for _, skip in permutations]
    # Switch to the tail strategy when this many free slots are left (see _fill_tail); the
    # balance point between probing and precomputing measured best at about 0.3 * size / backends.
    tail = min(size, max(16, min(size // 4, (3 * size) // (10 * len(permutations)))))
    budget = size - tail  # claims made by probing
    plan = [(index, skips[index]) for index in schedule]
    position = 0
    while budget > 0:
        for position, (index, skip) in enumerate(plan):  # noqa: B007 (position used below)
            slot = cursor[index]
            while owners[slot] >= 0:
                slot += skip
                if slot >= size:
                    slot -= size
            owners[slot] = index
            slot += skip
            cursor[index] = slot - size if slot >= size else slot
            budget -= 1
            if not budget:
                break
        position = (position + 1) % len(plan)
    _fill_tail(owners, permutations, cursor, schedule, position, tail, size)
    return owners


def _fill_tail(owners, permutations, cursor, schedule, position, free_count, size) -> None:
    """Finish the table exactly as the probing loop would, without probing.

    Backend ``i`` tries slots in the order ``(offset + j * skip) mod size``; every slot before its
    cursor is already taken, so its next claim is the free slot with the smallest ``j`` at or
    after the cursor.  With few free slots left it is cheaper to compute, for every backend, the
    order in which it will meet the free slots (``j = (slot - offset) * skip^-1 mod size``; the
    inverse exists because ``skip`` is coprime with ``size``: ``size`` is prime, or a power of
    two and ``skip`` odd) than to probe ~``size / free`` taken slots per claim.
    """
    free = [slot for slot, owner in enumerate(owners) if owner < 0]
    preference: dict[int, list[int]] = {}
    heads: dict[int, int] = {}
    for index, (_, skip) in enumerate(permutations):
        inverse = pow(skip, -1, size)
        start = cursor[index]
        # Steps along this backend's list from its cursor to each free slot, in the order
        # it will meet them, turned back into slots.
        steps = sorted([(slot - start) * inverse % size for slot in free])
        preference[index] = [(start + step * skip) % size for step in steps]
        heads[index] = 0
    period = len(schedule)
    remaining = free_count
    while remaining:
        index = schedule[position]
        position = position + 1 if position + 1 < period else 0
        order = preference[index]
        head = heads[index]
        while owners[order[head]] >= 0:
            head += 1
        owners[order[head]] = index
        heads[index] = head + 1
        remaining -= 1
