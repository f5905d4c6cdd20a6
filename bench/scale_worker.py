"""bench_scale's in-process parts, run once per revision: ``PYTHONPATH=<tree> python
bench/scale_worker.py PART --vips N --backends M``; prints one JSON object.

It imports the revision's own code (``ryu_app``, ``topology``) and, from beside this file, the
working tree's ``scale_setup``: the same deployment on both sides.

- ``rebuild``: a GatewayCore with every VIP's table in; a steady load of new flows through its
  packet path (``balancer.pick`` under the core's lock, open loop, on a thread of its own as the
  switch's receiving thread is, at the interpreter switch interval the revision's app sets);
  then ``DEAD`` fails in every VIP (``set_health``, the health
  check's verdict) and the tables asked for are built the way the revision's app builds them
  (its ``TableBuilder``: one spawned process, one table at a time; or ``build_many`` where the
  revision has it) and installed on another thread (the event loop's: ``table_built`` under the
  lock).  Figures: from the verdicts to every table in, and the packet path's latency
  (scheduled time -> handled) meanwhile.  In controller mode an installed table sends nothing to
  the switch (flows follow it at their next packet-in), so there are no flow-mods to count.
- ``probes``: the revision's Prober over ``vips`` x ``backends``, due() every 20 ms (the app's
  health tick) for one interval after start-up: probes sent per tick.
- ``statefile``: the revision's ``statefile.write`` of every VIP: time and size, first and
  again (the same Vip objects: what one REST change costs where the writer keeps its work).
"""

from __future__ import annotations

import argparse
import inspect
import json
import queue
import sys
import tempfile
import threading
import time
from pathlib import Path

import scale_setup as setup

from ryu_app.api import statefile as state_file
from ryu_app.core import maglev
from ryu_app.core.flowkey import Flow
from ryu_app.core.gateway import GatewayCore
from ryu_app.core.prober import Prober
from ryu_app.shell import builder
from topology import deployment as deployment_file

TICK = 0.02
PACKET_RATE = 1000.0  # new flows/s through the packet path during the rebuild
SETTLE_SECONDS = 0.5  # load before the failure


def table_built(core, request, table) -> None:
    """``core.table_built`` of either revision: since issue 16 it takes ``now`` (the time the
    table is swapped in, for second chance's history)."""
    if "now" in inspect.signature(core.table_built).parameters:
        core.table_built(request, table, time.monotonic())
    else:
        core.table_built(request, table)


def parsed(vips: int, backends: int):
    data = setup.deployment(vips, backends, "127.0.0.1:6653", "127.0.0.1:8080", "/tmp/x.json")
    return deployment_file.parse(data)


def new_core(deployment):
    getattr(maglev, "warm_up", lambda: None)()  # set-up only: the compiled fill where there is one
    core = GatewayCore(deployment.gateways[0])
    started = core.set_vips(list(deployment.vips), time.monotonic())
    core.balancer.rebuild_now(started.tables)
    return core


class PacketLoad(threading.Thread):
    """New flows at ``rate``/s, open loop: latency is from when each was due to when it was
    handled, so a stall counts for every flow that waited behind it."""

    def __init__(self, core, lock, vips: int, rate: float):
        super().__init__(daemon=True)
        self.core, self.lock, self.rate = core, lock, rate
        self.addresses = [
            bytes(int(p) for p in setup.vip_address(i).split(".")) for i in range(vips)
        ]
        self.samples: list[tuple[float, float]] = []  # (due, latency)
        self.stop_event = threading.Event()

    def run(self) -> None:
        start, number = time.perf_counter(), 0
        while not self.stop_event.is_set():
            due = start + number / self.rate
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            src = (0x0B000000 + number).to_bytes(4, "big")
            dst = self.addresses[number % len(self.addresses)]
            flow = Flow(4, src, dst, 6, 1024 + number % 60000, setup.SERVICE_PORT, 0x02)
            with self.lock:
                self.core.balancer.pick(flow, time.monotonic())
            self.samples.append((due, time.perf_counter() - due))
            number += 1

    def latencies_ms(self, start: float, end: float) -> list[float]:
        return sorted(1e3 * lat for due, lat in self.samples if start <= due <= end)


