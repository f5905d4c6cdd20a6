"""Flow keys: from a raw Ethernet frame (or from typed-in fields) to the bytes every gateway
hashes identically.

A key is a short ``bytes`` value: cheap to hash with mmh3, cheap to store in the flow table, and
identical on every controller because it is built from the packet alone.

- ``5-tuple`` (default): protocol, source port, destination port, source and destination address.
- ``src-ip`` (client affinity): source and destination address only, so every connection of one
  client to one VIP address lands on the same backend.

The destination address is part of both, so two VIPs with the same backends spread differently.
Two keys come from one packet: the hash key (``hash_key``: what is hashed to pick a backend) and
the flow key (``flow_key``: the key of the flow's entry in the gateway's flow table; the hash
key, plus the VIP's port and protocol in ``src-ip`` mode).  Addresses are packed (4 or 16
bytes), so IPv4 and IPv6 keys never collide with each other.

Parsing raises ``FrameError`` (a ``ValueError``) with a short ``reason`` suitable as a metric
label; it never asserts and never raises anything else for any input bytes.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import NamedTuple

import mmh3

from ryu_app.core.model import HASH_5TUPLE, HASH_MODES, HASH_SRC_IP, PROTO_TCP, PROTO_UDP, PROTOCOLS

FLOW_SEED = 0x4C4B5354  # fixed: part of the cross-gateway contract, like maglev's seeds

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
ETH_VLAN_TYPES = (0x8100, 0x88A8, 0x9100)
PROTOCOL_NAMES = {number: name for name, number in PROTOCOLS.items()}
TCP_SYN = 0x02
TCP_ACK = 0x10

# IPv6 extension headers we step over to reach TCP/UDP (RFC 8200 section 4).
_IPV6_SKIPPABLE = frozenset({0, 43, 60})  # hop-by-hop, routing, destination options
_IPV6_FRAGMENT = 44
_MAX_IPV6_EXTENSIONS = 8

_ETH_HEADER = struct.Struct("!6s6sH")
_PORTS = struct.Struct("!HH")
_KEY_HEAD = struct.Struct("!BHH")
_PORT_PROTO = struct.Struct("!HB")


class FrameError(ValueError):
    """A frame that is not VIP-able traffic; ``reason`` is a stable, short label."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class FieldError(ValueError):
    """A typed-in flow field that does not parse; ``str()`` is ``"field: reason"``."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class Flow(NamedTuple):
    """The fields a load balancer needs from one packet.

    A named tuple, not a dataclass: one is made per packet-in, and a tuple is the cheapest
    immutable record Python has (a frozen dataclass took several times as long to build)."""

    version: int  # 4 or 6
    src: bytes  # packed address
    dst: bytes
    proto: int  # PROTO_TCP or PROTO_UDP
    src_port: int
    dst_port: int
    tcp_flags: int = 0  # 0 for UDP
    eth_src: bytes = b""
    eth_dst: bytes = b""

    @property
    def is_tcp_non_syn(self) -> bool:
        """A TCP packet that cannot open a connection: the flow began somewhere else."""
        return self.proto == PROTO_TCP and not self.tcp_flags & TCP_SYN

    @property
    def src_ip(self) -> str:
        return str(ipaddress.ip_address(self.src))

    @property
    def dst_ip(self) -> str:
        return str(ipaddress.ip_address(self.dst))

    @property
    def protocol_name(self) -> str:
        return PROTOCOL_NAMES[self.proto]


# The common case in one unpack: Ethernet, IPv4 without options, TCP.  MACs, ethertype,
# version/IHL, total length, flags/fragment offset, protocol, addresses, ports, TCP data
# offset and flags.
_IPV4_TCP = struct.Struct("!6s6sHBxHxxHxB2x4s4sHH8xBB")
_IPV4_TCP_LEN = 14 + 20 + 20  # the whole TCP header must be there, as parse_any_frame checks


def parse_frame(frame: bytes) -> Flow:
    """Parse an untagged Ethernet frame carrying IPv4 or IPv6 and TCP or UDP."""
    if len(frame) >= _IPV4_TCP_LEN:  # one unpack for IPv4 (no options) + TCP, the usual frame
        (eth_dst, eth_src, ethertype, version_ihl, total_len, fragment, proto, src, dst,
         src_port, dst_port, data_offset, flags) = _IPV4_TCP.unpack_from(frame)  # fmt: skip
        if (
            ethertype == ETH_IPV4
            and version_ihl == 0x45
            and proto == PROTO_TCP
            and total_len >= 20
            and not fragment & 0x3FFF
            and data_offset >= 0x50
        ):
            return Flow(4, src, dst, PROTO_TCP, src_port, dst_port, flags, eth_src, eth_dst)
    return parse_any_frame(frame)


def parse_any_frame(frame: bytes) -> Flow:
    """``parse_frame`` without its shortcut for the usual frame: every case, field by field."""
    if len(frame) < _ETH_HEADER.size:
        raise FrameError("truncated", f"{len(frame)} bytes is shorter than an Ethernet header")
    eth_dst, eth_src, ethertype = _ETH_HEADER.unpack_from(frame)
    if ethertype == ETH_IPV4:
        return _parse_ipv4(frame, _ETH_HEADER.size, eth_src, eth_dst)
    if ethertype == ETH_IPV6:
        return _parse_ipv6(frame, _ETH_HEADER.size, eth_src, eth_dst)
    if ethertype in ETH_VLAN_TYPES:
        raise FrameError("vlan", "VLAN-tagged frames are not load balanced")
    raise FrameError("not-ip", f"ethertype 0x{ethertype:04x}")


def _parse_ipv4(frame: bytes, start: int, eth_src: bytes, eth_dst: bytes) -> Flow:
    if len(frame) < start + 20:
        raise FrameError("truncated", "IPv4 header cut short")
    version_ihl = frame[start]
    if version_ihl >> 4 != 4:
        raise FrameError("bad-ip", f"IP version {version_ihl >> 4} in an IPv4 frame")
    header_len = (version_ihl & 0x0F) * 4
    if header_len < 20:
        raise FrameError("bad-ip", f"IPv4 header length {header_len} < 20")
    total_len = int.from_bytes(frame[start + 2 : start + 4], "big")
    if total_len < header_len:
        raise FrameError("bad-ip", f"IPv4 total length {total_len} < header length {header_len}")
    flags_fragment = int.from_bytes(frame[start + 6 : start + 8], "big")
    if flags_fragment & 0x3FFF:  # MF set or non-zero offset: ports are not (all) there
        raise FrameError("fragment", "IPv4 fragments are not load balanced")
    proto = frame[start + 9]
    src = bytes(frame[start + 12 : start + 16])
    dst = bytes(frame[start + 16 : start + 20])
    return _parse_l4(frame, start + header_len, 4, src, dst, proto, eth_src, eth_dst)


def _parse_ipv6(frame: bytes, start: int, eth_src: bytes, eth_dst: bytes) -> Flow:
    if len(frame) < start + 40:
        raise FrameError("truncated", "IPv6 header cut short")
    if frame[start] >> 4 != 6:
        raise FrameError("bad-ip", f"IP version {frame[start] >> 4} in an IPv6 frame")
    next_header = frame[start + 6]
    src = bytes(frame[start + 8 : start + 24])
    dst = bytes(frame[start + 24 : start + 40])
    offset = start + 40
    for skipped in range(_MAX_IPV6_EXTENSIONS + 1):
        if next_header == _IPV6_FRAGMENT:
            raise FrameError("fragment", "IPv6 fragments are not load balanced")
        if next_header not in _IPV6_SKIPPABLE:
            return _parse_l4(frame, offset, 6, src, dst, next_header, eth_src, eth_dst)
        if skipped == _MAX_IPV6_EXTENSIONS:
            break
        if len(frame) < offset + 2:
            raise FrameError("truncated", "IPv6 extension header cut short")
        next_header = frame[offset]
        offset += (frame[offset + 1] + 1) * 8
    raise FrameError("bad-ip", f"more than {_MAX_IPV6_EXTENSIONS} IPv6 extension headers")


def _parse_l4(frame, offset, version, src, dst, proto, eth_src, eth_dst) -> Flow:
    if proto == PROTO_TCP:
        if len(frame) < offset + 20:
            raise FrameError("truncated", "TCP header cut short")
        if frame[offset + 12] >> 4 < 5:
            raise FrameError("bad-l4", "TCP data offset < 5")
        src_port, dst_port = _PORTS.unpack_from(frame, offset)
        flags = frame[offset + 13]
        return Flow(version, src, dst, proto, src_port, dst_port, flags, eth_src, eth_dst)
    if proto == PROTO_UDP:
        if len(frame) < offset + 8:
            raise FrameError("truncated", "UDP header cut short")
        src_port, dst_port = _PORTS.unpack_from(frame, offset)
        return Flow(version, src, dst, proto, src_port, dst_port, 0, eth_src, eth_dst)
    raise FrameError("not-tcp-udp", f"IP protocol {proto}")


def flow_from_fields(
    src_ip: str, src_port: int | str, dst_ip: str, dst_port: int | str, proto: int | str
) -> Flow:
    """A Flow from typed-in values (CLI, REST); raises ValueError naming the bad field."""
    try:
        src = ipaddress.ip_address(str(src_ip).strip())
    except ValueError:
        raise FieldError("src_ip", f"{src_ip!r} is not an IPv4 or IPv6 address") from None
    try:
        dst = ipaddress.ip_address(str(dst_ip).strip())
    except ValueError:
        raise FieldError("dst_ip", f"{dst_ip!r} is not an IPv4 or IPv6 address") from None
    if src.version != dst.version:
        raise FieldError(
            "dst_ip", f"{dst} is IPv{dst.version} but src_ip {src} is IPv{src.version}"
        )
    proto_number = parse_protocol(proto)
    return Flow(
        src.version,
        src.packed,
        dst.packed,
        proto_number,
        parse_port(src_port, "src_port"),
        parse_port(dst_port, "dst_port"),
        TCP_SYN if proto_number == PROTO_TCP else 0,
    )


def parse_port(value: int | str, field: str) -> int:
    if isinstance(value, bool):
        raise FieldError(field, f"{value!r} is not a port number")
    try:
        port = int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        raise FieldError(field, f"{value!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise FieldError(field, f"{port} is outside 0..65535")
    return port


def parse_protocol(value: int | str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value in PROTOCOL_NAMES:
        return value
    text = str(value).strip().lower()
    if text in PROTOCOLS:
        return PROTOCOLS[text]
    if text.isdigit() and int(text) in PROTOCOL_NAMES:
        return int(text)
    raise FieldError("proto", f"{value!r} is not tcp, udp, 6 or 17")


def hash_key(flow: Flow, mode: str) -> bytes:
    """The bytes hashed to choose a backend (identical on every gateway)."""
    if mode == HASH_5TUPLE:
        return _KEY_HEAD.pack(flow.proto, flow.src_port, flow.dst_port) + flow.src + flow.dst
    if mode == HASH_SRC_IP:
        return flow.src + flow.dst
    raise ValueError(f"hash mode must be one of {', '.join(HASH_MODES)}, got {mode!r}")


def flow_key(flow: Flow, mode: str) -> bytes:
    """The key of the flow's flow-table entry: the hash key, plus the VIP port and protocol
    in ``src-ip`` mode so that two VIPs on one address never share an entry."""
    key = hash_key(flow, mode)
    if mode == HASH_SRC_IP:
        key += _PORT_PROTO.pack(flow.dst_port, flow.proto)
    return key


def describe_key(key: bytes) -> dict:
    """A flow key back as fields (for listings): the inverse of ``flow_key``."""
    for size in (4, 16):
        if len(key) == _KEY_HEAD.size + 2 * size:  # 5-tuple
            proto, src_port, dst_port = _KEY_HEAD.unpack_from(key)
            src, dst = key[5 : 5 + size], key[5 + size :]
            break
        if len(key) == 2 * size + _PORT_PROTO.size:  # src-ip: ports not part of the key
            src, dst = key[:size], key[size : 2 * size]
            dst_port, proto = _PORT_PROTO.unpack_from(key, 2 * size)
            src_port = None
            break
    else:
        raise ValueError(f"not a flow-table key: {len(key)} bytes")
    return {
        "src_ip": _address_text(src),
        "src_port": src_port,
        "dst_ip": _address_text(dst),
        "dst_port": dst_port,
        "proto": PROTOCOL_NAMES.get(proto, str(proto)),
    }


def _address_text(packed: bytes) -> str:
    """What ``str(ipaddress.ip_address(packed))`` says; an IPv4 address written directly, ten
    times faster (a page of the flow listing names a thousand)."""
    if len(packed) == 4:
        return "%d.%d.%d.%d" % tuple(packed)  # noqa: UP031 - the fastest spelling
    return str(ipaddress.IPv6Address(packed))


def flow_hash(key: bytes) -> int:
    """32-bit unsigned mmh3 of a key, with Lockstep's fixed seed."""
    return mmh3.hash(key, FLOW_SEED, signed=False)
