"""Tests for ryu_app.core.flowkey: frame parsing, flow keys and the cross-gateway flow hash."""

from __future__ import annotations

import ipaddress
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ryu_app.core.flowkey import (
    HASH_5TUPLE,
    HASH_SRC_IP,
    PROTO_TCP,
    PROTO_UDP,
    TCP_ACK,
    TCP_SYN,
    FieldError,
    Flow,
    FrameError,
    describe_key,
    flow_from_fields,
    flow_hash,
    flow_key,
    hash_key,
    parse_any_frame,
    parse_frame,
)

REPO_ROOT = Path(__file__).resolve().parents[3]

KNOWN_REASONS = {"truncated", "vlan", "not-ip", "bad-ip", "fragment", "not-tcp-udp", "bad-l4"}

# --------------------------------------------------------------------------------------------
# Hand-built frames.  Every header is packed field by field with struct so that a reader can
# check each byte against the RFCs; nothing here calls the code under test.
# --------------------------------------------------------------------------------------------

MAC_DST = bytes.fromhex("020000000001")  # locally administered unicast: the gateway
MAC_SRC = bytes.fromhex("020000000002")  # locally administered unicast: the client
V4_SRC = bytes([192, 0, 2, 1])  # 192.0.2.1 (TEST-NET-1), the client
V4_DST = bytes([198, 51, 100, 10])  # 198.51.100.10 (TEST-NET-2), the VIP
V6_SRC = ipaddress.IPv6Address("2001:db8::1").packed  # documentation prefix, the client
V6_DST = ipaddress.IPv6Address("2001:db8:ffff::10").packed  # documentation prefix, the VIP


def ethernet(ethertype: int, dst: bytes = MAC_DST, src: bytes = MAC_SRC) -> bytes:
    return struct.pack(
        "!6s6sH",
        dst,  # destination MAC (6 bytes)
        src,  # source MAC (6 bytes)
        ethertype,  # EtherType (2 bytes): 0x0800 IPv4, 0x86DD IPv6, 0x8100 VLAN, 0x0806 ARP
    )


def ipv4_checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4(
    proto: int,
    payload_len: int,
    *,
    ihl: int = 5,
    version: int = 4,
    flags_fragment: int = 0x4000,
    options: bytes = b"",
    src: bytes = V4_SRC,
    dst: bytes = V4_DST,
) -> bytes:
    header_len = 20 + len(options)
    fields = [
        version << 4 | ihl,  # version (4 bits) | IHL in 32-bit words (4 bits)
        0,  # DSCP (6 bits) | ECN (2 bits)
        header_len + payload_len,  # total length: IP header + payload, in bytes
        0x1234,  # identification
        flags_fragment,  # flags (3 bits: reserved, DF, MF) | fragment offset (13 bits)
        64,  # TTL
        proto,  # protocol: 6 TCP, 17 UDP, 1 ICMP
        0,  # header checksum: zero while computing it
        src,  # source address (4 bytes)
        dst,  # destination address (4 bytes)
    ]
    header = struct.pack("!BBHHHBBH4s4s", *fields) + options
    fields[7] = ipv4_checksum(header)
    return struct.pack("!BBHHHBBH4s4s", *fields) + options


def ipv6(next_header: int, payload_len: int, *, version: int = 6) -> bytes:
    return struct.pack(
        "!IHBB16s16s",
        version << 28,  # version (4 bits) | traffic class (8 bits) | flow label (20 bits)
        payload_len,  # payload length: everything after this 40-byte header
        next_header,  # next header: 6 TCP, 17 UDP, 0 hop-by-hop, 44 fragment, 58 ICMPv6
        64,  # hop limit
        V6_SRC,  # source address (16 bytes)
        V6_DST,  # destination address (16 bytes)
    )


def hop_by_hop(next_header: int) -> bytes:
    return struct.pack(
        "!BB6s",
        next_header,  # next header after this extension header
        0,  # header extension length in 8-octet units, not counting the first 8 octets
        bytes([1, 4, 0, 0, 0, 0]),  # one PadN option: type 1, data length 4, four zero bytes
    )


def fragment_header(next_header: int) -> bytes:
    return struct.pack(
        "!BBHI",
        next_header,  # next header of the fragmented payload
        0,  # reserved
        0x0001,  # fragment offset 0 (13 bits) | reserved (2 bits) | M flag = 1
        0xCAFE,  # identification
    )


