"""The lean packet-in parser reads exactly what the framework's parser reads."""

import struct

from hypothesis import given
from hypothesis import strategies as st

from ryu_app import ofmsg
from ryu_app.compat import ofproto_v1_3 as ofp
from ryu_app.compat import ofproto_v1_3_parser as parser

FRAMEWORK_PARSER = parser.OFPPacketIn.parser  # captured before anything swaps it


def packet_in(match, buffer_id, reason, table_id, cookie, data, total_len) -> bytearray:
    """OFPT_PACKET_IN as a switch writes it (OpenFlow 1.3.5 section 7.4.1)."""
    match_buf = bytearray()
    match.serialize(match_buf, 0)  # pads itself to a multiple of 8
    body = struct.pack("!IHBBQ", buffer_id, total_len, reason, table_id, cookie)
    message = body + match_buf + b"\0\0" + data
    return bytearray(struct.pack("!BBHI", 4, ofp.OFPT_PACKET_IN, 8 + len(message), 7) + message)


@given(
    st.integers(1, 0xFFFFFF00),
    st.one_of(st.none(), st.integers(0, 2**64 - 1)),
    st.one_of(st.none(), st.integers(0, 0xFFFF)),
    st.sampled_from([ofp.OFP_NO_BUFFER, 0, 12345]),
    st.integers(0, 2),
    st.integers(0, 254),
    st.integers(0, 2**64 - 1),
    st.binary(max_size=200),
    st.integers(0, 8),
)
def test_same_fields_as_the_frameworks_parser(
    in_port, tunnel_id, eth_type, buffer_id, reason, table_id, cookie, data, cut
):
    fields = {"in_port": in_port}
    if tunnel_id is not None:
        fields["tunnel_id"] = tunnel_id
    if eth_type is not None:
        fields["eth_type"] = eth_type
    total_len = max(len(data) - cut, 0)  # a total_len below the data length trims the padding
    buf = packet_in(parser.OFPMatch(**fields), buffer_id, reason, table_id, cookie, data, total_len)
    args = (None, 4, ofp.OFPT_PACKET_IN, len(buf), 7)
    theirs = FRAMEWORK_PARSER(*args, bytearray(buf))
    ours = ofmsg._lean_packet_in(parser.OFPPacketIn, *args, bytearray(buf))
    assert type(ours) is type(theirs)
    for name in ("buffer_id", "total_len", "reason", "table_id", "cookie", "xid", "msg_len"):
        assert getattr(ours, name) == getattr(theirs, name), name
    assert bytes(ours.data) == bytes(theirs.data)
    assert ours.match["in_port"] == theirs.match["in_port"] == in_port
    assert ours.match.length == theirs.match.length


def test_installing_it_routes_the_frameworks_lookup_to_it():
    saved = parser.OFPPacketIn.__dict__["parser"], parser._MSG_PARSERS[ofp.OFPT_PACKET_IN]
    try:
        ofmsg.use_lean_packet_in_parser()
        buf = packet_in(parser.OFPMatch(in_port=3), ofp.OFP_NO_BUFFER, 0, 0, 0, b"frame", 5)
        message = parser.msg_parser(None, 4, ofp.OFPT_PACKET_IN, len(buf), 7, buf)
        assert isinstance(message.match, ofmsg.LeanMatch) and message.match["in_port"] == 3
        assert bytes(message.data) == b"frame"
    finally:  # other tests parse packet-ins with the framework's parser
        parser.OFPPacketIn.parser, parser._MSG_PARSERS[ofp.OFPT_PACKET_IN] = saved
