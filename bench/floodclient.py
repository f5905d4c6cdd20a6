"""The flood bench's legitimate client: a new connection to the VIP every ``--every`` seconds,
each asking ``/`` (the serving VM's name) within ``--timeout`` seconds, one JSON line per
connection on stdout (standard library only: it runs in the client's namespace)::

    {"at": 1718000000.123, "ok": true, "connect_ms": 1.9, "ms": 3.2, "vm": "vm2", "error": null}

``at`` is the Unix time the connection started (the bench buckets connections by it into
before, during and after a flood).  Connections overlap: a slow one (a SYN lost and sent again
after 1 s) does not delay the next.  Each closes with ``SO_LINGER`` 0 (an RST), so no
TIME_WAIT piles up.  Runs until ``--seconds`` have passed or SIGTERM, then waits for the
connections in flight.

    python floodclient.py --vip 10.0.0.100 [--port 80] [--every 0.075] [--timeout 2] [--seconds 60]
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import struct
import sys
import threading
import time

_emit_lock = threading.Lock()


def emit(**fields) -> None:
    line = json.dumps(fields) + "\n"
    with _emit_lock:
        sys.stdout.write(line)
        sys.stdout.flush()


def one(vip: str, port: int, timeout: float) -> None:
    """One connection: connect, GET /, read to the end; all within ``timeout`` seconds."""
    at, started = time.time(), time.monotonic()
    connect_ms = vm = error = None
    sock = socket.socket()
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.settimeout(timeout)
        sock.connect((vip, port))
        connect_ms = round((time.monotonic() - started) * 1000, 2)
        sock.settimeout(max(0.01, timeout - (time.monotonic() - started)))
        sock.sendall(b"GET / HTTP/1.0\r\nHost: vip\r\n\r\n")
        data = b""
        while piece := sock.recv(4096):
            data += piece
        vm = data.rpartition(b"\r\n\r\n")[2].decode(errors="replace").strip() or None
        error = None if vm else "empty answer"
    except OSError as exc:
        error = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
    finally:
        sock.close()
    ms = round((time.monotonic() - started) * 1000, 2)
    emit(at=round(at, 3), ok=error is None, connect_ms=connect_ms, ms=ms, vm=vm, error=error)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vip", required=True)
    parser.add_argument("--port", type=int, default=80)
    parser.add_argument("--every", type=float, default=0.075, help="seconds between starts")
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds per connection")
    parser.add_argument("--seconds", type=float, default=60.0, help="stop starting after this")
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    threads: list[threading.Thread] = []
    started = time.monotonic()
    next_start = started
    while not stop.is_set() and time.monotonic() - started < args.seconds:
        thread = threading.Thread(target=one, args=(args.vip, args.port, args.timeout))
        thread.start()
        threads = [t for t in threads if t.is_alive()] + [thread]
        next_start += args.every
        stop.wait(max(0.0, next_start - time.monotonic()))
    for thread in threads:
        thread.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