def tcp(src_port: int, dst_port: int, flags: int, *, data_offset: int = 5) -> bytes:
    return struct.pack(
        "!HHIIBBHHH",
        src_port,  # source port
        dst_port,  # destination port
        1000,  # sequence number
        0,  # acknowledgment number
        data_offset << 4,  # data offset in 32-bit words (4 bits) | reserved (4 bits)
        flags,  # flags: CWR ECE URG ACK PSH RST SYN FIN
        64240,  # window size
        0,  # checksum (not verified by the parser)
        0,  # urgent pointer
    )


def udp(src_port: int, dst_port: int, payload_len: int = 0) -> bytes:
    return struct.pack(
        "!HHHH",
        src_port,  # source port
        dst_port,  # destination port
        8 + payload_len,  # length: UDP header + payload
        0,  # checksum (0 = none, allowed for IPv4 UDP)
    )


# The four golden frames: headers only, so that every shorter prefix is a truncated frame.
IPV4_TCP_SYN = ethernet(0x0800) + ipv4(PROTO_TCP, 20) + tcp(40000, 80, TCP_SYN)
IPV4_UDP = ethernet(0x0800) + ipv4(PROTO_UDP, 8) + udp(5353, 53)
IPV6_TCP_SYN = ethernet(0x86DD) + ipv6(PROTO_TCP, 20) + tcp(50000, 443, TCP_SYN)
IPV6_HBH_UDP = ethernet(0x86DD) + ipv6(0, 16) + hop_by_hop(PROTO_UDP) + udp(40001, 4789)

GOLDEN_FRAMES = {
    "ipv4-tcp-syn": IPV4_TCP_SYN,
    "ipv4-udp": IPV4_UDP,
    "ipv6-tcp-syn": IPV6_TCP_SYN,
    "ipv6-hbh-udp": IPV6_HBH_UDP,
}


def test_golden_frames_have_the_hand_computed_lengths():
    assert len(IPV4_TCP_SYN) == 14 + 20 + 20
    assert len(IPV4_UDP) == 14 + 20 + 8
    assert len(IPV6_TCP_SYN) == 14 + 40 + 20
    assert len(IPV6_HBH_UDP) == 14 + 40 + 8 + 8
    # A spot check of the builder against bytes written out by hand.
    assert IPV4_TCP_SYN[:14] == bytes.fromhex("0200000000010200000000020800")
    assert IPV4_TCP_SYN[14:16] == bytes.fromhex("4500")  # version 4, IHL 5, DSCP/ECN 0
    assert IPV4_TCP_SYN[34:38] == bytes.fromhex("9c400050")  # ports 40000 -> 80


# --------------------------------------------------------------------------------------------
# Parsing the golden frames
# --------------------------------------------------------------------------------------------


def test_parse_ipv4_tcp_syn():
    flow = parse_frame(IPV4_TCP_SYN)
    assert flow.version == 4
    assert flow.src == V4_SRC
    assert flow.dst == V4_DST
    assert flow.proto == PROTO_TCP
    assert flow.src_port == 40000
    assert flow.dst_port == 80
    assert flow.tcp_flags == TCP_SYN
    assert flow.eth_src == MAC_SRC
    assert flow.eth_dst == MAC_DST
    assert flow.src_ip == "192.0.2.1"
    assert flow.dst_ip == "198.51.100.10"
    assert flow.protocol_name == "tcp"
    assert flow == Flow(4, V4_SRC, V4_DST, PROTO_TCP, 40000, 80, TCP_SYN, MAC_SRC, MAC_DST)


def test_parse_ipv4_udp():
    flow = parse_frame(IPV4_UDP)
    assert flow.version == 4
    assert flow.src == V4_SRC
    assert flow.dst == V4_DST
    assert flow.proto == PROTO_UDP
    assert flow.src_port == 5353
    assert flow.dst_port == 53
    assert flow.tcp_flags == 0
    assert flow.eth_src == MAC_SRC
    assert flow.eth_dst == MAC_DST
    assert flow.protocol_name == "udp"
    assert flow == Flow(4, V4_SRC, V4_DST, PROTO_UDP, 5353, 53, 0, MAC_SRC, MAC_DST)


