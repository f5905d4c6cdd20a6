"""The server each VM runs in ``bench/bench_ovs.py``: accepts every connection on a port and
closes it at once with a reset (standard library only: it runs in the VM's namespace).

    python acceptsink.py [--port 80]

The bench counts handshakes at the VMs by the kernel's ``TcpPassiveOpens``; a listener that
did not accept would let its queue fill and the kernel drop the handshakes' last ACKs
(``ListenOverflows``).  One blocking ``accept()`` loop keeps the queue empty at tens of
thousands of connections a second, where a thread per connection would not.  SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import signal
import socket
import struct
import sys

LINGER_RESET = struct.pack("ii", 1, 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=80)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", args.port))
    listener.listen(65535)  # the kernel caps it at net.core.somaxconn
    while True:
        try:
            sock, _ = listener.accept()
        except OSError:
            continue
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
        sock.close()


if __name__ == "__main__":
    sys.exit(main())
