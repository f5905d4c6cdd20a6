"""REST latency under hostile connections: the gateway's HTTP server beside the one it replaced.

Run:  .venv/bin/python bench/bench_rest.py [--quick] [--nofile N]

Starts ``lockstep-gateway`` (no switch needed) twice on loopback: as it is (waitress,
``ryu_app/api/httpserver.py``), and with the REST server it had before issue 11 (wsgiref's
``simple_server`` with a thread per connection, listen backlog 5, no timeouts), kept here as
``OldServer`` and put in place of ``rest.make`` in the gateway's own process.  Against each, a
normal client loops on ``GET /v1/status``, one new connection per request as ``lockstep
status`` makes them, and its latency (connect to last byte) is measured while:

- ``idle``: 2,000 TCP connections are held open and say nothing;
- ``slowloris``: 500 connections send a request's headers a line every 2 s, never ending them;
- ``both``: the two at once;

and with nothing else (``baseline``).  A connection the server closes is opened again, so the
load stays what it says; what the server closed is counted.  Target (issue 11): p99 <= 100 ms
with the new server in each.  ``--nofile N`` starts the gateways with that descriptor limit
(soft and hard), e.g. 1024, so that the new server's cap (~N/2) is below the load and it must
close idle connections to make room.

Everything is bounded (a few seconds per scenario, at most ``MAX_REQUESTS`` requests) and stops
by itself; the gateways are killed and their files removed at the end.  The last line is one
JSON object with every figure.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import resource
import selectors
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import procs  # noqa: E402

TARGET_P99_MS = 100.0
IDLE_CONNECTIONS = 2000
SLOWLORIS_CONNECTIONS = 500
TRICKLE_SECONDS = 2.0  # a slowloris connection sends one header line this often
SCENARIOS = {  # name -> (idle connections, slowloris connections)
    "baseline": (0, 0),
    "idle": (IDLE_CONNECTIONS, 0),
    "slowloris": (0, SLOWLORIS_CONNECTIONS),
    "both": (IDLE_CONNECTIONS, SLOWLORIS_CONNECTIONS),
}
SERVERS = ("waitress", "wsgiref")
MAX_REQUESTS = 2000
REQUEST_TIMEOUT = 10.0
PAUSE_SECONDS = 0.005  # between two requests of the loop
CONNECT_BATCH = 16  # load connections opened per 10 ms (the old server's backlog is 5)
START_TIMEOUT = 30.0

# ---- the reference: the REST server before issue 11 (ryu_app/api/rest.py at 21edb5e) -------------


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass


class OldServer(socketserver.ThreadingMixIn, WSGIServer):
    """wsgiref with a thread per connection: listen backlog 5, no timeouts."""

    daemon_threads = True
    allow_reuse_address = True


def old_make(host: str, port: int, app, green: bool = False):
    return make_server(host, port, app, server_class=OldServer, handler_class=_QuietHandler)


def serve_old_gateway(argv: list[str]) -> int:
    """``lockstep-gateway`` with the old REST server (run in the gateway's process)."""
    from ryu_app.api import rest  # noqa: PLC0415
    from ryu_app.shell import launcher  # noqa: PLC0415 - the gateway's process only

    rest.make = old_make
    return launcher.main(argv)


# ---- the gateway ----------------------------------------------------------------------------


def deployment(openflow_port: int, rest_port: int, workdir: Path) -> dict:
    """One gateway, one VIP; health probes every hour (no switch: they go nowhere)."""
    return {
        "version": 1,
        "vips": [
            {
                "name": "web",
                "address": "10.0.0.100",
                "port": 80,
                "vni": 100,
                "health": {"type": "tcp", "interval": 3600, "timeout": 1, "rise": 1, "fall": 100},
                "backends": [
                    {"name": "vm1", "tunnel_ip": "192.168.100.11", "mac": "02:00:00:00:01:01"}
                ],
            }
        ],
        "gateways": [
            {
                "name": "gw1",
                "dpid": 1,
                "addresses": ["10.0.1.1"],
                "mac": "02:00:00:00:00:01",
                "uplink_port": "gw1-eth0",
                "tunnel_port": "gw1-vxlan",
                "tunnel_ip": "192.168.100.1",
                "openflow": f"127.0.0.1:{openflow_port}",
                "rest": f"127.0.0.1:{rest_port}",
                "state_file": str(workdir / "state.json"),
            }
        ],
    }


def start_gateway(server: str, workdir: Path, nofile: int | None) -> tuple[subprocess.Popen, int]:
    rest_port = procs.free_port()
    config = workdir / f"{server}.yaml"
    config.write_text(yaml.safe_dump(deployment(procs.free_port(), rest_port, workdir)))
    argv = ["--config", str(config), "--gateway", "gw1", "--log-level", "WARNING"]
    if server == "waitress":
        command = [sys.executable, "-m", "ryu_app", *argv]
    else:
        command = [sys.executable, str(Path(__file__).resolve()), "--old-server-gateway", *argv]
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))

    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    with (workdir / f"{server}.log").open("wb") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env={**os.environ, "PYTHONPATH": pythonpath},
            preexec_fn=limit if nofile else None,  # noqa: PLW1509 - setrlimit only, no locks
        )
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            procs.rest_get(rest_port, "/v1/status", timeout=1)
            return process, rest_port
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                procs.stop(process)
                log = procs.log_tail(workdir / f"{server}.log")
                raise RuntimeError(f"the {server} gateway did not start:{log}") from None
            time.sleep(0.1)


