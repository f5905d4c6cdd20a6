"""Tests for ryu_app.core.packets: the TCP segments of health probes and IPv6 neighbour answers.

Checksums are verified with this file's own RFC 1071 sum and with os-ken's packet library, never
with the module's ``checksum``; frames the module reads are packed here field by field.
"""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from os_ken.lib.packet import ethernet, icmpv6, ipv4, ipv6, packet, packet_utils, tcp

from ryu_app.core.flowkey import FrameError
from ryu_app.core.packets import (
    TCP_ACK,
    TCP_FIN,
    TCP_PSH,
    TCP_RST,
    TCP_SYN,
    Segment,
    Solicitation,
    neighbour_advertisement,
    parse_segment,
    parse_solicitation,
    tcp_frame,
)

KNOWN_REASONS = {"truncated", "not-ip", "not-tcp-udp", "bad-l4"}

MAC_GW = bytes.fromhex("020000000001")  # the gateway
MAC_VM = bytes.fromhex("020000000101")  # a backend's inner MAC
MAC_ROUTER = bytes.fromhex("02000000fe01")
V4_GW = ipaddress.ip_address("10.0.1.1").packed
V4_VIP = ipaddress.ip_address("10.0.0.100").packed
V6_GW = ipaddress.ip_address("fd00:1::1").packed
V6_VIP = ipaddress.ip_address("fd00:100::80").packed
V6_ROUTER = ipaddress.ip_address("fd00:1::fe").packed
ALL_NODES = ipaddress.ip_address("ff02::1").packed
UNSPECIFIED = bytes(16)


