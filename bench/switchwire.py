"""The bytes of the new-flow benchmark's fake switch: OpenFlow 1.3 and the frames it carries.

What the switch writes (packet-ins of TCP SYNs from a template, answers to health probes, the
handshake's replies) and the few fields it reads from what the controller writes: the flow a
flow-mod or packet-out is for (the client address and TCP source port encode the flow's index),
and the tunnel endpoint their actions send to.  Layouts: OpenFlow 1.3.5 sections 7.2.2 (OXM),
7.2.5 (actions), 7.3.4.2 (flow-mod), 7.3.7 (packet-out), 7.4.1 (packet-in); ``tun_dst`` is the
Nicira extension field NXM_NX_TUN_IPV4_DST.

Standard library only: the switch never loads the framework it measures.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Sequence

# ---- the emulated network ---------------------------------------------------------------------

DPID = 0x1
GATEWAY_MAC = bytes.fromhex("020000000001")
ROUTER_MAC = bytes.fromhex("02000000fe01")
UPLINK = (1, "gw1-eth0")
TUNNEL = (2, "gw1-vxlan")
VIP = ("10.0.0.100", 80)
CLIENT_NET = 0x0A800000  # 10.128.0.0/9: client address and source port encode the flow index
FIRST_PORT = 1024
PORTS_PER_CLIENT = 65536 - FIRST_PORT

# ---- OpenFlow 1.3 wire format (only what a switch needs here) ---------------------------------

OFP_VERSION = 4
OFPT_HELLO, OFPT_ERROR, OFPT_ECHO_REQUEST, OFPT_ECHO_REPLY = 0, 1, 2, 3
OFPT_FEATURES_REQUEST, OFPT_FEATURES_REPLY = 5, 6
OFPT_GET_CONFIG_REQUEST, OFPT_GET_CONFIG_REPLY = 7, 8
OFPT_PACKET_IN, OFPT_PACKET_OUT, OFPT_FLOW_MOD = 10, 13, 14
OFPT_MULTIPART_REQUEST, OFPT_MULTIPART_REPLY = 18, 19
OFPT_BARRIER_REQUEST, OFPT_BARRIER_REPLY = 20, 21
OFPT_ROLE_REQUEST, OFPT_ROLE_REPLY = 24, 25
OFPMP_PORT_DESC = 13
OFPFC_ADD, OFPFC_DELETE, OFPFC_DELETE_STRICT = 0, 3, 4
OFP_NO_BUFFER = 0xFFFFFFFF
OFPR_ACTION = 1
OXM_IN_PORT = 0x80000004  # class OPENFLOW_BASIC, field 0, length 4
OXM_IPV4_SRC = 0x80001604  # field 11, length 4
OXM_TCP_SRC = 0x80001A02  # field 13, length 2
OXM_ETH_TYPE, OXM_IP_PROTO, OXM_IPV4_DST, OXM_TCP_DST = 5, 10, 12, 14  # field numbers
OXM_TUN_IPV4_DST = 0x00014004  # Nicira extension NXM_NX_TUN_IPV4_DST: class 1, field 32
OFPIT_APPLY_ACTIONS = 4
OFPAT_SET_FIELD = 25

HEADER = struct.Struct("!BBHI")  # version, type, length, xid
U16 = struct.Struct("!H")
U32 = struct.Struct("!I")
U64 = struct.Struct("!Q")
TYPE_LENGTH = struct.Struct("!HH")  # of an action or an instruction
FEATURES = struct.Struct("!BBHIQIBB2xII")  # header, dpid, n_buffers, n_tables, aux, caps, rsvd
PORT = struct.Struct("!I4x6s2x16sIIIIIIII")  # ofp_port, 64 bytes
MULTIPART_REPLY = struct.Struct("!BBHIHH4x")
# Packet-out: header, buffer_id, in_port, actions_len, pad; then actions, then the frame.
PACKET_OUT_ACTIONS_LEN, PACKET_OUT_ACTIONS = 16, 24
FLOW_MOD = struct.Struct("!QQBBHHHIIIH2x")  # cookie, mask, table, command, idle, hard, ...
FLOW_MOD_COOKIE, FLOW_MOD_COMMAND, FLOW_MOD_PRIORITY, FLOW_MOD_MATCH = 8, 25, 30, 48
COOKIE_AND_MASK = struct.Struct("!QQ")
BACKEND_BITS = 0xFFFFFFFF  # Lockstep's per-flow cookies carry the backend id in the low 32 bits
ANY = 0xFFFFFFFF  # OFPP_ANY, OFPG_ANY
FRAME_SRC_PORT = struct.Struct("!I4xH")  # IPv4 source (frame offset 26), skip dst, TCP sport
FRAME_SRC_OFFSET = 26

# The SYN: Ethernet, IPv4 (DF, TTL 64), TCP with the options Linux sends (MSS, SACK permitted,
# timestamps, window scale): 74 bytes, like a real one, so parsers do their usual work.
TCP_OPTIONS = bytes.fromhex("020405b40402080a0001e2400000000001030307")
FRAME_LEN = 14 + 20 + 20 + len(TCP_OPTIONS)
PIN_MATCH = struct.pack("!HHII4x", 1, 12, OXM_IN_PORT, UPLINK[0])  # OXM match, padded to 16
PIN_FIXED = struct.pack("!IHBBQ", OFP_NO_BUFFER, FRAME_LEN, OFPR_ACTION, 0, 0) + PIN_MATCH + b"\0\0"
PACKET_IN = struct.Struct(f"!BBHI{len(PIN_FIXED)}s34sHHIIBBHHH{len(TCP_OPTIONS)}s")
PACKET_IN_LEN = PACKET_IN.size
TCP_SEQ, TCP_WINDOW, TCP_DATA_OFFSET, TCP_SYN, TCP_ACK = 0x1000, 64240, 0xA0, 0x02, 0x10


def _checksum_sum(data: bytes) -> int:
    """The ones'-complement sum of 16-bit words, not yet folded or inverted."""
    if len(data) % 2:
        data += b"\0"
    return sum(U16.unpack_from(data, i)[0] for i in range(0, len(data), 2))


