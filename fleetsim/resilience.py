"""The Maglev paper's resilience curve (Eisenbud et al., NSDI 2016, section 5.3, Figure 12)
with our own tables (``ryu_app.core.maglev``): 1,000 backends; for each number k of backends
failing at once, remove k at random, rebuild, and count the table entries that changed.

The paper plots "Percent of Changes" against "Percent of Failed Backends" (0.1-2.9 %), and its
values stay below the share of backends removed (0.57 % of entries at 1 % failed, size
655,373), so it counts the entries of the *remaining* backends that changed owner (the failed
ones' entries must change); ``changed_share`` reports both.  The paper repeats each k 200 times
and averages; ``--resilience-repeats`` sets ours.

``PAPER`` holds points read by eye off Figure 12 (as reproduced at
arthurchiao.art/blog/facebook-from-xdp-to-socket-zh, image maglev-perf.png; the paper gives no
table): approximate, about +-0.05 percentage points.
"""

from __future__ import annotations

import numpy as np

from ryu_app.core.maglev import build_table

BACKENDS = 1000
SIZES = (65537, 655373)
FAILED = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 15, 20, 25, 29)  # of 1,000: the plot's 0.1-2.9 %

# Percent of failed backends -> percent of changes, read off the plot (see the docstring).
PAPER = {
    65537: {0.1: 0.58, 0.2: 1.0, 0.3: 1.3, 0.5: 1.8, 0.7: 2.1, 1.0: 2.3, 1.5: 2.28, 2.0: 2.62,
            2.5: 2.81, 2.9: 2.77},
    655373: {0.1: 0.33, 0.2: 0.37, 0.3: 0.38, 0.5: 0.46, 0.7: 0.52, 1.0: 0.57, 1.5: 0.62,
             2.0: 0.69, 2.5: 0.74, 2.9: 0.78},
}  # fmt: skip


def names(count: int) -> list[str]:
    return [f"backend-{index:04d}" for index in range(count)]


def owners(table) -> np.ndarray:
    """Slot -> backend name index (global, by the sorted name list of all backends)."""
    position = {name: index for index, name in enumerate(names(BACKENDS))}
    index_of = np.array([position[name] for name in table.names], np.int32)
    return index_of[np.frombuffer(table.slots, np.int16)]


def changed_share(size: int, failed: int, repeats: int, seed: int) -> tuple[float, float]:
    """Mean percent of entries that changed, (of the remaining backends, of all)."""
    everyone = names(BACKENDS)
    full = owners(build_table([(name, 1) for name in everyone], size))
    rng = np.random.default_rng(seed + failed)
    remaining_changes, all_changes = [], []
    for _ in range(repeats):
        gone = set(rng.choice(BACKENDS, failed, replace=False).tolist())
        table = build_table([(n, 1) for i, n in enumerate(everyone) if i not in gone], size)
        after = owners(table)
        changed = after != full
        was_failed = np.isin(full, list(gone))
        remaining_changes.append(100.0 * np.sum(changed & ~was_failed) / size)
        all_changes.append(100.0 * np.sum(changed) / size)
    return float(np.mean(remaining_changes)), float(np.mean(all_changes))


def curve(repeats: int, seed: int, sizes=SIZES, failed=FAILED) -> dict[int, list[tuple]]:
    """Size -> [(percent failed, ours of remaining, ours of all, paper or None)]."""
    result = {}
    for size in sizes:
        rows = []
        for count in failed:
            percent = 100.0 * count / BACKENDS
            remaining, everything = changed_share(size, count, repeats, seed)
            rows.append((percent, remaining, everything, PAPER[size].get(round(percent, 1))))
        result[size] = rows
    return result