def ones_complement_sum(data: bytes) -> int:
    """RFC 1071 sum, folded; a correct checksum makes the sum over the covered bytes 0xFFFF."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def pseudo_header(src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    if len(src) == 4:  # RFC 793 3.1
        return struct.pack("!4s4sBBH", src, dst, 0, proto, length)
    return struct.pack("!16s16sI3xB", src, dst, length, proto)  # RFC 8200 8.1


def l4_of(frame: bytes) -> tuple[bytes, bytes, bytes]:
    """(source, destination, layer-4 bytes) of an untagged IPv4 or IPv6 frame."""
    if frame[12:14] == b"\x08\x00":
        total = int.from_bytes(frame[16:18], "big")
        return frame[26:30], frame[30:34], frame[34 : 14 + total]
    return frame[22:38], frame[38:54], frame[54 : 54 + int.from_bytes(frame[18:20], "big")]


# ---- tcp_frame ---------------------------------------------------------------------------------


def test_ipv4_syn_golden_bytes():
    frame = tcp_frame(MAC_GW, MAC_VM, V4_GW, V4_VIP, 49152, 80, 0x01020304, 0, TCP_SYN)
    golden = bytes.fromhex(
        "020000000101"  # Ethernet destination: the backend (tunnel actions rewrite it anyway)
        "020000000001"  # Ethernet source: the gateway
        "0800"  # EtherType IPv4
        "45"  # version 4, IHL 5 (20 bytes, no options)
        "00"  # DSCP/ECN
        "0028"  # total length 40 = 20 IP + 20 TCP
        "0000"  # identification
        "4000"  # flags: don't fragment, offset 0
        "40"  # TTL 64
        "06"  # protocol TCP
        "256c"  # header checksum (summed by hand: ~0xDA93)
        "0a000101"  # source 10.0.1.1
        "0a000064"  # destination 10.0.0.100
        "c000"  # source port 49152
        "0050"  # destination port 80
        "01020304"  # sequence number
        "00000000"  # acknowledgement number
        "50"  # data offset 5 words, reserved 0
        "02"  # flags: SYN
        "faf0"  # window 64240
        "db36"  # checksum over pseudo header + segment (summed by hand: ~0x24C9)
        "0000"  # urgent pointer
    )
    assert frame == golden


ADDRESS_PAIRS = [(V4_GW, V4_VIP), (V6_GW, V6_VIP)]


@given(
    st.sampled_from(ADDRESS_PAIRS),
    st.integers(0, 65535),
    st.integers(0, 65535),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
    st.integers(0, 0x3F),
    st.binary(max_size=64),
)
def test_checksums_verify_for_any_segment(pair, sport, dport, seq, ack, flags, payload):
    src, dst = pair
    frame = tcp_frame(MAC_GW, MAC_VM, src, dst, sport, dport, seq, ack, flags, payload)
    got_src, got_dst, segment = l4_of(frame)
    assert (got_src, got_dst) == (src, dst)
    assert len(segment) == 20 + len(payload)
    assert ones_complement_sum(pseudo_header(src, dst, 6, len(segment)) + segment) == 0xFFFF
    if len(src) == 4:
        assert ones_complement_sum(frame[14:34]) == 0xFFFF  # the IPv4 header's own checksum


@pytest.mark.parametrize("pair", ADDRESS_PAIRS, ids=["ipv4", "ipv6"])
def test_os_ken_reads_our_segment_field_for_field(pair):
    src, dst = pair
    payload = b"GET / HTTP/1.0\r\n\r\n"
    frame = tcp_frame(MAC_GW, MAC_VM, src, dst, 50000, 8080, 7, 9, TCP_PSH | TCP_ACK, payload)
    parsed = packet.Packet(frame)
    eth = parsed.get_protocol(ethernet.ethernet)
    assert (eth.src, eth.dst) == ("02:00:00:00:00:01", "02:00:00:00:01:01")
    segment = parsed.get_protocol(tcp.tcp)
    assert (segment.src_port, segment.dst_port, segment.seq, segment.ack) == (50000, 8080, 7, 9)
    assert segment.bits == TCP_PSH | TCP_ACK and segment.offset == 5 and segment.option is None
    assert parsed.protocols[-1] == payload
    if len(src) == 4:
        ip = parsed.get_protocol(ipv4.ipv4)
        assert (ip.src, ip.dst, ip.proto, ip.ttl) == ("10.0.1.1", "10.0.0.100", 6, 64)
        assert ip.total_length == 40 + len(payload) and ip.flags == 0b010  # don't fragment
        assert packet_utils.checksum(frame[14:34]) == 0  # os-ken agrees the header sums to 0
    else:
        ip = parsed.get_protocol(ipv6.ipv6)
        assert (ip.src, ip.dst, ip.nxt, ip.hop_limit) == ("fd00:1::1", "fd00:100::80", 6, 64)
        assert ip.payload_length == 20 + len(payload) and ip.version == 6
    _, _, l4 = l4_of(frame)
    assert packet_utils.checksum_ip(ip, len(l4), l4) == 0  # os-ken's check over the segment


@pytest.mark.parametrize("pair", ADDRESS_PAIRS, ids=["ipv4", "ipv6"])
def test_os_ken_computes_the_same_checksums(pair):
    """os-ken fills in zeroed checksums when it serialises: the frame comes out identical."""
    src, dst = pair
    frame = tcp_frame(MAC_GW, MAC_VM, src, dst, 61000, 443, 2**32 - 1, 1, TCP_SYN, b"odd")
    parsed = packet.Packet(frame)
    parsed.get_protocol(tcp.tcp).csum = 0
    if len(src) == 4:
        parsed.get_protocol(ipv4.ipv4).csum = 0
    parsed.serialize()
    rebuilt = bytes(parsed.data)
    assert rebuilt[: len(frame)] == frame
    assert rebuilt[len(frame) :] == bytes(max(0, 60 - len(frame)))  # os-ken pads to 60 bytes


# ---- parse_segment -----------------------------------------------------------------------------


@given(
    st.sampled_from(ADDRESS_PAIRS),
    st.integers(0, 65535),
    st.integers(0, 65535),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
    st.integers(0, 0xFF),
    st.binary(max_size=300),
)
def test_parse_segment_reads_back_what_tcp_frame_wrote(pair, sport, dport, seq, ack, flags, data):
    src, dst = pair
    frame = tcp_frame(MAC_VM, MAC_GW, src, dst, sport, dport, seq, ack, flags, data)
    assert parse_segment(frame) == Segment(src, dst, sport, dport, seq, ack, flags, data)


def test_parse_segment_skips_tcp_options_and_ethernet_padding():
    """A real SYN-ACK carries options (data offset > 5); a short IPv4 frame is padded to 60
    bytes, and the padding is not payload."""
    built = packet.Packet()
    built.add_protocol(ethernet.ethernet("02:00:00:00:00:01", "02:00:00:00:01:01", 0x0800))
    built.add_protocol(ipv4.ipv4(src="10.0.0.100", dst="10.0.1.1", proto=6))
    options = [tcp.TCPOptionMaximumSegmentSize(max_seg_size=1460)]
    built.add_protocol(
        tcp.tcp(src_port=80, dst_port=49152, seq=5, ack=9, bits=TCP_SYN | TCP_ACK, option=options)
    )
    built.serialize()
    padded = bytes(built.data)  # os-ken pads the 58-byte frame to Ethernet's minimum
    assert len(padded) == 60 and padded[46] >> 4 == 6  # 24-byte TCP header: the MSS option
    for wire in (padded[:58], padded, padded + b"trailer"):
        segment = parse_segment(wire)
        assert (segment.src_port, segment.dst_port, segment.seq, segment.ack) == (80, 49152, 5, 9)
        assert segment.flags == TCP_SYN | TCP_ACK and segment.payload == b""
        assert (segment.src, segment.dst) == (V4_VIP, V4_GW)


def test_parse_segment_stops_at_the_ip_length_not_at_the_frame_end():
    frame = tcp_frame(MAC_VM, MAC_GW, V6_VIP, V6_GW, 80, 50000, 1, 2, TCP_ACK, b"HTTP/1.1 200")
    assert parse_segment(frame + b"trailer").payload == b"HTTP/1.1 200"


@pytest.mark.parametrize("pair", ADDRESS_PAIRS, ids=["ipv4", "ipv6"])
def test_every_cut_of_a_segment_is_a_frame_error(pair):
    frame = tcp_frame(MAC_VM, MAC_GW, *pair, 80, 50000, 1, 2, TCP_ACK, b"payload")
    for cut in range(len(frame)):
        with pytest.raises(FrameError) as caught:
            parse_segment(frame[:cut])
        assert caught.value.reason in {"truncated", "bad-l4"}


def test_non_tcp_and_non_ip_frames_are_frame_errors():
    frame = bytearray(tcp_frame(MAC_VM, MAC_GW, V4_VIP, V4_GW, 80, 50000, 1, 2, TCP_ACK))
    frame[23] = 17  # UDP
    with pytest.raises(FrameError) as caught:
        parse_segment(bytes(frame))
    assert caught.value.reason == "not-tcp-udp"
    frame6 = bytearray(tcp_frame(MAC_VM, MAC_GW, V6_VIP, V6_GW, 80, 50000, 1, 2, TCP_ACK))
    frame6[20] = 58  # ICMPv6
    with pytest.raises(FrameError) as caught:
        parse_segment(bytes(frame6))
    assert caught.value.reason == "not-tcp-udp"
    with pytest.raises(FrameError) as caught:
        parse_segment(bytes(12) + b"\x08\x06" + bytes(28))  # ARP
    assert caught.value.reason == "not-ip"


def parse_or_frame_error(frame: bytes) -> None:
    try:
        segment = parse_segment(frame)
    except FrameError as error:
        assert error.reason in KNOWN_REASONS
        return
    assert isinstance(segment, Segment)
    assert 0 <= segment.src_port <= 65535 and len(segment.payload) <= len(frame)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_parse_or_raise_frame_error(frame):
    parse_or_frame_error(frame)


@given(st.sampled_from([b"\x08\x00", b"\x86\xdd"]), st.binary(max_size=120))
def test_ip_ethertype_with_random_headers_parses_or_raises_frame_error(ethertype, rest):
    parse_or_frame_error(bytes(12) + ethertype + rest)


@given(
    st.sampled_from(ADDRESS_PAIRS),
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=6),
    st.integers(0, 120),
)
def test_mutated_segments_parse_or_raise_frame_error(pair, mutations, cut):
    frame = bytearray(tcp_frame(MAC_VM, MAC_GW, *pair, 80, 50000, 1, 2, TCP_ACK, b"x" * 20))
    for index, value in mutations:
        frame[index % len(frame)] = value
    parse_or_frame_error(bytes(frame[: len(frame) - cut]))


# ---- neighbour discovery -----------------------------------------------------------------------


def solicitation_frame(
    target: bytes = V6_GW,
    src: bytes = V6_ROUTER,
    eth_src: bytes = MAC_ROUTER,
    hop_limit: int = 255,
    icmp_type: int = 135,
    code: int = 0,
    checksum_delta: int = 0,
) -> bytes:
    """A neighbour solicitation as a router sends it (RFC 4861 4.3), packed by hand."""
    solicited_node = bytes.fromhex("ff0200000000000000000001ff") + target[13:]
    option = struct.pack(
        "!BB6s",
        1,  # option type: source link-layer address
        1,  # length in units of 8 bytes
        eth_src,
    )
    body = struct.pack(
        "!BBHI16s",
        icmp_type,  # 135: neighbour solicitation
        code,  # 0
        0,  # checksum, filled in below
        0,  # reserved
        target,  # target address
    )
    if src == UNSPECIFIED:  # duplicate address detection carries no source address option
        option = b""
    body += option
    checksum = (
        ~ones_complement_sum(pseudo_header(src, solicited_node, 58, len(body)) + body) & 0xFFFF
    )
    body = body[:2] + struct.pack("!H", (checksum + checksum_delta) & 0xFFFF) + body[4:]
    ip = struct.pack(
        "!IHBB16s16s",
        6 << 28,  # version 6, traffic class 0, flow label 0
        len(body),  # payload length
        58,  # next header: ICMPv6
        hop_limit,  # 255: from the link itself
        src,
        solicited_node,
    )
    eth = struct.pack("!6s6sH", b"\x33\x33" + solicited_node[12:], eth_src, 0x86DD)
    return eth + ip + body


def test_hand_built_solicitation_is_valid_for_os_ken():
    """The test's own frame builder is right: os-ken reads it and its checksum checks out."""
    frame = solicitation_frame()
    parsed = packet.Packet(frame)
    message = parsed.get_protocol(icmpv6.icmpv6)
    assert message.type_ == icmpv6.ND_NEIGHBOR_SOLICIT and message.data.dst == "fd00:1::1"
    assert packet_utils.checksum_ip(parsed.get_protocol(ipv6.ipv6), 32, frame[54:]) == 0