# ---- the load: idle and slowloris connections ------------------------------------------------


class Load:
    """Holds ``idle`` silent connections and ``slowloris`` ones that send a header line every
    ``TRICKLE_SECONDS`` and never end their request, on one thread with epoll; a connection the
    server closes is opened again (and counted)."""

    def __init__(self, port: int, idle: int, slowloris: int):
        self.port = port
        self.wanted = {"idle": idle, "slowloris": slowloris}
        self.open = {"idle": 0, "slowloris": 0}
        self.closed_by_server = 0
        self.selector = selectors.DefaultSelector()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.next_trickle: dict[socket.socket, float] = {}

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.thread.join(10)
        for key in list(self.selector.get_map().values()):
            key.fileobj.close()
        self.selector.close()

    def ready(self, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.open == self.wanted:
                return True
            time.sleep(0.05)
        return False

    def _connect(self, kind: str) -> None:
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", self.port))
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if kind == "slowloris" else 0)
        self.selector.register(sock, events, kind)
        self.open[kind] += 1

    def _drop(self, sock: socket.socket, kind: str) -> None:
        self.selector.unregister(sock)
        self.next_trickle.pop(sock, None)
        sock.close()
        self.open[kind] -= 1
        self.closed_by_server += 1

    def _run(self) -> None:
        while not self.stopping.is_set():
            opened = 0
            for kind, wanted in self.wanted.items():
                while self.open[kind] < wanted and opened < CONNECT_BATCH:
                    self._connect(kind)
                    opened += 1
            now = time.monotonic()
            for key, events in self.selector.select(timeout=0.01):
                sock, kind = key.fileobj, key.data
                if events & selectors.EVENT_READ:
                    try:
                        if sock.recv(4096):
                            continue  # an answer (a 408, say): the server closes next
                    except BlockingIOError:
                        continue
                    except OSError:
                        pass
                    self._drop(sock, kind)
                elif events & selectors.EVENT_WRITE:  # a slowloris connection is up
                    self.selector.modify(sock, selectors.EVENT_READ, kind)
                    self._send(sock, kind, b"GET /v1/status HTTP/1.1\r\nHost: bench\r\n", now)
            for sock, due in list(self.next_trickle.items()):
                if due <= now:
                    self._send(sock, "slowloris", b"X-Slow: 1\r\n", now)

    def _send(self, sock: socket.socket, kind: str, data: bytes, now: float) -> None:
        try:
            sock.send(data)
        except OSError:
            self._drop(sock, kind)
            return
        self.next_trickle[sock] = now + TRICKLE_SECONDS


# ---- the measured client -----------------------------------------------------------------------


@dataclass
class Result:
    server: str
    scenario: str
    latencies_ms: list[float]
    failed: int
    closed_by_server: int
    held_by_server: int  # sockets the gateway process had open during the loop
    gateway_cpu: float  # cores

    def percentile(self, fraction: float) -> float | None:
        values = self.latencies_ms
        return values[max(0, int(fraction * len(values) + 0.999999) - 1)] if values else None


def get_status(port: int) -> float:
    """One ``GET /v1/status`` on a new connection: milliseconds from connect to last byte."""
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
    try:
        connection.request("GET", "/v1/status")
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            raise OSError(f"status {response.status}")
    finally:
        connection.close()
    return (time.perf_counter() - started) * 1000


def sockets_of(pid: int) -> int:
    try:
        return sum(
            1
            for name in os.listdir(f"/proc/{pid}/fd")
            if os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:")
        )
    except OSError:
        return 0


