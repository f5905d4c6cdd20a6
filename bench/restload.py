"""The REST-load phase: does a client looping on the heaviest REST calls slow new flows?

Issue 11, finding 3: ``GET /v1/flows?offset=999000`` with a million flows held the core for
~190 ms, and one client asking for it in a loop cut new flows from 71k/s to 2.5k/s and raised
the packet-in p99 from 0.7 ms to 226 ms.  Here a client in a process of its own (so that it
takes no time from the fake switch) asks, one request after another and as fast as the
controller answers, in turn:

- ``GET /v1/flows?offset=<the last page>&limit=1000`` and the next page of a cursor walk
  (``next_cursor``, started at that depth);
- ``GET /v1/status``, ``GET /v1/health``, ``GET /metrics``;
- ``PATCH`` of one backend's weight (1 <-> 2) and ``PUT`` of the whole VIP (the other
  weights): each a change that needs a new Maglev table.

``bench_newflow`` measures the sustained rate and the latency phase again with this client
running and puts the figures side by side with those measured without it.  Run alone, this
module is the client: ``python bench/restload.py PORT`` loops until SIGTERM, then prints one
JSON line: requests, errors and latency (ms) per kind of request.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VIP = "web"
PAGE = 1000
REQUEST_TIMEOUT = 30.0
QUIET_CORES = 0.3  # a round is quiet if other processes kept at most this many cores busy
READY_TIMEOUT = 20.0


# ---- the client (its own process) -----------------------------------------------------------


class Client:
    """One request at a time to a controller on 127.0.0.1, timed, bodies read whole."""

    def __init__(self, port: int):
        self.base = f"http://127.0.0.1:{port}"
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self.seconds: dict[str, list[float]] = {}
        self.statuses: dict[str, dict[int, int]] = {}

    def call(self, kind: str, method: str, path: str, body=None) -> bytes:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        started = time.perf_counter()
        try:
            with self.opener.open(request, timeout=REQUEST_TIMEOUT) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        self.seconds.setdefault(kind, []).append(time.perf_counter() - started)
        counts = self.statuses.setdefault(kind, {})
        counts[status] = counts.get(status, 0) + 1
        return raw

    def summary(self) -> dict:
        kinds = {}
        for kind, seconds in self.seconds.items():
            ordered = sorted(seconds)
            kinds[kind] = {
                "requests": len(ordered),
                "statuses": {str(s): n for s, n in sorted(self.statuses[kind].items())},
                "p50_ms": round(nearest_rank(ordered, 0.5) * 1e3, 2),
                "p99_ms": round(nearest_rank(ordered, 0.99) * 1e3, 2),
                "max_ms": round(ordered[-1] * 1e3, 2),
            }
        return kinds


def nearest_rank(ordered: list[float], fraction: float) -> float:
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def loop(port: int, stop) -> dict:
    """Ask in turn until ``stop()``; returns the summary."""
    client = Client(port)
    vip = json.loads(client.call("vip", "GET", f"/v1/vips/{VIP}"))
    backend = vip["backends"][0]["name"]
    weight = 1
    cursor = None
    print("ready", flush=True)
    while not stop():
        count = json.loads(client.call("flows_count", "GET", "/v1/flows?limit=1"))["count"]
        deepest = max(0, count - PAGE)
        client.call("flows_deepest_offset", "GET", f"/v1/flows?offset={deepest}&limit={PAGE}")
        page = json.loads(
            client.call(
                "flows_cursor",
                "GET",
                f"/v1/flows?limit={PAGE}&cursor={cursor}"
                if cursor
                else f"/v1/flows?limit={PAGE}&offset={count // 2}",
            )
        )
        cursor = page.get("next_cursor")  # (None from a controller without cursors)
        client.call("status", "GET", "/v1/status")
        client.call("health", "GET", "/v1/health")
        client.call("metrics", "GET", "/metrics")
        weight = 3 - weight
        path = f"/v1/vips/{VIP}/backends/{backend}"
        client.call("patch_weight", "PATCH", path, {"weight": weight})
        others = [{**b, "weight": 3 - b.get("weight", 1)} for b in vip["backends"][1:]]
        vip = {**vip, "backends": [{**vip["backends"][0], "weight": weight}, *others]}
        client.call("put_vip", "PUT", f"/v1/vips/{VIP}", vip)
    return client.summary()


def main() -> int:
    port = int(sys.argv[1])
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    summary = loop(port, lambda: bool(stopping))
    print(json.dumps(summary), flush=True)
    return 0


# ---- driving it from the benchmark ----------------------------------------------------------


class RestLoad:
    """The client as a subprocess: ``start`` returns once its first request was answered,
    ``stop`` ends it and returns its summary."""

    def __init__(self, port: int):
        self.port = port
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), str(self.port)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        line = self.process.stdout.readline()  # "ready" (the client's first answer came)
        if line.strip() != "ready":
            self.stop()
            raise RuntimeError(f"the REST client did not start: {line!r}")

    def stop(self) -> dict:
        process, self.process = self.process, None
        if process is None:
            return {}
        process.terminate()
        try:
            out, _ = process.communicate(timeout=READY_TIMEOUT + REQUEST_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            return {}
        lines = [line for line in out.splitlines() if line.startswith("{")]
        return json.loads(lines[-1]) if lines else {}


def phases(switch, rest_port: int, args, rate: float, cpu_clocks, without) -> dict:
    """Both phases again (the latency phase at ``rate``) while the client loops; then
    ``args.rest_rounds - 1`` more rounds of the latency phase without the client and with it.
    ``without`` is the latency phase just measured without it (the first round's)."""

    def latency(what: str):
        result = switch.run(
            rate=rate, warmup=args.warmup, duration=args.duration, cpu_clocks=cpu_clocks
        )
        p50, p99 = result.percentile_ms(0.5) or 0, result.percentile_ms(0.99) or 0
        print(f"    latency at {rate:,.0f}/s{what}: p50 {p50:.2f} ms, p99 {p99:.2f} ms", flush=True)
        return result

    def with_client(measure):
        load = RestLoad(rest_port)
        load.start()
        started = time.monotonic()
        try:
            result = measure()
        finally:
            client = load.stop()
        return result, client, time.monotonic() - started

    def first():
        sustained = switch.run(
            window=args.window, warmup=args.warmup, duration=args.duration, cpu_clocks=cpu_clocks
        )
        print(f"    sustained (REST loop): {sustained.flows_per_s:,.0f} new flows/s", flush=True)
        return sustained, latency(" (REST loop)")

    (sustained, under), client, seconds = with_client(first)
    rounds = [(without, under)]
    for number in range(2, args.rest_rounds + 1):
        alone = latency(f" (round {number}, no REST)")
        under, _, _ = with_client(lambda number=number: latency(f" (round {number}, REST loop)"))
        rounds.append((alone, under))
    return {
        "sustained": sustained,
        "latency": rounds[0][1],
        "client": client,
        "seconds": seconds,
        "rounds": rounds,
    }


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def quiet_rounds(rounds: list) -> list:
    """The rounds in which other processes kept at most ``QUIET_CORES`` busy, both halves."""
    return [pair for pair in rounds if max(p.other_cpu for p in pair) <= QUIET_CORES]


def round_medians(rounds: list) -> dict:
    """The median over ``rounds`` of p50 and p99, without and with the client (ms)."""
    figures = {}
    for side, index in (("without", 0), ("with", 1)):
        for name, fraction in (("p50", 0.5), ("p99", 0.99)):
            values = [pair[index].percentile_ms(fraction) or 0.0 for pair in rounds]
            figures[f"{side}_{name}_ms"] = round(median(values), 3)
    return figures


def requests_per_s(summary: dict, seconds: float) -> float:
    return sum(kind["requests"] for kind in summary.values()) / seconds if seconds else 0.0


def print_side_by_side(name: str, result: dict) -> None:
    """New flows with and without the REST client, then what the client saw."""
    rest = result.get("rest_load")
    if not rest:
        return
    rows = [("without", result["sustained"], result["latency"])]
    rows.append(("with the REST loop", rest["sustained"], rest["latency"]))
    print(f"REST load ({name}): a client looping on the heaviest reads and writes")
    heading = f"{'new flows/s':>11s} {'latency at':>11s} {'p50':>10s} {'p99':>10s} {'max':>10s}"
    print(f"  {'':20s} {heading}")
    for title, sustained, latency in rows:
        p50, p99 = latency.percentile_ms(0.5), latency.percentile_ms(0.99)
        worst = latency.latencies_ms[-1] if latency.latencies_ms else None
        print(
            f"  {title:20s} {sustained.flows_per_s:11,.0f} {latency.offered_per_s:9,.0f}/s "
            f"{_ms(p50)} {_ms(p99)} {_ms(worst)}"
        )
    if len(rest["rounds"]) > 1:
        print(f"  {len(rest['rounds'])} rounds, latency p50 / p99 without and with the client:")
        for number, (alone, under) in enumerate(rest["rounds"], 1):
            print(f"    {f'round {number}':9s} {_pair(alone)}   {_pair(under)}")
        quiet = quiet_rounds(rest["rounds"])
        for title, rounds in (("median", rest["rounds"]), (f"quiet ({len(quiet)})", quiet)):
            if rounds:
                medians = round_medians(rounds)
                without = f"{_ms(medians['without_p50_ms'])} / {_ms(medians['without_p99_ms'])}"
                under = f"{_ms(medians['with_p50_ms'])} / {_ms(medians['with_p99_ms'])}"
                print(f"    {title:9s} {without}                 {under}")
    summary = rest["client"]
    print(
        f"  the client: {requests_per_s(summary, rest['seconds']):,.0f} requests/s over "
        f"{rest['seconds']:.1f} s"
    )
    for kind, figures in summary.items():
        print(
            f"    {kind:22s} {figures['requests']:6d} x  p50 {figures['p50_ms']:8.2f} ms  "
            f"p99 {figures['p99_ms']:8.2f} ms  max {figures['max_ms']:8.2f} ms  "
            f"statuses {figures['statuses']}"
        )


def _pair(latency) -> str:
    """p50 / p99, and the cores other processes kept busy meanwhile (noise)."""
    p50, p99 = _ms(latency.percentile_ms(0.5)), _ms(latency.percentile_ms(0.99))
    return f"{p50} / {p99} (others {latency.other_cpu:.1f})"


def _ms(value: float | None) -> str:
    return f"{value:7.2f} ms" if value is not None else "      - ms"


def summarise(name: str, result: dict) -> dict:
    rest = result.get("rest_load")
    if not rest:
        return {}
    latency = rest["latency"]
    summary = {
        "rest_load_flows_per_s": round(rest["sustained"].flows_per_s),
        "rest_load_p50_ms": round(latency.percentile_ms(0.5) or 0, 3),
        "rest_load_p99_ms": round(latency.percentile_ms(0.99) or 0, 3),
        "rest_load_max_ms": round(latency.latencies_ms[-1] if latency.latencies_ms else 0, 3),
        "rest_load_incomplete": rest["sustained"].incomplete + latency.incomplete,
        "rest_load_requests_per_s": round(requests_per_s(rest["client"], rest["seconds"]), 1),
        "rest_load_errors": sum(
            n
            for kind in rest["client"].values()
            for status, n in kind["statuses"].items()
            if not status.startswith("2")
        ),
    }
    if len(rest["rounds"]) > 1:
        summary["rest_rounds"] = len(rest["rounds"])
        summary.update({f"rest_rounds_{k}": v for k, v in round_medians(rest["rounds"]).items()})
        quiet = quiet_rounds(rest["rounds"])
        summary["rest_quiet_rounds"] = len(quiet)
        if quiet:
            summary.update({f"rest_quiet_{k}": v for k, v in round_medians(quiet).items()})
    return {f"{name}_{key}": value for key, value in summary.items()}


if __name__ == "__main__":
    sys.exit(main())