def test_parse_solicitation_reads_source_and_target():
    assert parse_solicitation(solicitation_frame()) == Solicitation(MAC_ROUTER, V6_ROUTER, V6_GW)


@pytest.mark.parametrize(
    "changes",
    [
        {"hop_limit": 64},  # forwarded by a router: not from the link (RFC 4861 7.1.1)
        {"icmp_type": 136},  # an advertisement
        {"icmp_type": 128},  # an echo request
        {"code": 1},
    ],
)
def test_other_icmpv6_is_not_a_solicitation(changes):
    assert parse_solicitation(solicitation_frame(**changes)) is None


def test_short_and_non_icmpv6_frames_are_not_solicitations():
    frame = solicitation_frame()
    assert parse_solicitation(frame[:77]) is None
    assert (
        parse_solicitation(tcp_frame(MAC_VM, MAC_GW, V6_VIP, V6_GW, 80, 1, 1, 2, TCP_ACK)) is None
    )
    assert (
        parse_solicitation(tcp_frame(MAC_VM, MAC_GW, V4_VIP, V4_GW, 80, 1, 1, 2, TCP_ACK)) is None
    )


def test_solicitation_with_a_bad_checksum_is_not_answered():
    assert parse_solicitation(solicitation_frame(checksum_delta=1)) is None