def test_parse_ipv6_tcp_syn():
    flow = parse_frame(IPV6_TCP_SYN)
    assert flow.version == 6
    assert flow.src == V6_SRC
    assert flow.dst == V6_DST
    assert flow.proto == PROTO_TCP
    assert flow.src_port == 50000
    assert flow.dst_port == 443
    assert flow.tcp_flags == TCP_SYN
    assert flow.eth_src == MAC_SRC
    assert flow.eth_dst == MAC_DST
    assert flow.src_ip == "2001:db8::1"
    assert flow.dst_ip == "2001:db8:ffff::10"
    assert flow.protocol_name == "tcp"
    assert flow == Flow(6, V6_SRC, V6_DST, PROTO_TCP, 50000, 443, TCP_SYN, MAC_SRC, MAC_DST)


def test_parse_ipv6_udp_behind_hop_by_hop_header():
    flow = parse_frame(IPV6_HBH_UDP)
    assert flow.version == 6
    assert flow.src == V6_SRC
    assert flow.dst == V6_DST
    assert flow.proto == PROTO_UDP
    assert flow.src_port == 40001
    assert flow.dst_port == 4789
    assert flow.tcp_flags == 0
    assert flow.eth_src == MAC_SRC
    assert flow.eth_dst == MAC_DST
    assert flow.protocol_name == "udp"
    assert flow == Flow(6, V6_SRC, V6_DST, PROTO_UDP, 40001, 4789, 0, MAC_SRC, MAC_DST)


def test_parse_ipv4_with_options_reads_ports_after_the_options():
    options = bytes([1, 1, 1, 1])  # four NOP options: IHL becomes 6
    frame = ethernet(0x0800) + ipv4(PROTO_UDP, 8, ihl=6, options=options) + udp(1234, 53)
    flow = parse_frame(frame)
    assert (flow.src_port, flow.dst_port, flow.proto) == (1234, 53, PROTO_UDP)


def test_parse_ignores_payload_after_the_headers():
    payload = b"GET / HTTP/1.1\r\n\r\n"
    frame = ethernet(0x0800) + ipv4(PROTO_TCP, 20 + len(payload)) + tcp(40000, 80, 0x18)
    flow = parse_frame(frame + payload)
    assert (flow.src_port, flow.dst_port, flow.tcp_flags) == (40000, 80, 0x18)


def test_ipv4_dont_fragment_flag_alone_is_not_a_fragment():
    frame = ethernet(0x0800) + ipv4(PROTO_UDP, 8, flags_fragment=0x4000) + udp(1, 2)
    assert parse_frame(frame).dst_port == 2
    frame = ethernet(0x0800) + ipv4(PROTO_UDP, 8, flags_fragment=0) + udp(1, 2)
    assert parse_frame(frame).dst_port == 2


def test_parse_accepts_bytearray():
    assert parse_frame(bytearray(IPV4_TCP_SYN)) == parse_frame(IPV4_TCP_SYN)


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


def frame_error(frame: bytes) -> FrameError:
    with pytest.raises(FrameError) as info:
        parse_frame(frame)
    assert type(info.value) is FrameError
    assert isinstance(info.value, ValueError)
    return info.value


@pytest.mark.parametrize("name", sorted(GOLDEN_FRAMES))
def test_every_prefix_shorter_than_the_frame_is_truncated(name):
    frame = GOLDEN_FRAMES[name]
    parse_frame(frame)  # the full frame parses
    for length in range(len(frame)):
        error = frame_error(frame[:length])
        assert error.reason == "truncated", (length, str(error))


@pytest.mark.parametrize("tpid", [0x8100, 0x88A8, 0x9100])
def test_vlan_tagged_frame(tpid):
    tag = struct.pack(
        "!HH",
        5,  # TCI: PCP 0, DEI 0, VLAN id 5
        0x0800,  # inner EtherType: IPv4
    )
    frame = ethernet(tpid) + tag + ipv4(PROTO_TCP, 20) + tcp(40000, 80, TCP_SYN)
    assert frame_error(frame).reason == "vlan"


def test_arp_is_not_ip():
    arp = struct.pack(
        "!HHBBH6s4s6s4s",
        1,  # hardware type: Ethernet
        0x0800,  # protocol type: IPv4
        6,  # hardware address length
        4,  # protocol address length
        1,  # operation: request
        MAC_SRC,  # sender hardware address
        V4_SRC,  # sender protocol address
        bytes(6),  # target hardware address (unknown)
        V4_DST,  # target protocol address
    )
    error = frame_error(ethernet(0x0806, dst=b"\xff" * 6) + arp)
    assert error.reason == "not-ip"
    assert "0x0806" in str(error)


