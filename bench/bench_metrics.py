"""Scrape-cost benchmark: what one ``GET /metrics`` costs a gateway of many VIPs and backends.

Run:  .venv/bin/python bench/bench_metrics.py [--vips 100] [--backends 100] [--repeat 50]

A gateway core with ``--vips`` VIPs of ``--backends`` backends each (``bench/rebuild_setup.py``'s
deployment: one ``lockstep_backend_up`` series per backend of each VIP), every table built, a
few backends down, a flow table of ``--flows`` entries.  A scrape costs in two places
(``ryu_app/api/metricsview.py``), both measured:

- the snapshot, on the controller's event loop: while it runs no packet-in is handled;
- the render to Prometheus text, on a REST thread: it holds the interpreter the packet path
  needs too, so its CPU time is what a scrape costs new flows indirectly.  The first render
  (nothing remembered yet) and the following ones (median) are given apart, and the whole
  request through the REST API in-process (``Request.blank``: routing, webob, the text).

The last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from webob import Request  # noqa: E402

from bench import rebuild_setup  # noqa: E402
from ryu_app.api import metricsview, views  # noqa: E402
from ryu_app.api.rest import RestApi  # noqa: E402
from ryu_app.api.service import GatewayService  # noqa: E402
from ryu_app.core.balancer import TableCache  # noqa: E402
from ryu_app.core.gateway import GatewayCore  # noqa: E402
from topology.deployment import parse  # noqa: E402

TABLE_SIZE = 251  # the scrape does not read the tables: small ones build in no time


def gateway_core(vips: int, backends: int, flows: int) -> tuple[GatewayCore, object]:
    """A core of ``vips`` x ``backends`` with its tables in, every tenth backend down, and
    ``flows`` flow-table entries (their count is a gauge; the entries are not read)."""
    plan = rebuild_setup.RebuildPlan(vips=vips, backends=backends)
    data = rebuild_setup.deployment(plan, 6653, 8080, Path("/tmp"))
    for vip in data["vips"]:
        vip["table_size"] = TABLE_SIZE
    deployment = parse(data)
    gateway = deployment.gateways[0]
    core = GatewayCore(gateway)
    core.balancer.cache = TableCache()
    core.balancer.rebuild_now(core.set_vips(list(deployment.vips), 0.0).tables)
    for vip in deployment.vips:
        for backend in vip.backends[::10]:
            core.balancer.rebuild_now(core.balancer.set_health(vip.name, backend.name, False))
    for index in range(flows):
        core.balancer.flows.put(index.to_bytes(13, "big"), 1, 0.0, 60)
    return core, deployment


def median_ms(function, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def bench(vips: int, backends: int, flows: int, repeat: int) -> dict:
    core, deployment = gateway_core(vips, backends, flows)
    service = GatewayService(
        core, deployment, deployment.gateways[0], apply=lambda _: None, save=lambda _: None
    )
    api = RestApi(service)
    gc.collect()
    snapshot = metricsview.metrics_snapshot(core)
    cache = views.RenderCache()
    start = time.perf_counter()
    text = metricsview.render_metrics(snapshot, 0, cache)
    first_ms = (time.perf_counter() - start) * 1000
    response = Request.blank("/metrics").get_response(api)
    assert response.status_int == 200, response.text
    return {
        "vips": vips,
        "backends_per_vip": backends,
        "flow_entries": flows,
        "series": sum(1 for line in text.splitlines() if not line.startswith("#")),
        "bytes": len(text.encode()),
        "snapshot_ms": round(median_ms(lambda: metricsview.metrics_snapshot(core), repeat), 3),
        "render_first_ms": round(first_ms, 3),
        "render_ms": round(
            median_ms(lambda: metricsview.render_metrics(snapshot, 0, cache), repeat), 3
        ),
        "request_ms": round(
            median_ms(lambda: Request.blank("/metrics").get_response(api), repeat), 3
        ),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vips", type=int, default=100)
    parser.add_argument("--backends", type=int, default=100)
    parser.add_argument("--flows", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args(argv)
    figures = bench(args.vips, args.backends, args.flows, args.repeat)
    figures["python"] = platform.python_version()
    print(
        f"GET /metrics, {figures['vips']} VIPs x {figures['backends_per_vip']} backends: "
        f"{figures['series']:,} series, {figures['bytes']:,} bytes\n"
        f"  snapshot on the event loop   {figures['snapshot_ms']:8.3f} ms (median)\n"
        f"  render, first (cold caches)  {figures['render_first_ms']:8.3f} ms\n"
        f"  render, following            {figures['render_ms']:8.3f} ms (median)\n"
        f"  whole request in-process     {figures['request_ms']:8.3f} ms (median)"
    )
    print(json.dumps(figures, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
