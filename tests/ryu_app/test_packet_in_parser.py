"""ofwire.parse_packet_in reads exactly what the framework's packet-in parser reads, and refuses
what it cannot frame."""

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ryu_app import ofwire
from ryu_app.compat import ofproto_v1_3 as ofp
from ryu_app.compat import ofproto_v1_3_parser as parser


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
    assert ofwire.parse_packet_in(buf) == (theirs.buffer_id, theirs.match["in_port"], theirs.data)
    assert theirs.match["in_port"] == in_port


def test_a_frame_is_returned_whole():
    frame = bytes(range(74))
    buf = packet_in(parser.OFPMatch(in_port=3), ofp.OFP_NO_BUFFER, 0, 0, 0, frame, len(frame))
    assert ofwire.parse_packet_in(buf) == (ofp.OFP_NO_BUFFER, 3, frame)


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
    with pytest.raises(ofwire.PacketInError, match=detail) as caught:
        ofwire.parse_packet_in(message)
    assert caught.value.reason == "bad-packet-in"


@given(st.binary(max_size=120))
def test_any_bytes_parse_or_raise_packet_in_error(tail):
    message = _valid()[:24] + tail
    try:
        buffer_id, in_port, data = ofwire.parse_packet_in(message)
    except ofwire.PacketInError:
        return
    assert isinstance(data, bytes) and 0 <= in_port < 2**32