def _fold(total: int) -> int:
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total


class SynFactory:
    """Packet-ins of TCP SYNs to the VIPs; flow ``index`` <-> (client address, source port).

    Flow ``index`` goes to VIP ``index % len(vips)`` (``vip_of``), so the load is spread evenly
    over the VIPs and the switch never has to remember where a flow went.  Everything but the
    source port is cached per client address and VIP, checksums included: the TCP checksum is
    the cached partial sum plus the port (RFC 1624 style), so one packet-in costs one
    ``struct.pack``.
    """

    def __init__(self, vips: Sequence[tuple[str, int]] = (VIP,)):
        if not vips:
            raise ValueError("at least one VIP, please")
        self.vips = [(socket.inet_aton(address), port) for address, port in vips]
        self._client = -1
        self._l2l3: list[bytes] = []  # per VIP: Ethernet and IPv4 headers
        self._tcp_sums: list[int] = []  # per VIP: TCP checksum sum without the source port

    def _switch_client(self, client: int) -> None:
        src = U32.pack(client)
        tcp_len = FRAME_LEN - 34
        self._l2l3, self._tcp_sums = [], []
        for vip_ip, vip_port in self.vips:
            ip = struct.pack(
                "!BBHHHBBH4s4s", 0x45, 0, FRAME_LEN - 14, 0, 0x4000, 64, 6, 0, src, vip_ip
            )
            ip = ip[:10] + U16.pack(0xFFFF - _fold(_checksum_sum(ip))) + ip[12:]
            self._l2l3.append(GATEWAY_MAC + ROUTER_MAC + b"\x08\x00" + ip)
            fixed = struct.pack(
                "!HIIBBHHH", vip_port, TCP_SEQ, 0, TCP_DATA_OFFSET, TCP_SYN, TCP_WINDOW, 0, 0
            )
            pseudo = src + vip_ip + struct.pack("!BBH", 0, 6, tcp_len)
            self._tcp_sums.append(_checksum_sum(pseudo + fixed + TCP_OPTIONS))
        self._client = client

    def packet_in(self, index: int) -> bytes:
        client, port = divmod(index, PORTS_PER_CLIENT)
        client += CLIENT_NET
        port += FIRST_PORT
        if client != self._client:
            self._switch_client(client)
        vip = index % len(self.vips)
        checksum = 0xFFFF - _fold(self._tcp_sums[vip] + port)
        return PACKET_IN.pack(
            OFP_VERSION, OFPT_PACKET_IN, PACKET_IN_LEN, index & 0xFFFFFFFF, PIN_FIXED,
            self._l2l3[vip], port, self.vips[vip][1], TCP_SEQ, 0, TCP_DATA_OFFSET, TCP_SYN,
            TCP_WINDOW, checksum, 0, TCP_OPTIONS,
        )  # fmt: skip


def vip_of(index: int, vips: int) -> int:
    """Which of ``vips`` VIPs flow ``index`` is for (see ``SynFactory``)."""
    return index % vips


