"""The few frames a gateway's controller writes itself, and the replies it reads back.

- TCP segments of health probes (``tcp_frame``, ``parse_segment``): IPv4 or IPv6, checksums
  computed here, so a probe is an ordinary packet-out through the tunnel (see ``prober``).
- IPv6 neighbour discovery for the gateway's own addresses (``parse_solicitation``,
  ``neighbour_advertisement``, RFC 4861 sections 4.3 and 4.4): the router must resolve the
  gateway's IPv6 address to send it VIP traffic.  (ARP is answered in the switch; ND needs a
  checksum over the rewritten addresses, which OpenFlow actions cannot compute.)

Pure and allocation-light; every parser raises ``FrameError`` and nothing else.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ryu_app.core.flowkey import ETH_IPV4, ETH_IPV6, PROTO_TCP, FrameError

TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_PSH = 0x08
TCP_ACK = 0x10

PROTO_ICMPV6 = 58
ND_SOLICITATION = 135
ND_ADVERTISEMENT = 136
ND_OPTION_TARGET_MAC = 2
ND_HOP_LIMIT = 255  # RFC 4861: anything else did not come from the link itself
ALL_NODES = bytes.fromhex("ff020000000000000000000000000001")
UNSPECIFIED = bytes(16)

_ETH = struct.Struct("!6s6sH")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_IPV6 = struct.Struct("!IHBB16s16s")
_TCP = struct.Struct("!HHIIBBHHH")
_ND_ADVERT = struct.Struct("!BBHI16sBB6s")
_WINDOW = 64240
_TTL = 64


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _pseudo_header(src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    if len(src) == 4:
        return src + dst + struct.pack("!BBH", 0, proto, length)
    return src + dst + struct.pack("!IxxxB", length, proto)


@dataclass(frozen=True, slots=True)
class Segment:
    """A TCP segment as a prober needs it."""

    src: bytes
    dst: bytes
    src_port: int
    dst_port: int
    seq: int
    ack: int
    flags: int
    payload: bytes


def tcp_frame(
    eth_src: bytes,
    eth_dst: bytes,
    src: bytes,
    dst: bytes,
    src_port: int,
    dst_port: int,
    seq: int,
    ack: int,
    flags: int,
    payload: bytes = b"",
) -> bytes:
    """One Ethernet frame with a TCP segment; ``src``/``dst`` are packed IPv4 or IPv6."""
    header = _TCP.pack(src_port, dst_port, seq, ack, 5 << 4, flags, _WINDOW, 0, 0)
    length = len(header) + len(payload)
    tcp_sum = checksum(_pseudo_header(src, dst, PROTO_TCP, length) + header + payload)
    segment = header[:16] + struct.pack("!H", tcp_sum) + header[18:] + payload
    if len(src) == 4:
        ip = _IPV4.pack(0x45, 0, 20 + length, 0, 0x4000, _TTL, PROTO_TCP, 0, src, dst)
        ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
        return _ETH.pack(eth_dst, eth_src, ETH_IPV4) + ip + segment
    ip = _IPV6.pack(6 << 28, length, PROTO_TCP, _TTL, src, dst)
    return _ETH.pack(eth_dst, eth_src, ETH_IPV6) + ip + segment


def parse_segment(frame: bytes) -> Segment:
    """The TCP segment in an untagged IPv4/IPv6 frame (no IPv6 extension headers)."""
    if len(frame) < _ETH.size:
        raise FrameError("truncated", "shorter than an Ethernet header")
    ethertype = int.from_bytes(frame[12:14], "big")
    if ethertype == ETH_IPV4:
        if len(frame) < 34:
            raise FrameError("truncated", "IPv4 header cut short")
        header_len = (frame[14] & 0x0F) * 4
        total_len = int.from_bytes(frame[16:18], "big")
        if frame[23] != PROTO_TCP:
            raise FrameError("not-tcp-udp", f"IP protocol {frame[23]}")
        src, dst = bytes(frame[26:30]), bytes(frame[30:34])
        start, end = 14 + header_len, 14 + total_len
    elif ethertype == ETH_IPV6:
        if len(frame) < 54:
            raise FrameError("truncated", "IPv6 header cut short")
        if frame[20] != PROTO_TCP:
            raise FrameError("not-tcp-udp", f"IPv6 next header {frame[20]}")
        src, dst = bytes(frame[22:38]), bytes(frame[38:54])
        start, end = 54, 54 + int.from_bytes(frame[18:20], "big")
    else:
        raise FrameError("not-ip", f"ethertype 0x{ethertype:04x}")
    if len(frame) < start + _TCP.size or end < start + _TCP.size:
        raise FrameError("truncated", "TCP header cut short")
    src_port, dst_port, seq, ack, offset, flags, *_ = _TCP.unpack_from(frame, start)
    data_start = start + (offset >> 4) * 4
    if data_start > end or end > len(frame):
        raise FrameError("bad-l4", "TCP data offset or IP length beyond the frame")
    return Segment(src, dst, src_port, dst_port, seq, ack, flags, bytes(frame[data_start:end]))


@dataclass(frozen=True, slots=True)
class Solicitation:
    eth_src: bytes
    src: bytes  # packed IPv6; all zeros during duplicate address detection
    target: bytes


def parse_solicitation(frame: bytes) -> Solicitation | None:
    """An ICMPv6 neighbour solicitation, or None if the frame is something else."""
    if len(frame) < 78 or frame[12:14] != b"\x86\xdd" or frame[20] != PROTO_ICMPV6:
        return None
    if frame[54] != ND_SOLICITATION or frame[55] != 0 or frame[21] != ND_HOP_LIMIT:
        return None
    length = int.from_bytes(frame[18:20], "big")
    message = bytes(frame[54 : 54 + length])
    if length < 24 or len(message) != length:
        return None
    # RFC 4861 7.1.1: a solicitation with a bad checksum is silently discarded.
    if checksum(_pseudo_header(frame[22:38], frame[38:54], PROTO_ICMPV6, length) + message):
        return None
    return Solicitation(bytes(frame[6:12]), bytes(frame[22:38]), bytes(frame[62:78]))


def neighbour_advertisement(solicitation: Solicitation, mac: bytes) -> bytes:
    """The solicited advertisement (RFC 4861 4.4): "the target is at ``mac``"."""
    if solicitation.src == UNSPECIFIED:  # duplicate address detection: tell everyone
        dst, flags = ALL_NODES, 0x20000000  # override
        eth_dst = b"\x33\x33" + ALL_NODES[12:]
    else:
        dst, flags = solicitation.src, 0x60000000  # solicited, override
        eth_dst = solicitation.eth_src
    src = solicitation.target
    body = _ND_ADVERT.pack(
        ND_ADVERTISEMENT, 0, 0, flags, solicitation.target, ND_OPTION_TARGET_MAC, 1, mac
    )
    icmp_sum = checksum(_pseudo_header(src, dst, PROTO_ICMPV6, len(body)) + body)
    body = body[:2] + struct.pack("!H", icmp_sum) + body[4:]
    ip = _IPV6.pack(6 << 28, len(body), PROTO_ICMPV6, ND_HOP_LIMIT, src, dst)
    return _ETH.pack(eth_dst, mac, ETH_IPV6) + ip + body
