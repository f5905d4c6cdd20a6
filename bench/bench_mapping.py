"""Mapping benchmark: Maglev build time, lookups per second, flow-table bytes per entry.

Builds are timed through ``build_table`` (the compiled fill, loaded first), beside the compiled
loop alone, today's plain-Python loop and the reference; what loading the compiled fill costs a
fresh process (numba's first compile, then from its cache) is printed before them.

Run:  .venv/bin/python bench/bench_mapping.py [--quick]

Each figure is printed beside a plain pure-Python reference measured in the same process:
``ryu_app.core.maglev_reference`` (the paper's pseudocode) for builds and lookups, and a
straightforward dict of tuples for the flow table.  The last line is one JSON object with every
figure, for scripts and for the README.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import mmh3  # noqa: E402

from ryu_app.cli.commands import annotate  # noqa: E402
from ryu_app.core import maglev, maglev_numba  # noqa: E402
from ryu_app.core.flowkey import FLOW_SEED, flow_from_fields, flow_hash, flow_key  # noqa: E402
from ryu_app.core.flowtable import FlowTable  # noqa: E402
from ryu_app.core.maglev import (  # noqa: E402
    DEFAULT_TABLE_SIZE,
    _populate,
    backend_permutation,
    build_table,
    claim_schedule,
)
from ryu_app.core.maglev_reference import reference_table  # noqa: E402
from ryu_app.core.model import MAX_TABLE_SIZE  # noqa: E402

TARGET_BUILD_MS = 10.0  # 100 backends @ 65537, and >= TARGET_BUILD_SPEEDUP x the reference
TARGET_BUILD_SPEEDUP = 4.0
TARGET_BIG_BUILD_MS = 100.0  # 1000 backends @ 655373 (issue 15)
TARGET_LOOKUPS = 1_000_000
TARGET_BYTES_PER_ENTRY = 200


def timed(function, repeat):
    samples = []
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), min(samples)


BUILD_CASES = (
    (10, DEFAULT_TABLE_SIZE),
    (100, DEFAULT_TABLE_SIZE),
    (1000, DEFAULT_TABLE_SIZE),
    (100, MAX_TABLE_SIZE),
    (1000, MAX_TABLE_SIZE),
)


def fills(count: int, size: int):
    """Today's plain loop's and the compiled loop's population of one table, to time side by
    side (``build_table`` takes the compiled one once it is loaded: ``maglev.warm_up``)."""
    names = [f"vm{i}" for i in range(count)]
    permutations = [backend_permutation(name, size) for name in names]
    schedule = claim_schedule([1] * count)
    return (
        lambda: _populate(permutations, schedule, size),
        lambda: maglev_numba.populate(permutations, schedule, size),
    )


LOAD_SCRIPT = """
import sys, time
start = time.perf_counter()
from ryu_app.core import maglev
imported = time.perf_counter()
loaded = "numba" in sys.modules
print(maglev.warm_up(), loaded)
print(imported - start, time.perf_counter() - imported)
"""


def bench_compiled_load() -> dict:
    """What loading the compiled fill costs a fresh process: numba's first compile (an empty
    cache directory), then the same with the cache it wrote."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    results = {}
    with tempfile.TemporaryDirectory() as cache:
        environment = {**os.environ, "NUMBA_CACHE_DIR": cache, "PYTHONPATH": root}
        for label in ("first compile", "from the cache"):
            answer = subprocess.run(
                [sys.executable, "-c", LOAD_SCRIPT],
                env=environment,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split("\n")
            core_s, warm_up_s = (float(x) for x in answer[1].split())
            results[label] = {"import_core_ms": core_s * 1e3, "warm_up_ms": warm_up_s * 1e3}
            print(
                f"  compiled fill, {label}: importing the core {core_s * 1e3:.0f} ms"
                f" (numba imported by it: {answer[0].endswith('True')}),"
                f" warm_up {warm_up_s * 1e3:.0f} ms"
                f" -> {answer[0].rsplit(' ', 1)[0]}",
                flush=True,
            )
    return results


def bench_builds(quick: bool) -> dict:
    print(f"  table fill: {maglev.warm_up()}")
    results = {}
    for count, size in BUILD_CASES:
        big = size > DEFAULT_TABLE_SIZE
        repeat = 1 if quick else (3 if big else 9)
        backends = [(f"vm{i}", 1) for i in range(count)]
        median, best = timed(lambda b=backends, s=size: build_table(b, s), repeat)
        plain, compiled = fills(count, size)
        plain_median, plain_best = timed(plain, repeat)
        compiled_median, compiled_best = timed(compiled, 3 if quick else 9)
        ref_median, ref_best = timed(
            lambda b=dict(backends), s=size: reference_table(b, s), 1 if quick or big else 3
        )
        # At the default size keyed by count alone, as before (bench/before_after.py reads them).
        results[f"{count}@{size}" if big else str(count)] = {
            "ms": median * 1e3,
            "best_ms": best * 1e3,
            "plain_ms": plain_median * 1e3,
            "compiled_ms": compiled_median * 1e3,
            "reference_ms": ref_median * 1e3,
        }
        print(
            f"  build {count:5d} backends @ {size:6d}: {median * 1e3:6.2f} ms"
            f" (best {best * 1e3:.2f})"
            f"  [compiled loop {compiled_median * 1e3:.2f} / best {compiled_best * 1e3:.2f},"
            f" plain loop {plain_median * 1e3:.1f} / best {plain_best * 1e3:.1f}]"
            f"  reference {ref_median * 1e3:.1f} (best {ref_best * 1e3:.1f})"
            f"  x{ref_median / median:.1f}",
            flush=True,
        )
    return results


def random_keys(count: int, seed: int = 1) -> list[bytes]:
    rng = random.Random(seed)
    keys = []
    for _ in range(count):
        src = ".".join(str(rng.randint(1, 254)) for _ in range(4))
        flow = flow_from_fields(src, rng.randint(1024, 65535), "10.0.0.100", 80, "tcp")
        keys.append(flow_key(flow, "5-tuple"))
    return keys


def bench_lookups(quick: bool) -> dict:
    table = build_table([(f"vm{i}", 1) for i in range(100)])
    reference = reference_table({f"vm{i}": 1 for i in range(100)}, DEFAULT_TABLE_SIZE)
    keys = random_keys(100_000 if quick else 300_000)

    def ours():
        lookup, seed = table.lookup, FLOW_SEED
        for key in keys:
            lookup(mmh3.hash(key, seed, signed=False))

    def plain():
        for key in keys:
            reference[flow_hash(key) % DEFAULT_TABLE_SIZE]

    median, _ = timed(ours, 5)
    ref_median, _ = timed(plain, 5)
    rate, ref_rate = len(keys) / median, len(keys) / ref_median
    print(
        f"  lookups from a packed key: {rate / 1e6:5.2f} M/s   reference {ref_rate / 1e6:5.2f} M/s"
    )
    return {"per_s": rate, "reference_per_s": ref_rate}


def bench_flow_table(entries: int) -> dict:
    """Memory of the table alone, keys included: keys are made inside the traced region from
    values that already exist (as the packet-in path makes them from a parsed packet)."""
    rng = random.Random(2)
    fields = [(rng.getrandbits(32), rng.randint(1024, 65535)) for _ in range(entries)]
    head = bytes([6])

    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    table = FlowTable(capacity=entries)
    for index, (src, port) in enumerate(fields):
        key = head + port.to_bytes(2, "big") + b"\x00P" + src.to_bytes(4, "big") + b"\n\x00\x00d"
        table.put(key, index % 100, 1000.0 + index * 1e-6, 60)
    ours = (tracemalloc.get_traced_memory()[0] - base) / entries
    assert len(table) == entries
    del table
    gc.collect()

    base = tracemalloc.get_traced_memory()[0]
    plain: dict = {}
    for index, (src, port) in enumerate(fields):
        # What a first version would write: a tuple key and a (backend, last seen) tuple.
        plain[(6, src, port, "10.0.0.100", 80)] = (f"vm{index % 100}", 1000.0 + index)
    reference = (tracemalloc.get_traced_memory()[0] - base) / entries
    tracemalloc.stop()
    print(
        f"  flow table at {entries:,} entries: {ours:6.1f} bytes/entry   "
        f"reference (dict of tuples) {reference:6.1f} bytes/entry"
    )
    return {"entries": entries, "bytes_per_entry": ours, "reference_bytes_per_entry": reference}


def bench_cli(rows: int) -> dict:
    rng = random.Random(3)
    lines = [
        f"10.1.{rng.randint(0, 255)}.{rng.randint(1, 254)},{rng.randint(1024, 65535)},"
        "10.0.0.100,80,tcp\n"
        for _ in range(rows)
    ]
    table = build_table([(f"vm{i}", 1) for i in range(4)])
    start = time.perf_counter()
    annotate(lines, io.StringIO(), io.StringIO(), table, "5-tuple")
    seconds = time.perf_counter() - start
    print(f"  lockstep lookup: {rows:,} CSV rows in {seconds:.2f} s")
    return {"rows": rows, "seconds": seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, 100k-entry table")
    args = parser.parse_args()
    print(
        f"Lockstep mapping benchmark  (Python {platform.python_version()}, {os.cpu_count()} cores,"
        f" load average {os.getloadavg()[0]:.2f} at start: others' runs slow every figure)"
    )
    load = bench_compiled_load()
    builds = bench_builds(args.quick)
    lookups = bench_lookups(args.quick)
    flow_table = bench_flow_table(100_000 if args.quick else 1_000_000)
    cli = bench_cli(100_000)
    build_100 = builds["100"]
    build_big = builds[f"1000@{MAX_TABLE_SIZE}"]
    print("targets:")
    verdicts = [
        (f"build 100 backends <= {TARGET_BUILD_MS} ms", build_100["ms"] <= TARGET_BUILD_MS),
        (
            f"build 100 backends >= {TARGET_BUILD_SPEEDUP:.0f}x the reference",
            build_100["reference_ms"] >= TARGET_BUILD_SPEEDUP * build_100["ms"],
        ),
        (
            f"build 1000 backends @ {MAX_TABLE_SIZE} <= {TARGET_BIG_BUILD_MS:.0f} ms",
            build_big["ms"] <= TARGET_BIG_BUILD_MS,
        ),
        (f"lookups >= {TARGET_LOOKUPS:,}/s", lookups["per_s"] >= TARGET_LOOKUPS),
        (
            f"<= {TARGET_BYTES_PER_ENTRY} bytes per flow-table entry",
            flow_table["bytes_per_entry"] <= TARGET_BYTES_PER_ENTRY,
        ),
    ]
    for label, met in verdicts:
        print(f"  {label}: {'met' if met else 'NOT met'}")
    summary = {
        "python": platform.python_version(),
        "table_size": DEFAULT_TABLE_SIZE,
        "build_ms": {k: round(v["ms"], 2) for k, v in builds.items()},
        "build_plain_ms": {k: round(v["plain_ms"], 2) for k, v in builds.items()},
        "build_compiled_ms": {k: round(v["compiled_ms"], 2) for k, v in builds.items()},
        "compiled_load_ms": {
            k: round(v["import_core_ms"] + v["warm_up_ms"]) for k, v in load.items()
        },
        "build_reference_ms": {k: round(v["reference_ms"], 2) for k, v in builds.items()},
        "load_average": round(os.getloadavg()[0], 2),
        "lookups_per_s": round(lookups["per_s"]),
        "lookups_reference_per_s": round(lookups["reference_per_s"]),
        "flow_table_entries": flow_table["entries"],
        "bytes_per_entry": round(flow_table["bytes_per_entry"], 1),
        "bytes_per_entry_reference": round(flow_table["reference_bytes_per_entry"], 1),
        "cli_rows": cli["rows"],
        "cli_seconds": round(cli["seconds"], 2),
    }
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
