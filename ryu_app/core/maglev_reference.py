"""A plain, obviously-correct implementation of Maglev population, used as a test oracle and
as the side-by-side reference in ``bench/``.  Never used at run time.

It follows the paper's pseudocode (NSDI 2016, section 3.4, "Pseudocode 1: Populate Maglev
hashing lookup table") line by line, generalised to weights with the same credit rule as
``maglev.claim_schedule``: each round, a backend earns its weight and claims one slot when it has
``max(weights)`` credits.  With equal weights this is exactly the paper's loop.
"""

from __future__ import annotations

from ryu_app.core.maglev import backend_permutation


def reference_table(backends: dict[str, int], table_size: int) -> list[str | None]:
    """Slot -> backend name (None only when no backend has a positive weight)."""
    names = sorted(name for name, weight in backends.items() if weight > 0)
    if not names:
        return [None] * table_size
    offset = {}
    skip = {}
    for name in names:
        offset[name], skip[name] = backend_permutation(name, table_size)
    top = max(backends[name] for name in names)
    next_index = dict.fromkeys(names, 0)
    credit = dict.fromkeys(names, 0)
    entry: list[str | None] = [None] * table_size
    filled = 0
    while True:
        for name in names:
            credit[name] += backends[name]
            if credit[name] < top:
                continue
            credit[name] -= top
            candidate = (offset[name] + next_index[name] * skip[name]) % table_size
            while entry[candidate] is not None:
                next_index[name] += 1
                candidate = (offset[name] + next_index[name] * skip[name]) % table_size
            entry[candidate] = name
            next_index[name] += 1
            filled += 1
            if filled == table_size:
                return entry
