"""Client-side traffic for the Mininet demo: short connections and long downloads to the VIP.

Runs in a Mininet client host (standard library only) against ``vmserver.py`` on the VMs and
writes one JSON object per line on stdout, flushed, so the runner can follow it live.  Exit
status 0 when everything succeeded, 1 otherwise.

``spread --vip ADDR [--port 80] [--src ADDR] --first-port P --count N [--timeout 3] [--parallel K]``
    N connections, from source ports P .. P+N-1, each asking ``/`` for the serving VM's name;
    K at a time (lines in completion order).  One line per connection (``connect_ms``: the TCP
    handshake, null if it failed; ``ms``: the whole), then a summary::

        {"sport": 40000, "vm": "vm3", "ok": true, "error": null, "ms": 1.9, "connect_ms": 0.6,
         "at": 1718000000.123}
        {"done": true, "ok": 999, "failed": 1}

``paced --vip ADDR [--port 80] [--src ADDR] --first-port P --count N [--every 0.1] [--timeout 2]``
    N connections like spread's, one started every EVERY seconds whatever the others are
    doing (a slow one does not delay the next), from ports P .. P+N-1; the same lines and
    summary.  The flood scenario's legitimate client.

``download --vip ADDR [--port 80] [--src ADDR] [--sport P] --size BYTES [--rate BYTES_PER_S]
[--label dl] [--progress 0.2] [--timeout 20]``
    One download of ``/bytes/SIZE``, read no faster than RATE (so that it is still in flight
    when failures are injected).  A progress line every PROGRESS seconds while it runs (also
    during a stall), then its result::

        {"label": "dl", "t": 0.4, "bytes": 409600, "at": 1718000000.5}
        {"label": "dl", "done": true, "ok": true, "bytes": 1000000, "sha256": "...",
         "expected_sha256": "...", "error": null, "reset": false, "seconds": 1.0, "at": ...}

``downloads --count K [--first-sport P]`` and the options of ``download``
    K downloads in parallel, labelled ``dl1`` .. ``dlK`` (LABEL + index), from ports P .. P+K-1
    (or the kernel's choice); their lines interleave; then ``{"done": true, "ok": N, "failed": M}``.

``ok`` for a download means every byte arrived and the SHA-256 is the pattern's.  ``error`` is
``timeout`` (nothing for TIMEOUT seconds), an errno name (``ECONNRESET``, ``ECONNREFUSED``,
``EADDRINUSE``...), ``short read`` (closed early), ``bad checksum`` or the server's status line
when it is not 200; ``reset`` says a TCP reset ended the transfer.  ``at`` is the Unix time of
the line (of the start, for a spread connection), to line events up with injected failures.
Every connection binds its source address and port and is closed with ``SO_LINGER`` 0 (an RST,
not a FIN), so no TIME_WAIT keeps the port and the next run can use the same ports.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import math
import socket
import struct
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

PATTERN = bytes(range(256)) * 256  # what vmserver.py sends for /bytes/N: N bytes of it, repeated
_MAX_HEAD = 65536
_emit_lock = threading.Lock()
_digest_lock = threading.Lock()
_digests: dict[int, str] = {}


class HTTPFailure(Exception):
    """An answer other than the one asked for; its text is the reported ``error``."""


def emit(**fields) -> None:
    """One JSON line on stdout, whole and flushed, whatever thread writes it."""
    line = json.dumps(fields) + "\n"
    with _emit_lock:
        sys.stdout.write(line)
        sys.stdout.flush()


def error_name(error: Exception) -> str:
    if isinstance(error, TimeoutError):
        return "timeout"
    if isinstance(error, OSError) and error.errno in errno.errorcode:
        return errno.errorcode[error.errno]
    return str(error) or type(error).__name__


def pattern_sha256(size: int) -> str:
    """The SHA-256 of the first ``size`` bytes the server sends, computed in 64 KiB steps."""
    with _digest_lock:
        if size not in _digests:
            digest = hashlib.sha256()
            whole, rest = divmod(size, len(PATTERN))
            for _ in range(whole):
                digest.update(PATTERN)
            digest.update(PATTERN[:rest])
            _digests[size] = digest.hexdigest()
        return _digests[size]


def connect(args: argparse.Namespace, sport: int) -> socket.socket:
    """A TCP connection from ``(args.src, sport)`` to the VIP (port 0: the kernel picks);
    closing it sends an RST."""
    sock = socket.socket(socket.AF_INET6 if ":" in args.vip else socket.AF_INET)
    try:
        sock.settimeout(args.timeout)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if args.src or sport:
            sock.bind((args.src, sport))
        sock.connect((args.vip, args.port))
    except BaseException:
        sock.close()
        raise
    return sock


def get(sock: socket.socket, args: argparse.Namespace, path: str) -> bytes:
    """Send an HTTP/1.0 GET (the server closes after the body) and read the answer's head;
    return the part of the body that came with it."""
    host = f"[{args.vip}]" if ":" in args.vip else args.vip
    sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(4096)
        if not piece:
            raise HTTPFailure("short read")
        data += piece
        if len(data) > _MAX_HEAD:
            raise HTTPFailure("bad response")
    head, body = data.split(b"\r\n\r\n", 1)
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    if status_line.split(" ")[1:2] != ["200"]:
        raise HTTPFailure(status_line)
    return body


def ask_name(args: argparse.Namespace, sport: int) -> bool:
    """One short connection from ``sport``: ask ``/`` for the serving VM's name; emit its line."""
    at, started = time.time(), time.monotonic()
    vm = error = connect_ms = None
    try:
        with connect(args, sport) as sock:
            connect_ms = round((time.monotonic() - started) * 1000, 1)
            body = get(sock, args, "/")
            while piece := sock.recv(4096):
                body += piece
        vm = body.decode(errors="replace").strip() or None
        if vm is None:
            error = "empty body"
    except (OSError, HTTPFailure) as exc:
        error = error_name(exc)
    ms = round((time.monotonic() - started) * 1000, 1)
    emit(sport=sport, vm=vm, ok=error is None, error=error, ms=ms, connect_ms=connect_ms,
         at=round(at, 3))  # fmt: skip
    return error is None


