"""How evenly masked bits of the 5-tuple spread real clients over backends (issue 14).

For each client distribution, slot bits choice, table size ``2**k`` and backend count, the
load of the most and the least loaded backend relative to the ideal (connections / backends),
next to today's placement (mmh3 of the 5-tuple over a 65,537-slot Maglev table) on the same
connections, which shows the sampling noise any placement has on that many connections.

    PYTHONPATH=$PWD python -m bench.switchmode_balance [--seed 1] [--ks 4,6,8,10,12]
"""

from __future__ import annotations

import argparse
import functools
import ipaddress
import random
from collections import Counter
from collections.abc import Callable

from bench.switchslots import SlotBits, build_pow2_table
from ryu_app.core.flowkey import Flow, flow_hash, hash_key
from ryu_app.core.maglev import build_table

VIP = int(ipaddress.ip_address("10.0.0.100"))
LINUX_PORTS = (32768, 60999)  # net.ipv4.ip_local_port_range's default
WINDOWS_PORTS = (49152, 65535)
Conn = tuple[int, int]  # (source address, source port)


def _linux_client(rng: random.Random, address: int, count: int) -> list[Conn]:
    """Linux >= 4.6 connect(): a per-destination starting point, then even ports upward (the
    kernel tries even ports first for connect), wrapping in the ephemeral range."""
    low, high = LINUX_PORTS
    span = (high - low + 1) // 2
    start = rng.randrange(span)
    return [(address, low + 2 * ((start + i) % span)) for i in range(count)]


def _clients(rng: random.Random, clients: int, per_client: int) -> list[Conn]:
    base = int(ipaddress.ip_address("100.64.0.0"))
    addresses = rng.sample(range(base, base + 2**20), clients)
    return [conn for a in addresses for conn in _linux_client(rng, a, per_client)]


def linux_many(rng):
    return _clients(rng, 3000, 20)


def linux_few(rng):
    return _clients(rng, 3, 20000)


def linux_one(rng):
    return _clients(rng, 1, 2000)


def random_ports(rng):
    base = int(ipaddress.ip_address("100.64.0.0"))
    return [(base + rng.randrange(2**16), rng.randint(*LINUX_PORTS)) for _ in range(60000)]


def nat_random(rng):
    """A carrier NAT with 4 public addresses and random port allocation (--random-fully)."""
    pool = [int(ipaddress.ip_address(f"198.51.100.{i}")) for i in range(1, 5)]
    return [(rng.choice(pool), rng.randint(1024, 65535)) for _ in range(60000)]


def nat_preserving(rng):
    """A NAT with 4 public addresses that keeps the inner Linux clients' (even) ports."""
    pool = [int(ipaddress.ip_address(f"198.51.100.{i}")) for i in range(1, 5)]
    return [(rng.choice(pool), port) for _, port in _clients(rng, 3000, 20)]


def windows_many(rng):
    """Windows: one global counter, step 1, 49152-65535, shared by all destinations."""
    base = int(ipaddress.ip_address("100.64.0.0"))
    low, high = WINDOWS_PORTS
    conns = []
    for client in range(600):
        start = rng.randrange(high - low + 1)
        conns += [(base + client, low + (start + i) % (high - low + 1)) for i in range(100)]
    return conns


SCENARIOS: dict[str, Callable[[random.Random], list[Conn]]] = {
    "linux, 3000 clients x 20": linux_many,
    "linux, 3 clients x 20000": linux_few,
    "linux, 1 client x 2000": linux_one,
    "random ports, 60000": random_ports,
    "NAT 4 IPs, random ports": nat_random,
    "NAT 4 IPs, kept linux ports": nat_preserving,
    "windows, 600 clients x 100": windows_many,
}


def choices(k: int) -> dict[str, SlotBits]:
    """The bit selections compared at width ``k``."""
    return {
        "port[1:]": SlotBits(k, 1),
        "port[0:]": SlotBits(k, 0),
        "ip": SlotBits(0, 0, k),
        "ip2+port[1:]": SlotBits(k - 2, 1, 2),
    }


def slot_counts(conns: list[Conn], bits: SlotBits) -> Counter:
    port_mask, ip_mask = (1 << bits.port_bits) - 1, (1 << bits.ip_bits) - 1
    shift, width = bits.port_shift, bits.port_bits
    return Counter((ip & ip_mask) << width | (port >> shift) & port_mask for ip, port in conns)


def spread(loads: list[int], total: int) -> tuple[float, float]:
    """(max, min) load relative to the ideal share."""
    ideal = total / len(loads)
    return max(loads) / ideal, min(loads) / ideal


def backends(n: int) -> list[tuple[str, int]]:
    return [(f"vm{i:03d}", 1) for i in range(n)]


def bits_spread(conns: list[Conn], bits: SlotBits, table: tuple, n: int) -> tuple[float, float]:
    """(max, min) load over all ``n`` backends, those that own no slot included."""
    loads = Counter({name: 0 for name, _ in backends(n)})
    for slot, count in slot_counts(conns, bits).items():
        loads[table[slot]] += count
    return spread(list(loads.values()), len(conns))


@functools.lru_cache(maxsize=8)
def _hash_table(n: int):
    return build_table(backends(n), 65537)


def hash_spread(conns: list[Conn], n: int) -> tuple[float, float]:
    """Today's placement on the same connections: mmh3 of the 5-tuple, 65,537 slots."""
    table = _hash_table(n)
    loads = Counter({name: 0 for name in table.names})
    vip = VIP.to_bytes(4, "big")
    for ip, port in conns:
        flow = Flow(4, ip.to_bytes(4, "big"), vip, 6, port, 80)
        loads[table.lookup(flow_hash(hash_key(flow, "5-tuple")))] += 1
    return spread(list(loads.values()), len(conns))


def cell(pair: tuple[float, float]) -> str:
    return f"{pair[0]:.2f} / {pair[1]:.2f}"


def report(seed: int, ks: list[int], ns: list[int]) -> str:
    """One markdown table per scenario: rows (bits, backends), columns k; cells max/min."""
    tables = {(n, k): build_pow2_table(backends(n), k) for n in ns for k in ks}
    out = []
    for scenario, make in SCENARIOS.items():
        conns = make(random.Random(seed))
        hashed = {n: cell(hash_spread(conns, n)) for n in ns}
        out.append(f"\n#### {scenario} ({len(conns)} connections)\n")
        out.append("| bits | backends | " + " | ".join(f"k={k}" for k in ks) + " | 5-tuple hash |")
        out.append("| --- | ---: |" + " ---: |" * (len(ks) + 1))
        for label in choices(ks[0]):
            for n in ns:
                cells = [cell(bits_spread(conns, choices(k)[label], tables[n, k], n)) for k in ks]
                cells.append(hashed[n])
                out.append(f"| {label} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--ks", default="4,6,8,10,12")
    parser.add_argument("--backends", default="3,10,100")
    args = parser.parse_args(argv)
    ks = [int(k) for k in args.ks.split(",")]
    print(report(args.seed, ks, [int(n) for n in args.backends.split(",")]))


if __name__ == "__main__":
    main()