@pytest.mark.parametrize(
    "flags_fragment",
    [
        0x2000,  # MF set, offset 0: the first fragment
        0x0001,  # offset 1 (8 bytes), MF clear: the last fragment
        0x2010,  # MF set and a non-zero offset: a middle fragment
        0x4000 | 0x0100,  # DF with a non-zero offset (nonsense, but still not the first bytes)
    ],
)
def test_ipv4_fragment(flags_fragment):
    frame = ethernet(0x0800) + ipv4(PROTO_TCP, 20, flags_fragment=flags_fragment)
    frame += tcp(40000, 80, TCP_SYN)
    assert frame_error(frame).reason == "fragment"


def test_ipv6_fragment_header():
    frame = ethernet(0x86DD) + ipv6(44, 8 + 8) + fragment_header(PROTO_UDP) + udp(1, 2)
    assert frame_error(frame).reason == "fragment"


def test_ipv6_fragment_header_behind_hop_by_hop():
    frame = ethernet(0x86DD) + ipv6(0, 8 + 8 + 8) + hop_by_hop(44)
    frame += fragment_header(PROTO_UDP) + udp(1, 2)
    assert frame_error(frame).reason == "fragment"


def test_icmp_is_not_tcp_udp():
    icmp = struct.pack(
        "!BBHHH",
        8,  # type: echo request
        0,  # code
        0,  # checksum
        1,  # identifier
        1,  # sequence number
    )
    assert frame_error(ethernet(0x0800) + ipv4(1, 8) + icmp).reason == "not-tcp-udp"


def test_icmpv6_is_not_tcp_udp():
    icmpv6 = struct.pack("!BBHI", 128, 0, 0, 0)  # echo request: type, code, checksum, id/seq
    assert frame_error(ethernet(0x86DD) + ipv6(58, 8) + icmpv6).reason == "not-tcp-udp"


@pytest.mark.parametrize("ihl", [0, 1, 4])
def test_ipv4_header_length_below_20_is_bad_ip(ihl):
    frame = ethernet(0x0800) + ipv4(PROTO_TCP, 20, ihl=ihl) + tcp(40000, 80, TCP_SYN)
    assert frame_error(frame).reason == "bad-ip"


def test_ipv4_header_longer_than_total_length_is_bad_ip():
    # IHL 15 = 60 bytes, but the total length field says 20 + 20 = 40.
    frame = ethernet(0x0800) + ipv4(PROTO_TCP, 20, ihl=15) + tcp(40000, 80, TCP_SYN)
    frame += bytes(40)
    assert frame_error(frame).reason == "bad-ip"


def test_wrong_ip_version_is_bad_ip():
    frame = ethernet(0x0800) + ipv4(PROTO_UDP, 8, version=6) + udp(1, 2)
    assert frame_error(frame).reason == "bad-ip"
    frame = ethernet(0x86DD) + ipv6(PROTO_UDP, 8, version=4) + udp(1, 2)
    assert frame_error(frame).reason == "bad-ip"


@pytest.mark.parametrize("data_offset", [0, 1, 4])
def test_tcp_data_offset_below_5_is_bad_l4(data_offset):
    frame = (
        ethernet(0x0800) + ipv4(PROTO_TCP, 20) + tcp(40000, 80, TCP_SYN, data_offset=data_offset)
    )
    assert frame_error(frame).reason == "bad-l4"
    frame = (
        ethernet(0x86DD) + ipv6(PROTO_TCP, 20) + tcp(40000, 80, TCP_SYN, data_offset=data_offset)
    )
    assert frame_error(frame).reason == "bad-l4"


def destination_options(next_header: int) -> bytes:
    return struct.pack(
        "!BB6s",
        next_header,  # next header
        0,  # header extension length: 8 bytes in all
        bytes([1, 4, 0, 0, 0, 0]),  # one PadN option
    )


def with_extension_headers(count: int) -> bytes:
    """An IPv6 UDP frame behind ``count`` extension headers: hop-by-hop, then destination
    options (the parser steps over any mix of them)."""
    kinds = [0] + [60] * (count - 1)  # next-header values: 0 hop-by-hop, 60 dest. options
    chain = b""
    for position in range(count):
        following = kinds[position + 1] if position + 1 < count else PROTO_UDP
        chain += destination_options(following)  # same layout as hop-by-hop
    return ethernet(0x86DD) + ipv6(kinds[0], len(chain) + 8) + chain + udp(7, 9)