def measure(server: str, scenario: str, process, port: int, seconds: float) -> Result:
    idle, slowloris = SCENARIOS[scenario]
    with Load(port, idle, slowloris) as load:
        if not load.ready():
            print(f"  ({server} {scenario}: only {load.open} of {load.wanted} connections)")
        time.sleep(1.0)  # the server takes in what is queued
        latencies, failed, held = [], 0, sockets_of(process.pid)
        cpu_before, _ = procs.cpu_seconds(process.pid)
        started = time.monotonic()
        for number in range(MAX_REQUESTS):
            if time.monotonic() - started >= seconds:
                break
            try:
                latencies.append(get_status(port))
            except OSError:
                failed += 1
            if number % 50 == 49:
                held = max(held, sockets_of(process.pid))
            time.sleep(PAUSE_SECONDS)
        elapsed = time.monotonic() - started
        cpu = (procs.cpu_seconds(process.pid)[0] - cpu_before) / elapsed
        closed = load.closed_by_server
    return Result(server, scenario, sorted(latencies), failed, closed, held, cpu)


# ---- report --------------------------------------------------------------------------------------


def ms(value: float | None) -> str:
    return f"{value:8.1f}" if value is not None else "       -"


def print_table(results: list[Result]) -> None:
    print(
        "| scenario | server | requests | failed | p50 ms | p99 ms | max ms | sockets held "
        "by the gateway | closed by the server | gateway cores |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in sorted(results, key=lambda r: (list(SCENARIOS).index(r.scenario), r.server)):
        top = r.latencies_ms[-1] if r.latencies_ms else None
        print(
            f"| {r.scenario} | {r.server} | {len(r.latencies_ms)} | {r.failed} "
            f"| {ms(r.percentile(0.5))} | {ms(r.percentile(0.99))} | {ms(top)} "
            f"| {r.held_by_server} | {r.closed_by_server} | {r.gateway_cpu:.2f} |"
        )


def summary(results: list[Result], nofile: int | None) -> dict:
    figures: dict = {"python": platform.python_version(), "gateway_nofile": nofile}
    for r in results:
        key = f"{r.server}_{r.scenario}"
        figures[f"{key}_p50_ms"] = round(r.percentile(0.5) or 0, 2)
        figures[f"{key}_p99_ms"] = round(r.percentile(0.99) or 0, 2)
        figures[f"{key}_max_ms"] = round(r.latencies_ms[-1] if r.latencies_ms else 0, 2)
        figures[f"{key}_requests"] = len(r.latencies_ms)
        figures[f"{key}_failed"] = r.failed
    return figures


def raise_own_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(needed, 65536)), hard))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 s per scenario instead of 10")
    parser.add_argument("--nofile", type=int, help="the gateways' descriptor limit (soft, hard)")
    parser.add_argument("--servers", nargs="+", choices=SERVERS, default=list(SERVERS))
    args = parser.parse_args(argv)
    raise_own_limit(IDLE_CONNECTIONS + SLOWLORIS_CONNECTIONS + 200)
    seconds = 3.0 if args.quick else 10.0
    print(
        f"Lockstep REST benchmark (Python {platform.python_version()}, {os.cpu_count()} cores): "
        f"GET /v1/status for {seconds:g} s per scenario, gateway nofile "
        f"{args.nofile or 'its own (raised towards the hard limit)'}"
    )
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-rest-") as workdir:
        for server in args.servers:
            process, port = start_gateway(server, Path(workdir), args.nofile)
            try:
                for scenario in SCENARIOS:
                    result = measure(server, scenario, process, port, seconds)
                    print(f"  {server:8} {scenario:9} p99 {ms(result.percentile(0.99))} ms")
                    results.append(result)
                    time.sleep(1.0)  # the server lets go of the closed connections
            finally:
                procs.stop(process)
    print_table(results)
    verdicts = [
        r.failed == 0 and (r.percentile(0.99) or 0) <= TARGET_P99_MS
        for r in results
        if r.server == "waitress" and r.scenario != "baseline"
    ]
    if verdicts:
        print(
            f"target: p99 <= {TARGET_P99_MS:g} ms, no failures, under idle, slowloris and both: "
            f"{'met' if all(verdicts) else 'NOT met'}"
        )
    print(json.dumps(summary(results, args.nofile), sort_keys=True))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--old-server-gateway"]:
        sys.exit(serve_old_gateway(sys.argv[2:]))
    sys.exit(main())
