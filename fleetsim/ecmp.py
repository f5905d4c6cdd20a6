"""The router in front of the gateways: which gateway gets a flow's packets.

- ``modulo`` (most routers): the live gateways in order, the flow's router hash modulo their
  count.  Any change of the count moves almost every flow (all but about 1/n).
- ``resilient`` (resilient hashing, e.g. Cumulus/Broadcom "resilient ECMP"): a fixed table of
  ``BUCKETS`` buckets; a gateway that leaves hands only its own buckets to the others (round
  robin), one that joins takes an even share of buckets from the others.  Only the flows of the
  buckets that change owner move.
"""

from __future__ import annotations

import numpy as np

MODULO = "modulo"
RESILIENT = "resilient"
MODES = (MODULO, RESILIENT)
BUCKETS = 4096


class Ecmp:
    def __init__(self, live: list[int], mode: str = MODULO):
        if mode not in MODES:
            raise ValueError(f"ECMP mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.live = sorted(live)
        self.buckets = np.array([self.live[i % len(self.live)] for i in range(BUCKETS)], np.int16)

    def gateways(self, router_hash: np.ndarray) -> np.ndarray:
        """The gateway (int16) of each flow, by its router hash."""
        if not self.live:
            raise ValueError("no live gateway")
        if self.mode == MODULO:
            live = np.array(self.live, np.int16)
            return live[router_hash % np.uint32(len(live))]
        return self.buckets[router_hash % np.uint32(BUCKETS)]

    def remove(self, gateway: int) -> None:
        self.live.remove(gateway)
        lost = np.nonzero(self.buckets == gateway)[0]
        for rank, bucket in enumerate(lost):
            self.buckets[bucket] = self.live[rank % len(self.live)]

    def add(self, gateway: int) -> None:
        """The joining gateway takes every ``n+1``-th bucket of each other gateway's own."""
        count = len(self.live) + 1
        for other in self.live:
            owned = np.nonzero(self.buckets == other)[0]
            self.buckets[owned[::count]] = gateway
        self.live = sorted([*self.live, gateway])