def flow_source(index: int) -> tuple[str, int]:
    """The client address and TCP source port of flow ``index`` (see ``SynFactory``)."""
    client, port = divmod(index, PORTS_PER_CLIENT)
    return socket.inet_ntoa(U32.pack(CLIENT_NET + client)), FIRST_PORT + port


def flow_index(client: int, port: int) -> int:
    """The flow index a (client address as int, TCP source port) pair encodes; -1 if none."""
    if client < CLIENT_NET or port < FIRST_PORT:
        return -1
    return (client - CLIENT_NET) * PORTS_PER_CLIENT + port - FIRST_PORT


def packet_out_index(buf, offset: int, length: int) -> int:
    """The flow index of the frame a packet-out carries; -1 for any other packet-out."""
    frame = offset + PACKET_OUT_ACTIONS + U16.unpack_from(buf, offset + PACKET_OUT_ACTIONS_LEN)[0]
    if frame + FRAME_SRC_OFFSET + FRAME_SRC_PORT.size > offset + length:
        return -1
    return flow_index(*FRAME_SRC_PORT.unpack_from(buf, frame + FRAME_SRC_OFFSET))


def flow_mod_index(buf, offset: int, length: int) -> int:
    """The flow index of an ADD flow-mod whose match has ipv4_src and tcp_src; else -1."""
    if length < FLOW_MOD_MATCH + 4 or buf[offset + FLOW_MOD_COMMAND] != OFPFC_ADD:
        return -1
    position = offset + FLOW_MOD_MATCH + 4
    end = offset + FLOW_MOD_MATCH + U16.unpack_from(buf, offset + FLOW_MOD_MATCH + 2)[0]
    client = port = -1
    while position + 4 <= end:
        oxm = U32.unpack_from(buf, position)[0]
        if oxm == OXM_IPV4_SRC:
            client = U32.unpack_from(buf, position + 4)[0]
        elif oxm == OXM_TCP_SRC:
            port = U16.unpack_from(buf, position + 4)[0]
        position += 4 + (oxm & 0xFF)
    return flow_index(client, port) if client >= 0 and port >= 0 else -1


# ---- health probes and where flows go (the rebuild phase) -------------------------------------

PROBE_ISN = 0x5EED0000  # the initial sequence number of the "VM" in its SYN-ACKs
DELETES = (OFPFC_DELETE, OFPFC_DELETE_STRICT)
PACKET_IN_HEAD = struct.Struct("!BBHIIHBBQ")  # header, buffer_id, total_len, reason, table, cookie
IPV4_HEADER = struct.Struct("!BBHHHBBH4s4s")
TCP_HEADER = struct.Struct("!HHIIBBHHH")


def packet_in(frame: bytes, in_port: int = UPLINK[0], xid: int = 0) -> bytes:
    """An unbuffered packet-in of any frame (the SYNs of new flows have a faster template)."""
    match = struct.pack("!HHII4x", 1, 12, OXM_IN_PORT, in_port)
    length = PACKET_IN_HEAD.size + len(match) + 2 + len(frame)
    head = PACKET_IN_HEAD.pack(
        OFP_VERSION, OFPT_PACKET_IN, length, xid, OFP_NO_BUFFER, len(frame), OFPR_ACTION, 0, 0
    )
    return head + match + b"\0\0" + frame


def probe_answer(frame) -> bytes | None:
    """The packet-in of the SYN-ACK a VM's service sends back to a health probe's SYN; None if
    ``frame`` is not an IPv4 TCP SYN.

    A probe is a SYN from a gateway address to a VIP, sent through the tunnel (see
    ``ryu_app/core/prober.py``); the VM answers by direct server return through the router, so
    the answer reaches the gateway on its uplink: from the VIP's check port to the probe's port,
    acknowledging the probe's sequence number."""
    if len(frame) < 54 or frame[12:14] != b"\x08\x00" or frame[23] != 6:
        return None
    tcp = 14 + (frame[14] & 0x0F) * 4
    if len(frame) < tcp + TCP_HEADER.size or frame[tcp + 13] != TCP_SYN:
        return None
    prober, vip = bytes(frame[26:30]), bytes(frame[30:34])
    probe_port, service_port, seq = struct.unpack_from("!HHI", frame, tcp)
    ack = (seq + 1) & 0xFFFFFFFF
    flags = TCP_SYN | TCP_ACK
    segment = TCP_HEADER.pack(service_port, probe_port, PROBE_ISN, ack, 0x50, flags, 65535, 0, 0)
    pseudo = vip + prober + struct.pack("!BBH", 0, 6, len(segment))
    checksum = 0xFFFF - _fold(_checksum_sum(pseudo + segment))
    segment = segment[:16] + U16.pack(checksum) + segment[18:]
    ip = IPV4_HEADER.pack(0x45, 0, 20 + len(segment), 0, 0x4000, 64, 6, 0, vip, prober)
    ip = ip[:10] + U16.pack(0xFFFF - _fold(_checksum_sum(ip))) + ip[12:]
    return packet_in(bytes(frame[6:12]) + ROUTER_MAC + b"\x08\x00" + ip + segment)


