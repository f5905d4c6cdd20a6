"""The HTTP server each VM runs in the Mininet demo (standard library only).

    python vmserver.py NAME [--port 80]

Dual-stack (binds ``::`` with ``IPV6_V6ONLY`` off, so IPv4 clients arrive as mapped
addresses), one thread per connection, HTTP/1.0 and 1.1.  Paths:

- ``/`` and ``/name``: ``NAME`` and a newline (which VM served the connection);
- ``/healthz``: ``ok``;
- ``/bytes/N``: ``N`` bytes of ``bytes(range(256))`` repeated, with ``Content-Length``,
  written in 64 KiB chunks (hundreds of MB need no memory); ``traffic.py`` checks the digest.

Prints nothing unless something unexpected fails: clients that reset or vanish mid-answer
(health probes do, on purpose) are not errors.  SIGTERM stops it with exit status 0.
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import re
import signal
import socket
import sys

PATTERN = bytes(range(256)) * 256  # 64 KiB; a multiple of 256, so chunks continue the pattern
_BYTES_PATH = re.compile(r"/bytes/([0-9]+)")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # 1.1 clients may keep the connection; 1.0 ones get a close
    server: Server

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path in ("/", "/name"):
            self._send_body(f"{self.server.vm_name}\n".encode())
        elif path == "/healthz":
            self._send_body(b"ok")
        elif match := _BYTES_PATH.fullmatch(path):
            self._send_pattern(int(match[1]))
        else:
            self.send_error(404)

    def _send_body(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_pattern(self, size: int) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        chunk = memoryview(PATTERN)
        while size > 0:
            size -= self.wfile.write(chunk[: min(size, len(chunk))])

    def log_message(self, format, *args) -> None:
        pass  # quiet: no line per request


class Server(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6
    allow_reuse_address = True
    daemon_threads = True  # a transfer in flight never delays the exit

    def __init__(self, vm_name: str, port: int) -> None:
        self.vm_name = vm_name
        super().__init__(("::", port), Handler)

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)  # a traceback on stderr


def _stop(signum, frame) -> None:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", help="the VM's name, served at / and /name")
    parser.add_argument("--port", type=int, default=80)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)
    with Server(args.name, args.port) as server, contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
