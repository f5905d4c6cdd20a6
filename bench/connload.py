"""``bench/bench_ovs.py``'s load: new TCP connections to the VIP at a paced rate, each one a
full handshake and then a reset (standard library only: it runs in the client's namespace).

    python connload.py --vip 10.0.0.100 [--port 80] [--rate 5000] [--seconds 5]
                       [--timeout 1] [--max-inflight 2000]

A connection is a non-blocking ``connect()``; it counts as *established* when the socket
becomes writable without an error or with ``ECONNRESET`` (the SYN-ACK came back and the kernel
sent the ACK; the sink may have reset it since), as *failed* on any other error (refused) and
as *timed out* after ``--timeout`` seconds (1 s: a lost SYN is a failure, the kernel's first
retry comes only after 1 s).  Each closes with ``SO_LINGER``
0 (an RST), so no TIME_WAIT piles up and the port is free again at once.  ``--rate 0`` starts
connections as fast as it can, with at most ``--max-inflight`` waiting: the generator's own
ceiling then shows in its figures.  At the end one JSON line on stdout::

    {"started": 25000, "established": 24990, "failed": 0, "timed_out": 10, "seconds": 5.0,
     "cpu_s": 3.2, "connect_p50_ms": 0.4, "connect_p99_ms": 3.1, "behind": 0}

``behind``: connections the pacing wanted started but could not (``--max-inflight`` reached).
"""

from __future__ import annotations

import argparse
import errno
import json
import math
import select
import signal
import socket
import struct
import sys
import time

LINGER_RESET = struct.pack("ii", 1, 0)
# SO_ERROR values of a connection whose handshake completed: none, or reset by the server
# after it (the sink accepts and resets at once; a reset answering the SYN is ECONNREFUSED).
HANDSHAKE_DONE = (0, errno.ECONNRESET)
SAMPLE_EVERY = 16  # keep the connect time of one connection in this many (percentiles)


def due(rate: float, elapsed: float, started: int) -> int:
    """How many connections the pacing wants started now, given ``started`` so far (rate 0:
    unpaced, as many as there is room for)."""
    if rate <= 0:
        return sys.maxsize
    return max(0, int(rate * elapsed) - started)


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile (None for no values)."""
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


class Load:
    """The connections in flight and the counts so far."""

    def __init__(self, vip: str, port: int, timeout: float):
        self.address, self.timeout = (vip, port), timeout
        self.poller = select.epoll()
        self.inflight: dict[int, tuple[socket.socket, float]] = {}
        self.started = self.established = self.failed = self.timed_out = self.behind = 0
        self.connect_ms: list[float] = []

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
        self.started += 1
        code = sock.connect_ex(self.address)
        if code not in (0, errno.EINPROGRESS):
            self.failed += 1
            sock.close()
            return
        self.inflight[sock.fileno()] = (sock, time.monotonic())
        self.poller.register(sock.fileno(), select.EPOLLOUT)

    def finish(self, fd: int, ok: bool | None) -> None:
        """``ok``: established, refused or reset (False), timed out (None)."""
        sock, since = self.inflight.pop(fd)
        self.poller.unregister(fd)
        if ok:
            self.established += 1
            if self.established % SAMPLE_EVERY == 0:
                self.connect_ms.append((time.monotonic() - since) * 1000)
        elif ok is None:
            self.timed_out += 1
        else:
            self.failed += 1
        sock.close()

    def poll(self, wait: float) -> None:
        for fd, _ in self.poller.poll(wait):
            sock = self.inflight[fd][0]
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            self.finish(fd, code in HANDSHAKE_DONE)
        oldest = time.monotonic() - self.timeout
        for fd in [fd for fd, (_, since) in self.inflight.items() if since < oldest]:
            self.finish(fd, None)

    def figures(self, seconds: float) -> dict:
        return {
            "started": self.started,
            "established": self.established,
            "failed": self.failed,
            "timed_out": self.timed_out,
            "behind": self.behind,
            "seconds": round(seconds, 3),
            "cpu_s": round(time.process_time(), 3),
            "connect_p50_ms": _rounded(percentile(self.connect_ms, 0.5)),
            "connect_p99_ms": _rounded(percentile(self.connect_ms, 0.99)),
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def run(args: argparse.Namespace) -> dict:
    """Start connections for ``args.seconds``, then wait for those in flight."""
    load = Load(args.vip, args.port, args.timeout)
    stop = []
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.append(signum))
    began = time.monotonic()
    while not stop and (elapsed := time.monotonic() - began) < args.seconds:
        wanted = due(args.rate, elapsed, load.started)
        room = args.max_inflight - len(load.inflight)
        for _ in range(min(wanted, room, 256)):
            load.start()
        load.poll(0 if wanted > 0 and room > 0 else 0.001)
    seconds = time.monotonic() - began
    if args.rate > 0:
        load.behind = max(0, int(args.rate * seconds) - load.started)
    deadline = time.monotonic() + args.timeout + 0.1
    while load.inflight and time.monotonic() < deadline:
        load.poll(0.01)
    return load.figures(seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vip", required=True)
    parser.add_argument("--port", type=int, default=80)
    parser.add_argument("--rate", type=float, default=0.0, help="connections/s (0: unpaced)")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--timeout", type=float, default=1.0, help="seconds per handshake")
    parser.add_argument("--max-inflight", type=int, default=2000)
    args = parser.parse_args(argv)
    print(json.dumps(run(args)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
