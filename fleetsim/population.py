"""The flows of a simulated fleet: who they are (5-tuples), where they hash (our own flow key
and hash: ``flowkey.flow_key``, ``flowkey.flow_hash``), where the router sends them (a hash of
the same bytes with the router's own seed), and when they live.

Lifetimes are lognormal: median ``median_life`` seconds, shape ``sigma`` (defaults 8 s and 1.6:
mean ~29 s, 90th percentile ~62 s, 99th ~5.5 min: most connections short, a tail of minutes).
Arrivals are Poisson at the rate that keeps ``concurrent`` connections open on average
(``concurrent / mean lifetime``, Little's law).

The connections open at time 0 are drawn from the steady state of that M/G/infinity system,
not by simulating a warm-up: each one's total lifetime follows the length-biased lognormal
(``mu + sigma**2``, same ``sigma``: long connections are more likely to be open at any given
moment) and its age is uniform within it.  So time 0 finds a warm fleet at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mmh3
import numpy as np

from ryu_app.core.flowkey import Flow, flow_hash, flow_key
from ryu_app.core.model import HASH_5TUPLE, PROTO_TCP

VIP_ADDRESS = bytes([203, 0, 113, 10])
VIP_PORT = 443
ROUTER_SEED = 0x52545231  # the router's hash is not ours; any seed other than Lockstep's


@dataclass(frozen=True)
class Lifetimes:
    median_life: float = 8.0
    sigma: float = 1.6

    @property
    def mean(self) -> float:
        return self.median_life * math.exp(self.sigma**2 / 2)


@dataclass
class Population:
    """Every flow of a run, sorted by start time (numpy arrays, one element per flow)."""

    src: np.ndarray  # uint32 client address
    src_port: np.ndarray  # uint16
    slot: np.ndarray  # int32: flow_hash(flow_key) % table_size
    router_hash: np.ndarray  # uint32
    start: np.ndarray  # float64 seconds (< 0: open at time 0)
    end: np.ndarray  # float64

    def __len__(self) -> int:
        return len(self.start)

    def flow(self, index: int, syn: bool) -> Flow:
        """The flow's packet as the real balancer sees it (exact engine)."""
        flags = 0x02 if syn else 0x10
        source = int(self.src[index]).to_bytes(4, "big")
        return Flow(4, source, VIP_ADDRESS, PROTO_TCP, int(self.src_port[index]), VIP_PORT, flags)


def flow_keys(src: np.ndarray, src_port: np.ndarray) -> list[bytes]:
    """Each flow's flow-table key, as a gateway makes it from the packet."""
    return [
        flow_key(
            Flow(4, int(s).to_bytes(4, "big"), VIP_ADDRESS, PROTO_TCP, int(p), VIP_PORT),
            HASH_5TUPLE,
        )
        for s, p in zip(src.tolist(), src_port.tolist(), strict=True)
    ]


def generate(
    concurrent: int,
    horizon: float,
    table_size: int,
    seed: int,
    lifetimes: Lifetimes = Lifetimes(),  # noqa: B008 (frozen)
) -> Population:
    """``concurrent`` connections open at time 0 plus the arrivals of ``horizon`` seconds."""
    rng = np.random.default_rng(seed)
    mu, sigma = math.log(lifetimes.median_life), lifetimes.sigma
    open_length = rng.lognormal(mu + sigma**2, sigma, concurrent)
    open_start = -rng.uniform(0.0, 1.0, concurrent) * open_length
    arrivals = rng.poisson(concurrent / lifetimes.mean * horizon)
    new_start = np.sort(rng.uniform(0.0, horizon, arrivals))
    new_length = rng.lognormal(mu, sigma, arrivals)
    start = np.concatenate([np.sort(open_start), new_start])
    order = np.argsort(open_start)
    length = np.concatenate([open_length[order], new_length])
    count = len(start)
    src = rng.integers(0x0A000000, 0x0B000000, count, dtype=np.uint32)  # 10.0.0.0/8
    src_port = rng.integers(1024, 65536, count, dtype=np.uint32).astype(np.uint16)
    keys = flow_keys(src, src_port)
    slot = np.fromiter((flow_hash(key) % table_size for key in keys), np.int32, count)
    router = np.fromiter(
        (mmh3.hash(key, ROUTER_SEED, signed=False) for key in keys), np.uint32, count
    )
    return Population(src, src_port, slot, router, start, start + length)