def test_advertisement_answers_the_solicitor_with_our_mac():
    frame = neighbour_advertisement(parse_solicitation(solicitation_frame()), MAC_GW)
    eth_dst, eth_src, ethertype = struct.unpack_from("!6s6sH", frame)
    assert (eth_dst, eth_src, ethertype) == (MAC_ROUTER, MAC_GW, 0x86DD)
    version, length, next_header, hop_limit, src, dst = struct.unpack_from("!IHBB16s16s", frame, 14)
    assert version >> 28 == 6 and next_header == 58 and hop_limit == 255
    assert (src, dst) == (V6_GW, V6_ROUTER) and length == len(frame) - 54 == 32
    icmp_type, code, _, flags, target = struct.unpack_from("!BBHI16s", frame, 54)
    assert (icmp_type, code, target) == (136, 0, V6_GW)
    assert flags == 0x60000000  # solicited and override, not router
    assert frame[78:86] == b"\x02\x01" + MAC_GW  # target link-layer address option
    assert ones_complement_sum(pseudo_header(src, dst, 58, length) + frame[54:]) == 0xFFFF


def test_os_ken_reads_our_advertisement_and_its_checksum():
    frame = neighbour_advertisement(parse_solicitation(solicitation_frame()), MAC_GW)
    parsed = packet.Packet(frame)
    ip = parsed.get_protocol(ipv6.ipv6)
    assert (ip.src, ip.dst, ip.hop_limit) == ("fd00:1::1", "fd00:1::fe", 255)
    message = parsed.get_protocol(icmpv6.icmpv6)
    assert message.type_ == icmpv6.ND_NEIGHBOR_ADVERT and message.code == 0
    assert message.data.res == 0b011 and message.data.dst == "fd00:1::1"  # R=0, S=1, O=1
    assert isinstance(message.data.option, icmpv6.nd_option_tla)
    assert message.data.option.hw_src == "02:00:00:00:00:01"
    assert packet_utils.checksum_ip(ip, len(frame) - 54, frame[54:]) == 0