@pytest.mark.parametrize("count", [1, 2, 7])
def test_ipv6_extension_headers_are_stepped_over(count):
    flow = parse_frame(with_extension_headers(count))
    assert (flow.proto, flow.src_port, flow.dst_port) == (PROTO_UDP, 7, 9)


def test_exactly_max_ipv6_extension_headers_are_accepted():
    # flowkey's limit is _MAX_IPV6_EXTENSIONS = 8 and its error says "more than 8 IPv6
    # extension headers", so a chain of exactly 8 must parse.  (Found failing: the loop runs
    # 8 times and only the 9th header would be examined as TCP/UDP, so 8 is rejected.)
    flow = parse_frame(with_extension_headers(8))
    assert (flow.proto, flow.src_port, flow.dst_port) == (PROTO_UDP, 7, 9)


def test_more_than_max_ipv6_extension_headers_is_bad_ip():
    error = frame_error(with_extension_headers(9))
    assert error.reason == "bad-ip"
    assert "more than 8" in str(error)


def test_frame_error_carries_reason_and_detail():
    error = FrameError("bad-l4", "TCP data offset < 5")
    assert error.reason == "bad-l4"
    assert str(error) == "bad-l4: TCP data offset < 5"
    assert str(FrameError("vlan")) == "vlan"


# --------------------------------------------------------------------------------------------
# Robustness: any bytes give a Flow or a FrameError, never another exception
# --------------------------------------------------------------------------------------------


def parse_or_frame_error(frame: bytes) -> None:
    try:
        flow = parse_frame(frame)
    except Exception as error:  # the point is to catch everything
        assert type(error) is FrameError, repr(error)
        assert error.reason in KNOWN_REASONS
        return
    assert type(flow) is Flow
    assert flow.version in (4, 6)
    assert len(flow.src) == len(flow.dst) == (4 if flow.version == 4 else 16)
    assert flow.proto in (PROTO_TCP, PROTO_UDP)
    assert 0 <= flow.src_port <= 65535
    assert 0 <= flow.dst_port <= 65535
    assert 0 <= flow.tcp_flags <= 255
    assert flow.tcp_flags == 0 or flow.proto == PROTO_TCP
    assert len(flow.eth_src) == len(flow.eth_dst) == 6
    for mode in (HASH_5TUPLE, HASH_SRC_IP):
        assert 0 <= flow_hash(flow_key(flow, mode)) < 2**32


@given(st.binary(max_size=200))
def test_arbitrary_bytes_parse_or_raise_frame_error(frame):
    parse_or_frame_error(frame)


@given(
    st.sampled_from([0x0800, 0x86DD, 0x8100, 0x0806]),
    st.binary(max_size=120),
)
def test_ip_ethertype_with_random_payload_parses_or_raises_frame_error(ethertype, rest):
    parse_or_frame_error(ethernet(ethertype) + rest)


@given(
    st.sampled_from(sorted(GOLDEN_FRAMES)),
    st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), max_size=6),
    st.integers(min_value=0, max_value=100),
    st.binary(max_size=16),
)
def test_mutated_valid_frames_parse_or_raise_frame_error(name, mutations, cut, tail):
    frame = bytearray(GOLDEN_FRAMES[name] + tail)
    for index, value in mutations:
        frame[index % len(frame)] = value
    parse_or_frame_error(bytes(frame))
    parse_or_frame_error(bytes(frame[: len(frame) - cut]))


def outcome(parse, frame):
    try:
        return parse(frame)
    except FrameError as error:
        return error.reason


@given(
    st.sampled_from(sorted(GOLDEN_FRAMES)),
    st.lists(st.tuples(st.integers(0, 60), st.integers(0, 255)), max_size=4),
    st.binary(max_size=16),
)
def test_the_shortcut_for_ipv4_tcp_gives_what_the_field_by_field_parse_gives(name, edits, tail):
    """parse_frame's one-unpack shortcut must never answer differently from parse_any_frame;
    the edits land in the headers, where they flip the shortcut's conditions."""
    frame = bytearray(GOLDEN_FRAMES[name] + tail)
    for index, value in edits:
        frame[index % len(frame)] = value
    assert outcome(parse_frame, bytes(frame)) == outcome(parse_any_frame, bytes(frame))


def test_the_shortcut_is_taken_for_a_plain_ipv4_tcp_syn():
    flow = parse_frame(IPV4_TCP_SYN)
    assert flow == parse_any_frame(IPV4_TCP_SYN) and type(flow.src) is bytes