def spread(args: argparse.Namespace) -> bool:
    with ThreadPoolExecutor(args.parallel) as pool:
        ports = range(args.first_port, args.first_port + args.count)
        results = list(pool.map(partial(ask_name, args), ports))
    emit(done=True, ok=sum(results), failed=len(results) - sum(results))
    return all(results)


def paced(args: argparse.Namespace) -> bool:
    """A connection every ``args.every`` seconds on a clock of its own: one that waits for a
    lost SYN's retransmission runs beside the next ones rather than delaying them."""
    in_flight = max(4, math.ceil(3 * args.timeout / args.every) + 1)  # connect, ask, read
    futures = []
    with ThreadPoolExecutor(in_flight) as pool:
        start = time.monotonic()
        for index in range(args.count):
            time.sleep(max(0.0, start + index * args.every - time.monotonic()))
            futures.append(pool.submit(ask_name, args, args.first_port + index))
    results = [future.result() for future in futures]
    emit(done=True, ok=sum(results), failed=len(results) - sum(results))
    return all(results)


@dataclass
class Transfer:
    """One download's live state, read by the progress reporter."""

    label: str
    sport: int
    received: int = 0
    started: float = 0.0  # time.monotonic()
    running: bool = False


def download(args: argparse.Namespace, transfer: Transfer) -> bool:
    """Fetch ``/bytes/SIZE`` at most ``args.rate`` bytes/s (0: as fast as it comes), check
    the digest, emit the result line."""
    digest = hashlib.sha256()
    error, reset = None, False
    chunk = min(65536, max(1024, args.rate // 50)) if args.rate else 65536
    transfer.started = time.monotonic()
    transfer.running = True
    try:
        with connect(args, transfer.sport) as sock:
            piece = get(sock, args, f"/bytes/{args.size}")
            while True:
                piece = piece[: args.size - transfer.received]
                digest.update(piece)
                transfer.received += len(piece)
                if transfer.received == args.size:
                    break
                if args.rate:
                    elapsed = time.monotonic() - transfer.started
                    time.sleep(max(0.0, transfer.received / args.rate - elapsed))
                piece = sock.recv(chunk)
                if not piece:
                    raise HTTPFailure("short read")
    except (OSError, HTTPFailure) as exc:
        error, reset = error_name(exc), isinstance(exc, ConnectionResetError)
    finally:
        transfer.running = False
    seconds = round(time.monotonic() - transfer.started, 3)
    sha256, expected = digest.hexdigest(), pattern_sha256(args.size)
    if error is None and sha256 != expected:
        error = "bad checksum"
    emit(
        label=transfer.label,
        done=True,
        ok=error is None,
        bytes=transfer.received,
        sha256=sha256,
        expected_sha256=expected,
        error=error,
        reset=reset,
        seconds=seconds,
        at=round(time.time(), 3),
    )
    return error is None


def report_progress(transfers: list[Transfer], interval: float, stop: threading.Event) -> None:
    while not stop.wait(interval):
        now = time.monotonic()
        for transfer in transfers:
            if transfer.running:
                elapsed = round(now - transfer.started, 3)
                emit(
                    label=transfer.label,
                    t=elapsed,
                    bytes=transfer.received,
                    at=round(time.time(), 3),
                )


def run_transfers(args: argparse.Namespace, transfers: list[Transfer]) -> list[bool]:
    stop = threading.Event()
    reporter = threading.Thread(target=report_progress, args=(transfers, args.progress, stop))
    reporter.start()
    try:
        with ThreadPoolExecutor(len(transfers)) as pool:
            return list(pool.map(partial(download, args), transfers))
    finally:
        stop.set()
        reporter.join()


def download_one(args: argparse.Namespace) -> bool:
    return run_transfers(args, [Transfer(args.label, args.sport)])[0]


def download_many(args: argparse.Namespace) -> bool:
    transfers = [
        Transfer(f"{args.label}{index + 1}", args.first_sport + index if args.first_sport else 0)
        for index in range(args.count)
    ]
    results = run_transfers(args, transfers)
    emit(done=True, ok=sum(results), failed=len(results) - sum(results))
    return all(results)


def _at_least(low, high=None, kind=int):
    """An argparse type: a number of ``kind`` in ``[low, high]``."""

    def parse(text: str):
        value = kind(text)
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{text}: must be in [{low}, {high or 'inf'}]")
        return value

    return parse


_PORT = _at_least(1, 65535)
_PORT_OR_ANY = _at_least(0, 65535)
_COUNT = _at_least(1)
_SECONDS = _at_least(0.001, kind=float)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name, run, timeout, summary):
        sub = commands.add_parser(name, help=summary)
        sub.set_defaults(run=run)
        sub.add_argument("--vip", required=True, help="address to connect to (IPv4 or IPv6)")
        sub.add_argument("--port", type=_PORT, default=80)
        sub.add_argument("--src", default="", help="source address (default: the route's)")
        sub.add_argument("--timeout", type=_SECONDS, default=timeout, help="seconds (%(default)s)")
        return sub

    sub = command("spread", spread, 3.0, "short connections from consecutive source ports")
    sub.add_argument("--first-port", type=_PORT, required=True)
    sub.add_argument("--count", type=_COUNT, required=True)
    sub.add_argument("--parallel", type=_COUNT, default=1)
    sub = command("paced", paced, 2.0, "a new short connection every EVERY seconds")
    sub.add_argument("--first-port", type=_PORT, required=True)
    sub.add_argument("--count", type=_COUNT, required=True)
    sub.add_argument("--every", type=_SECONDS, default=0.1, help="seconds (%(default)s)")
    for name, run, summary in (
        ("download", download_one, "one long download"),
        ("downloads", download_many, "parallel long downloads"),
    ):
        sub = command(name, run, 20.0, summary)
        sub.add_argument("--size", type=_at_least(0), required=True, help="bytes")
        sub.add_argument(
            "--rate", type=_at_least(0), default=0, help="bytes/s read (0: unthrottled)"
        )
        sub.add_argument("--label", default="dl")
        sub.add_argument("--progress", type=_SECONDS, default=0.2, help="seconds between lines")
        if name == "download":
            sub.add_argument("--sport", type=_PORT_OR_ANY, default=0, help="source port (0: any)")
        else:
            sub.add_argument("--count", type=_COUNT, required=True)
            sub.add_argument("--first-sport", type=_PORT_OR_ANY, default=0)
    args = parser.parse_args(argv)
    first = getattr(args, "first_port", None) or getattr(args, "first_sport", 0)
    if first and first + args.count - 1 > 65535:
        parser.error("the source ports run past 65535")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return 0 if args.run(args) else 1


if __name__ == "__main__":
    sys.exit(main())