def test_duplicate_address_detection_is_answered_to_all_nodes():
    """RFC 4861 7.2.4: unspecified source -> multicast to all-nodes, Solicited flag clear."""
    solicitation = parse_solicitation(solicitation_frame(src=UNSPECIFIED))
    assert solicitation is not None and solicitation.src == UNSPECIFIED
    frame = neighbour_advertisement(solicitation, MAC_GW)
    assert frame[:6] == bytes.fromhex("333300000001")  # all-nodes multicast MAC
    assert frame[38:54] == ALL_NODES and frame[22:38] == V6_GW
    assert struct.unpack_from("!I", frame, 58)[0] == 0x20000000  # override only
    length = int.from_bytes(frame[18:20], "big")
    assert ones_complement_sum(pseudo_header(V6_GW, ALL_NODES, 58, length) + frame[54:]) == 0xFFFF
    assert packet.Packet(frame).get_protocol(icmpv6.icmpv6).data.res == 0b001


def test_an_advertisement_is_not_taken_for_a_solicitation():
    frame = neighbour_advertisement(parse_solicitation(solicitation_frame()), MAC_GW)
    assert parse_solicitation(frame) is None


def test_flag_constants_are_tcps():
    """RFC 793 3.1 bit positions; the prober's segments depend on them."""
    assert (TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK) == (1, 2, 4, 8, 16)