# --------------------------------------------------------------------------------------------
# is_tcp_non_syn
# --------------------------------------------------------------------------------------------


def test_is_tcp_non_syn():
    def tcp_frame(flags):
        return ethernet(0x0800) + ipv4(PROTO_TCP, 20) + tcp(40000, 80, flags)

    assert parse_frame(tcp_frame(TCP_SYN)).is_tcp_non_syn is False
    assert parse_frame(tcp_frame(TCP_SYN | TCP_ACK)).is_tcp_non_syn is False
    assert parse_frame(tcp_frame(TCP_ACK)).is_tcp_non_syn is True
    assert parse_frame(tcp_frame(TCP_ACK | 0x08)).is_tcp_non_syn is True  # ACK + PSH
    assert parse_frame(tcp_frame(0x04)).is_tcp_non_syn is True  # RST
    assert parse_frame(IPV6_TCP_SYN).is_tcp_non_syn is False
    assert parse_frame(IPV4_UDP).is_tcp_non_syn is False
    assert parse_frame(IPV6_HBH_UDP).is_tcp_non_syn is False


# --------------------------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------------------------

BASE_V4 = Flow(4, V4_SRC, V4_DST, PROTO_TCP, 40000, 80, TCP_SYN)
BASE_V6 = Flow(6, V6_SRC, V6_DST, PROTO_TCP, 40000, 80, TCP_SYN)


def replace(flow: Flow, **changes) -> Flow:
    fields = {
        name: getattr(flow, name)
        for name in (
            "version",
            "src",
            "dst",
            "proto",
            "src_port",
            "dst_port",
            "tcp_flags",
            "eth_src",
            "eth_dst",
        )
    }
    fields.update(changes)
    return Flow(**fields)


def other_address(address: bytes, delta: int) -> bytes:
    value = (int.from_bytes(address, "big") + delta) % (1 << (8 * len(address)))
    return value.to_bytes(len(address), "big")


FIVE_TUPLE_FIELDS = ("src", "dst", "proto", "src_port", "dst_port")


def changed(flow: Flow, field: str, delta: int) -> Flow:
    if field in ("src", "dst"):
        return replace(flow, **{field: other_address(getattr(flow, field), delta)})
    if field == "proto":
        return replace(flow, proto=PROTO_UDP if flow.proto == PROTO_TCP else PROTO_TCP)
    return replace(flow, **{field: (getattr(flow, field) + delta) % 65536})


@given(
    st.sampled_from([BASE_V4, BASE_V6]),
    st.sampled_from(FIVE_TUPLE_FIELDS),
    st.integers(min_value=1, max_value=65535),
)
def test_five_tuple_key_differs_when_any_field_differs(base, field, delta):
    other = changed(base, field, delta)
    assert getattr(other, field) != getattr(base, field)
    assert hash_key(other, HASH_5TUPLE) != hash_key(base, HASH_5TUPLE)
    assert flow_key(other, HASH_5TUPLE) != flow_key(base, HASH_5TUPLE)


@given(
    st.sampled_from([BASE_V4, BASE_V6]),
    st.integers(0, 65535),
    st.integers(0, 65535),
    st.sampled_from([PROTO_TCP, PROTO_UDP]),
    st.integers(0, 255),
)
def test_src_ip_key_ignores_ports_protocol_and_flags(base, src_port, dst_port, proto, flags):
    other = replace(base, src_port=src_port, dst_port=dst_port, proto=proto, tcp_flags=flags)
    assert hash_key(other, HASH_SRC_IP) == hash_key(base, HASH_SRC_IP)
    assert hash_key(base, HASH_SRC_IP) == base.src + base.dst


@pytest.mark.parametrize("base", [BASE_V4, BASE_V6])
@pytest.mark.parametrize("mode", [HASH_5TUPLE, HASH_SRC_IP])
def test_source_and_destination_are_part_of_both_keys(base, mode):
    assert hash_key(changed(base, "src", 1), mode) != hash_key(base, mode)
    assert hash_key(changed(base, "dst", 1), mode) != hash_key(base, mode)
    # Swapping source and destination is a different flow too.
    swapped = replace(base, src=base.dst, dst=base.src)
    assert hash_key(swapped, mode) != hash_key(base, mode)


