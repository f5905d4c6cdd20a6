"""openflow.parse_packet_in and parse_flow_removed read exactly what the framework's parsers
read, and refuse what they cannot frame."""

import ipaddress
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ryu_app.core import openflow
from ryu_app.core.flowkey import PROTO_TCP, Flow
from ryu_app.shell.compat import ofproto_v1_3 as ofp
from ryu_app.shell.compat import ofproto_v1_3_parser as parser


def packet_in(match, buffer_id, reason, table_id, cookie, data, total_len) -> bytes:
    """OFPT_PACKET_IN as a switch writes it (OpenFlow 1.3.5 section 7.4.1)."""
    match_buf = bytearray()
    match.serialize(match_buf, 0)  # pads itself to a multiple of 8
    body = struct.pack("!IHBBQ", buffer_id, total_len, reason, table_id, cookie)
    message = body + match_buf + b"\0\0" + data
    return struct.pack("!BBHI", 4, ofp.OFPT_PACKET_IN, 8 + len(message), 7) + message


def framework(buf: bytes):
    return parser.OFPPacketIn.parser(None, 4, ofp.OFPT_PACKET_IN, len(buf), 7, bytearray(buf))


@given(
    st.integers(1, 0xFFFFFF00),
    st.one_of(st.none(), st.integers(0, 2**64 - 1)),
    st.one_of(st.none(), st.integers(0, 0xFFFF)),
    st.one_of(st.none(), st.integers(0, 2**32 - 1)),
    st.sampled_from([ofp.OFP_NO_BUFFER, 0, 12345]),
    st.integers(0, 2),
    st.integers(0, 254),
    st.integers(0, 2**64 - 1),
    st.binary(max_size=200),
    st.integers(0, 8),
)
def test_same_fields_as_the_frameworks_parser(
    in_port, tunnel_id, eth_type, metadata, buffer_id, reason, table_id, cookie, data, cut
):
    # in_port need not come first: OVS puts it first, but tunnel fields may precede it.
    fields = {}
    if tunnel_id is not None:
        fields["tunnel_id"] = tunnel_id
    fields["in_port"] = in_port
    if eth_type is not None:
        fields["eth_type"] = eth_type
    if metadata is not None:
        fields["metadata"] = metadata
    total_len = max(len(data) - cut, 0)  # a total_len below the data length trims the padding
    buf = packet_in(parser.OFPMatch(**fields), buffer_id, reason, table_id, cookie, data, total_len)
    theirs = framework(buf)
    assert openflow.parse_packet_in(buf) == (theirs.buffer_id, theirs.match["in_port"], theirs.data)
    assert theirs.match["in_port"] == in_port


def test_a_frame_is_returned_whole():
    frame = bytes(range(74))
    buf = packet_in(parser.OFPMatch(in_port=3), ofp.OFP_NO_BUFFER, 0, 0, 0, frame, len(frame))
    assert openflow.parse_packet_in(buf) == (ofp.OFP_NO_BUFFER, 3, frame)


def _valid() -> bytes:
    return packet_in(parser.OFPMatch(in_port=3), ofp.OFP_NO_BUFFER, 0, 0, 0, b"frame", 5)


@pytest.mark.parametrize(
    "message, detail",
    [
        (_valid()[:20], "too short"),
        (_valid()[:24] + struct.pack("!HH", 0, 12) + _valid()[28:], "match type 0"),
        (_valid()[:24] + struct.pack("!HH", 1, 2) + _valid()[28:], "length 2"),
        (_valid()[:24] + struct.pack("!HH", 1, 400) + _valid()[28:], "length 400"),
        (
            packet_in(parser.OFPMatch(eth_type=0x800), ofp.OFP_NO_BUFFER, 0, 0, 0, b"x", 1),
            "no in_port",
        ),
    ],
)
def test_what_does_not_frame_is_refused_with_a_reason(message, detail):
    with pytest.raises(openflow.WireError, match=detail) as caught:
        openflow.parse_packet_in(message)
    assert caught.value.reason == "bad-packet-in"


@given(st.binary(max_size=120))
def test_any_bytes_parse_or_raise_packet_in_error(tail):
    message = _valid()[:24] + tail
    try:
        buffer_id, in_port, data = openflow.parse_packet_in(message)
    except openflow.WireError:
        return
    assert isinstance(data, bytes) and 0 <= in_port < 2**32


# ---- flow-removed ---------------------------------------------------------------------------