def build_all(table_builder, requests, deliver) -> None:
    """Build ``requests`` as the revision's app does: ``build_many`` (several processes, newest
    first) where the builder has it, else one table at a time through ``build``."""
    if hasattr(table_builder, "build_many"):
        table_builder.build_many(list(reversed(requests)), deliver)
        return
    for request in requests:
        try:
            deliver(request, table_builder.build(request.spec), None)
        except Exception as error:  # noqa: BLE001
            deliver(request, None, error)


def switch_interval() -> float:
    """The interpreter's switch interval the revision's app sets under os-ken's native hub
    (``app.SWITCH_INTERVAL``: a thread waits this long at most for another to let go), else
    Python's default."""
    try:
        from ryu_app.shell import app  # noqa: PLC0415 - imports os-ken: only here
    except ImportError:
        return sys.getswitchinterval()
    return getattr(app, "SWITCH_INTERVAL", sys.getswitchinterval())


def rebuild(vips: int, backends: int) -> dict:
    sys.setswitchinterval(switch_interval())
    core = new_core(parsed(vips, backends))
    lock = threading.Lock()
    table_builder = builder.TableBuilder()
    table_builder.start()
    time.sleep(2.0)  # the worker(s) load the compiled fill
    load = PacketLoad(core, lock, vips, PACKET_RATE)
    load.start()
    time.sleep(SETTLE_SECONDS)
    installs: queue.Queue = queue.Queue()
    failed_at = time.perf_counter()
    requests = []
    for index in range(vips):  # one verdict at a time, as probe answers come
        with lock:
            effects = core.set_health(f"vip{index + 1}", setup.DEAD, False, time.monotonic())
        requests += effects.tables
    with lock:
        requests = core.wanted_tables(requests)
    verdicts_s = time.perf_counter() - failed_at
    builds = threading.Thread(
        target=build_all,
        args=(table_builder, requests, lambda r, t, e: installs.put((r, t, e))),
        daemon=True,
    )
    builds.start()
    installed = errors = 0
    while installed + errors < len(requests):
        request, table, error = installs.get(timeout=120)
        with lock:
            if error is None:
                table_built(core, request, table)
                installed += 1
            else:
                errors += 1
    done_at = time.perf_counter()
    time.sleep(0.2)
    load.stop_event.set()
    load.join()
    table_builder.close()
    during = load.latencies_ms(failed_at, done_at)
    before = load.latencies_ms(0, failed_at)
    current = sum(state.table_current for state in core.balancer.vips.values())
    return {
        "tables": len(requests),
        "installed": installed,
        "errors": errors,
        "current_after": current,
        "verdicts_s": verdicts_s,
        "rebuild_s": done_at - failed_at,
        "packet_rate": PACKET_RATE,
        "p99_ms_during": setup.percentile(during, 0.99),
        "max_ms_during": during[-1] if during else None,
        "p99_ms_before": setup.percentile(before, 0.99),
        "packets_during": len(during),
        "builder_processes": getattr(table_builder, "workers", 1),
        "switch_interval_ms": 1e3 * sys.getswitchinterval(),
    }


def probes(vips: int, backends: int) -> dict:
    deployment = parsed(vips, backends)
    prober = Prober([bytes([10, 255, 255, 1])], bytes(6))
    now = 1000.0
    for vip in deployment.vips:
        prober.set_vip(vip, {b.name for b in vip.backends}, now)
    interval = deployment.vips[0].health.interval
    send_times = []
    tick = now
    while tick < now + interval:
        tick += TICK
        send_times += [tick] * len(prober.due(tick))
        prober.expire(tick)
    counts = setup.tick_counts(send_times, now, now + interval, TICK)
    return {"probes": len(send_times), "interval": interval, **setup.burstiness(counts)}


def statefile(vips: int, backends: int) -> dict:
    deployment = parsed(vips, backends)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "state.json"
        times = []
        for _ in range(3):
            started = time.perf_counter()
            state_file.write(path, list(deployment.vips))
            times.append(time.perf_counter() - started)
        size = path.stat().st_size
    # The first write of these Vip objects, then rewrites of the same ones (what a REST change
    # of one VIP costs where the writer keeps what it wrote).
    return {"write_s": times[0], "rewrite_s": min(times[1:]), "bytes": size}


PARTS = {"rebuild": rebuild, "probes": probes, "statefile": statefile}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("part", choices=tuple(PARTS))
    parser.add_argument("--vips", type=int, default=1000)
    parser.add_argument("--backends", type=int, default=100)
    args = parser.parse_args()
    print(json.dumps(PARTS[args.part](args.vips, args.backends)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