def actions_tunnel(buf, start: int, end: int) -> int:
    """The tunnel destination (``tun_dst``, as an int) that the actions in ``buf[start:end]``
    set, or -1 if none does."""
    while start + 8 <= end:
        kind, length = TYPE_LENGTH.unpack_from(buf, start)
        if kind == OFPAT_SET_FIELD and U32.unpack_from(buf, start + 4)[0] == OXM_TUN_IPV4_DST:
            return U32.unpack_from(buf, start + 8)[0]
        if length < 8:
            return -1
        start += length
    return -1


def packet_out_tunnel(buf, offset: int) -> int:
    """The tunnel destination a packet-out sends its frame to, or -1."""
    start = offset + PACKET_OUT_ACTIONS
    return actions_tunnel(
        buf, start, start + U16.unpack_from(buf, offset + PACKET_OUT_ACTIONS_LEN)[0]
    )


def flow_mod_tunnel(buf, offset: int, length: int) -> int:
    """The tunnel destination a flow-mod's apply-actions instruction sets, or -1."""
    match_length = U16.unpack_from(buf, offset + FLOW_MOD_MATCH + 2)[0]
    position = offset + FLOW_MOD_MATCH + -(-match_length // 8) * 8
    end = offset + length
    while position + 8 <= end:
        kind, size = TYPE_LENGTH.unpack_from(buf, position)
        if size < 8:
            return -1
        if kind == OFPIT_APPLY_ACTIONS:
            return actions_tunnel(buf, position + 8, position + size)
        position += size
    return -1


def address_int(address: str) -> int:
    return U32.unpack(socket.inet_aton(address))[0]


def hello() -> bytes:
    return HEADER.pack(OFP_VERSION, OFPT_HELLO, HEADER.size, 0)


def features_reply(xid: int, dpid: int) -> bytes:
    return FEATURES.pack(
        OFP_VERSION, OFPT_FEATURES_REPLY, FEATURES.size, xid, dpid, 0, 254, 0, 0x4F, 0
    )


def port_desc_reply(xid: int, ports: list[tuple[int, str]]) -> bytes:
    body = b"".join(
        PORT.pack(number, bytes([2, 0, 0, 0, 0xEE, number]), name.encode(), 0, 4, 0, 0, 0, 0, 0, 0)
        for number, name in ports
    )
    length = MULTIPART_REPLY.size + len(body)
    head = MULTIPART_REPLY.pack(OFP_VERSION, OFPT_MULTIPART_REPLY, length, xid, OFPMP_PORT_DESC, 0)
    return head + body


def reply(kind: int, xid: int, body: bytes = b"") -> bytes:
    return HEADER.pack(OFP_VERSION, kind, HEADER.size + len(body), xid) + body


def oxm(field_number: int, value: bytes) -> bytes:
    """One OXM TLV of class OPENFLOW_BASIC, no mask."""
    return U32.pack(0x80000000 | field_number << 9 | len(value)) + value


def match(oxms: bytes) -> bytes:
    length = 4 + len(oxms)
    return U16.pack(1) + U16.pack(length) + oxms + bytes(-length % 8)


def output(port: int) -> bytes:
    return struct.pack("!HHIH6x", 0, 16, port, 0xFFFF)  # OFPAT_OUTPUT, max_len NO_BUFFER


def flow_mod(xid: int, priority: int, match_bytes: bytes, actions: bytes, cookie: int = 0) -> bytes:
    """An ADD flow-mod with one apply-actions instruction."""
    instruction = struct.pack("!HH4x", 4, 8 + len(actions)) + actions  # OFPIT_APPLY_ACTIONS
    body = FLOW_MOD.pack(cookie, 0, 0, OFPFC_ADD, 0, 0, priority, OFP_NO_BUFFER, ANY, ANY, 0)
    body += match_bytes + instruction
    return HEADER.pack(OFP_VERSION, OFPT_FLOW_MOD, HEADER.size + len(body), xid) + body
