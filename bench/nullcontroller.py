"""The new-flow benchmark's null controller: the fake switch's own ceiling.

It answers every packet-in at once with a canned flow-mod and packet-out, from raw bytes, so what
the switch measures against it is what the tool itself can do and adds.

    python bench/nullcontroller.py PORT

Standard library only, like the switch.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import struct
import sys
from pathlib import Path

if not __package__:  # run as a script: python bench/nullcontroller.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.switchwire import (  # noqa: E402
    FLOW_MOD,
    FRAME_LEN,
    FRAME_SRC_OFFSET,
    FRAME_SRC_PORT,
    HEADER,
    OFP_NO_BUFFER,
    OFP_VERSION,
    OFPT_FEATURES_REQUEST,
    OFPT_FLOW_MOD,
    OFPT_PACKET_IN,
    OFPT_PACKET_OUT,
    OXM_ETH_TYPE,
    OXM_IP_PROTO,
    OXM_IPV4_DST,
    OXM_IPV4_SRC,
    OXM_TCP_DST,
    OXM_TCP_SRC,
    PACKET_IN_LEN,
    PACKET_OUT_ACTIONS,
    TUNNEL,
    U16,
    U32,
    UPLINK,
    VIP,
    flow_mod,
    hello,
    match,
    output,
    oxm,
    reply,
)


def null_controller(server: socket.socket) -> None:
    """Accept one switch and answer each packet-in with a flow-mod and a packet-out, from canned
    bytes, until the switch goes.  Sends its own table miss (priority 0) as the ready signal."""
    connection, _ = server.accept()
    server.close()
    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    actions = output(TUNNEL[0])
    ready = flow_mod(2, 0, match(b""), output(0xFFFFFFFD))  # table miss -> OFPP_CONTROLLER
    connection.sendall(hello() + reply(OFPT_FEATURES_REQUEST, 1) + ready)
    # The per-flow rule: fixed fields first, then ipv4_src and tcp_src, the only ones that vary.
    fixed = (
        oxm(0, U32.pack(UPLINK[0])) + oxm(OXM_ETH_TYPE, b"\x08\x00") + oxm(OXM_IP_PROTO, b"\x06")
    )
    fixed += oxm(OXM_IPV4_DST, socket.inet_aton(VIP[0])) + oxm(OXM_TCP_DST, U16.pack(VIP[1]))
    template = flow_mod(0, 200, match(fixed + oxm(11, bytes(4)) + oxm(13, bytes(2))), actions)
    varying = struct.Struct("!IIIH")
    head = template[HEADER.size : HEADER.size + FLOW_MOD.size + 4 + len(fixed)]
    tail = template[len(head) + HEADER.size + varying.size :]
    packet_out = struct.Struct("!BBHIIIH6x")
    packet_out_fields = (OFP_NO_BUFFER, UPLINK[0], len(actions))  # buffer, in_port, actions_len
    pending = b""
    while True:
        chunk = connection.recv(1 << 20)
        if not chunk:
            return
        buf = pending + chunk if pending else chunk
        answers = []
        offset = 0
        while len(buf) - offset >= HEADER.size:
            _, kind, length, xid = HEADER.unpack_from(buf, offset)
            if len(buf) - offset < length:
                break
            if kind == OFPT_PACKET_IN:  # our own packet-ins: the frame is at a fixed place
                frame = buf[offset + PACKET_IN_LEN - FRAME_LEN : offset + length]
                client, port = FRAME_SRC_PORT.unpack_from(frame, FRAME_SRC_OFFSET)
                size = PACKET_OUT_ACTIONS + len(actions) + len(frame)
                answers += (
                    HEADER.pack(OFP_VERSION, OFPT_FLOW_MOD, len(template), xid),
                    head,
                    varying.pack(OXM_IPV4_SRC, client, OXM_TCP_SRC, port),
                    tail,
                    packet_out.pack(OFP_VERSION, OFPT_PACKET_OUT, size, xid, *packet_out_fields),
                    actions,
                    frame,
                )
            offset += length
        pending = buf[offset:]
        if answers:
            connection.sendall(b"".join(answers))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("port", type=int, help="OpenFlow port to listen on (127.0.0.1)")
    args = parser.parse_args()
    with contextlib.suppress(ConnectionError, KeyboardInterrupt):
        null_controller(socket.create_server(("127.0.0.1", args.port)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