def flow_from_removed_match(match) -> Flow | None:
    """The oracle: the Flow a per-flow rule's match (os-ken's ``OFPMatch``, as its parser read
    it) names, ports 0 where not matched."""
    fields = dict(match.items())
    if "ipv4_src" in fields:
        version, src, dst = 4, fields["ipv4_src"], fields["ipv4_dst"]
    elif "ipv6_src" in fields:
        version, src, dst = 6, fields["ipv6_src"], fields["ipv6_dst"]
    else:
        return None
    proto = fields.get("ip_proto")
    prefix = "tcp" if proto == PROTO_TCP else "udp"
    return Flow(
        version,
        ipaddress.ip_address(src).packed,
        ipaddress.ip_address(dst).packed,
        proto,
        fields.get(f"{prefix}_src", 0),
        fields.get(f"{prefix}_dst", 0),
    )


def flow_removed(match, cookie=0, reason=ofp.OFPRR_IDLE_TIMEOUT) -> bytes:
    """OFPT_FLOW_REMOVED as a switch writes it (OpenFlow 1.3.5 section 7.4.2)."""
    match_buf = bytearray()
    match.serialize(match_buf, 0)
    body = struct.pack("!QHBBIIHHQQ", cookie, 200, reason, 0, 12, 34, 60, 0, 5, 600)
    message = body + match_buf
    return struct.pack("!BBHI", 4, ofp.OFPT_FLOW_REMOVED, 8 + len(message), 9) + message


ADDRESSES = {
    4: st.ip_addresses(v=4).map(str),
    6: st.ip_addresses(v=6).map(str),
}


@st.composite
def rule_matches(draw):
    """The match of a per-flow rule as the pipeline builds them: in_port, L3, protocol, ports (the
    source port left out for a src-ip VIP)."""
    version = draw(st.sampled_from([4, 6]))
    proto = draw(st.sampled_from(["tcp", "udp"]))
    fields = {
        "in_port": draw(st.integers(1, 1000)),
        "eth_type": 0x0800 if version == 4 else 0x86DD,
        "ip_proto": 6 if proto == "tcp" else 17,
        f"ipv{version}_src": draw(ADDRESSES[version]),
        f"ipv{version}_dst": draw(ADDRESSES[version]),
        f"{proto}_dst": draw(st.integers(0, 65535)),
    }
    if draw(st.booleans()):
        fields[f"{proto}_src"] = draw(st.integers(0, 65535))
    return parser.OFPMatch(**fields)


@given(rule_matches(), st.integers(0, 2**64 - 1), st.sampled_from([0, 1, 2, 3]))
def test_flow_removed_names_the_flow_the_framework_reads_from_it(match, cookie, reason):
    buf = flow_removed(match, cookie, reason)
    theirs = parser.OFPFlowRemoved.parser(
        None, 4, ofp.OFPT_FLOW_REMOVED, len(buf), 9, bytearray(buf)
    )
    assert openflow.parse_flow_removed(buf) == (
        theirs.cookie,
        theirs.reason,
        flow_from_removed_match(theirs.match),
    )


def test_flow_removed_of_a_rule_that_names_no_flow_gives_none():
    buf = flow_removed(parser.OFPMatch(in_port=1, eth_type=0x0806), cookie=5)
    assert openflow.parse_flow_removed(buf) == (5, ofp.OFPRR_IDLE_TIMEOUT, None)
    icmp = parser.OFPMatch(eth_type=0x0800, ip_proto=1, ipv4_src="10.0.0.1", ipv4_dst="10.0.0.2")
    assert openflow.parse_flow_removed(flow_removed(icmp))[2] is None


def test_flow_removed_ignores_masked_fields():
    masked = parser.OFPMatch(
        eth_type=0x0800,
        ip_proto=6,
        ipv4_src=("10.0.0.0", "255.0.0.0"),
        ipv4_dst="10.0.0.2",
        tcp_dst=80,
    )
    assert openflow.parse_flow_removed(flow_removed(masked))[2] is None


@pytest.mark.parametrize("cut", [10, 47, 52])
def test_flow_removed_that_does_not_frame_is_refused(cut):
    buf = flow_removed(parser.OFPMatch(in_port=1, eth_type=0x0800))
    with pytest.raises(openflow.WireError, match="bad-flow-removed"):
        openflow.parse_flow_removed(buf[:cut])


@given(st.binary(max_size=120))
def test_any_flow_removed_bytes_parse_or_raise_wire_error(tail):
    try:
        cookie, reason, flow = openflow.parse_flow_removed(
            flow_removed(parser.OFPMatch())[:48] + tail
        )
    except openflow.WireError:
        return
    assert (cookie, reason) == (0, ofp.OFPRR_IDLE_TIMEOUT)
    assert flow is None or flow.version in (4, 6)