def test_flags_and_macs_are_not_part_of_the_key():
    other = replace(BASE_V4, tcp_flags=TCP_ACK, eth_src=b"\x01" * 6, eth_dst=b"\x02" * 6)
    for mode in (HASH_5TUPLE, HASH_SRC_IP):
        assert hash_key(other, mode) == hash_key(BASE_V4, mode)
        assert flow_key(other, mode) == flow_key(BASE_V4, mode)


@pytest.mark.parametrize("mode", [HASH_5TUPLE, HASH_SRC_IP])
def test_ipv4_and_ipv6_keys_differ(mode):
    v4 = flow_from_fields("192.0.2.1", 40000, "198.51.100.10", 80, "tcp")
    # The IPv4-mapped IPv6 form of the very same addresses.
    v6 = flow_from_fields("::ffff:192.0.2.1", 40000, "::ffff:198.51.100.10", 80, "tcp")
    assert hash_key(v4, mode) != hash_key(v6, mode)
    assert flow_key(v4, mode) != flow_key(v6, mode)
    assert len(hash_key(v4, mode)) != len(hash_key(v6, mode))


def test_five_tuple_key_layout():
    # protocol (1 byte) | source port (2) | destination port (2) | source | destination
    assert hash_key(BASE_V4, HASH_5TUPLE) == (
        bytes([6]) + (40000).to_bytes(2, "big") + (80).to_bytes(2, "big") + V4_SRC + V4_DST
    )
    assert flow_key(BASE_V4, HASH_5TUPLE) == hash_key(BASE_V4, HASH_5TUPLE)


@pytest.mark.parametrize("base", [BASE_V4, BASE_V6])
def test_src_ip_flow_key_includes_vip_port_and_protocol(base):
    http = replace(base, dst_port=80)
    https = replace(base, dst_port=443)
    # Same client, same VIP address: one backend for both VIP ports ...
    assert hash_key(http, HASH_SRC_IP) == hash_key(https, HASH_SRC_IP)
    # ... but one flow-table entry per VIP (port and protocol).
    assert flow_key(http, HASH_SRC_IP) != flow_key(https, HASH_SRC_IP)
    dns_tcp = replace(base, dst_port=53, proto=PROTO_TCP)
    dns_udp = replace(base, dst_port=53, proto=PROTO_UDP)
    assert hash_key(dns_tcp, HASH_SRC_IP) == hash_key(dns_udp, HASH_SRC_IP)
    assert flow_key(dns_tcp, HASH_SRC_IP) != flow_key(dns_udp, HASH_SRC_IP)
    # The client's own port is still ignored.
    assert flow_key(replace(http, src_port=1), HASH_SRC_IP) == flow_key(http, HASH_SRC_IP)


@pytest.mark.parametrize("mode", ["5tuple", "src_ip", "", None])
def test_unknown_hash_mode_is_rejected(mode):
    with pytest.raises(ValueError, match="hash mode"):
        hash_key(BASE_V4, mode)
    with pytest.raises(ValueError, match="hash mode"):
        flow_key(BASE_V4, mode)


# --------------------------------------------------------------------------------------------
# flow_hash: the cross-gateway contract
# --------------------------------------------------------------------------------------------

GOLDEN_KEY = bytes.fromhex("069c400050c0000201c633640a")  # TCP 192.0.2.1:40000 -> :80 VIP
# Cross-gateway contract: every gateway must compute this same value for this key.  Changing
# FLOW_SEED (or the hash function) moves live connections to other backends on an upgrade.
GOLDEN_HASH = 793262978


def test_golden_key_is_the_5tuple_key_of_the_base_flow():
    assert hash_key(BASE_V4, HASH_5TUPLE) == GOLDEN_KEY


def test_flow_hash_golden_value():
    assert flow_hash(GOLDEN_KEY) == GOLDEN_HASH


@given(st.binary(max_size=64))
def test_flow_hash_is_deterministic_and_unsigned_32_bit(key):
    value = flow_hash(key)
    assert value == flow_hash(bytes(key))
    assert 0 <= value < 2**32


def test_flow_hash_spreads_nearby_keys():
    values = {
        flow_hash(hash_key(replace(BASE_V4, src_port=port), HASH_5TUPLE)) for port in range(200)
    }
    assert len(values) == 200


@pytest.mark.parametrize("hash_seed", ["0", "1", "4242"])
def test_flow_hash_is_identical_in_another_interpreter(hash_seed):
    code = (
        "import sys\n"
        "from ryu_app.core.flowkey import flow_hash\n"
        f"sys.stdout.write(str(flow_hash(bytes.fromhex({GOLDEN_KEY.hex()!r}))))\n"
    )
    env = dict(os.environ, PYTHONHASHSEED=hash_seed)
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=60,
        check=True,
    )
    assert int(result.stdout) == GOLDEN_HASH


# --------------------------------------------------------------------------------------------
# flow_from_fields
# --------------------------------------------------------------------------------------------


def test_flow_from_fields_ipv4():
    flow = flow_from_fields("192.0.2.1", 40000, "198.51.100.10", 80, "tcp")
    assert flow == Flow(4, V4_SRC, V4_DST, PROTO_TCP, 40000, 80, TCP_SYN, b"", b"")
    assert flow.is_tcp_non_syn is False
    assert hash_key(flow, HASH_5TUPLE) == hash_key(parse_frame(IPV4_TCP_SYN), HASH_5TUPLE)


def test_flow_from_fields_ipv6_udp_with_strings_and_spaces():
    flow = flow_from_fields(" 2001:db8::1 ", " 40001 ", "2001:DB8:FFFF::10", "4789", " udp ")
    assert flow == Flow(6, V6_SRC, V6_DST, PROTO_UDP, 40001, 4789, 0, b"", b"")
    assert hash_key(flow, HASH_5TUPLE) == hash_key(parse_frame(IPV6_HBH_UDP), HASH_5TUPLE)


def test_flow_from_fields_port_bounds():
    assert flow_from_fields("10.0.0.1", 0, "10.0.0.2", 65535, "udp").src_port == 0
    assert flow_from_fields("10.0.0.1", 0, "10.0.0.2", 65535, "udp").dst_port == 65535


VALID = {
    "src_ip": "10.0.0.1",
    "src_port": 1234,
    "dst_ip": "10.0.0.2",
    "dst_port": 80,
    "proto": "tcp",
}

BAD_FIELDS = [
    ("src_ip", "10.0.0.256"),
    ("src_ip", "not-an-address"),
    ("src_ip", ""),
    ("src_ip", "10.0.0.0/24"),
    ("dst_ip", "::g"),
    ("dst_ip", "example.com"),
    ("src_port", -1),
    ("src_port", 65536),
    ("src_port", "http"),
    ("src_port", ""),
    ("src_port", True),
    ("src_port", 1.5),
    ("dst_port", 70000),
    ("dst_port", "-5"),
    ("dst_port", None),
    ("dst_port", False),
    ("proto", "icmp"),
    ("proto", 1),
    ("proto", "1"),
    ("proto", ""),
    ("proto", True),
    ("proto", 6.0),
    ("proto", None),
]


@pytest.mark.parametrize(("field", "value"), BAD_FIELDS)
def test_flow_from_fields_names_the_bad_field(field, value):
    with pytest.raises(ValueError) as info:
        flow_from_fields(**dict(VALID, **{field: value}))
    assert str(info.value).startswith(field + ":"), str(info.value)


@pytest.mark.parametrize(("src", "dst"), [("10.0.0.1", "2001:db8::1"), ("2001:db8::1", "10.0.0.1")])
def test_flow_from_fields_rejects_mixed_ip_versions(src, dst):
    with pytest.raises(FieldError) as info:
        flow_from_fields(src, 1234, dst, 80, "tcp")
    assert info.value.field == "dst_ip"
    assert info.value.reason.endswith(f"but src_ip {src} is IPv{4 if '.' in src else 6}")


@pytest.mark.parametrize(
    ("proto", "number"),
    [("tcp", PROTO_TCP), ("UDP", PROTO_UDP), (6, PROTO_TCP), ("17", PROTO_UDP), (" Tcp ", 6)],
)
def test_flow_from_fields_protocol_spellings(proto, number):
    flow = flow_from_fields("10.0.0.1", 1234, "10.0.0.2", 80, proto)
    assert flow.proto == number
    assert flow.tcp_flags == (TCP_SYN if number == PROTO_TCP else 0)


@given(st.binary(min_size=4, max_size=4) | st.binary(min_size=16, max_size=16))
def test_listed_addresses_read_as_ipaddress_writes_them(packed):
    key = flow_key(Flow(4 if len(packed) == 4 else 6, packed, packed, 6, 1, 2), HASH_5TUPLE)
    described = describe_key(key)
    assert described["src_ip"] == described["dst_ip"] == str(ipaddress.ip_address(packed))
