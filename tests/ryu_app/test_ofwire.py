"""ofwire's bytes are exactly what the framework serialises for the same messages (ofmsg)."""

from types import SimpleNamespace

from hypothesis import given
from hypothesis import strategies as st

from ryu_app import ofmsg, ofwire
from ryu_app.compat import ofproto_v1_3 as ofp
from ryu_app.compat import ofproto_v1_3_parser as parser
from ryu_app.core.flowkey import Flow
from ryu_app.core.model import Backend, Vip

DATAPATH = SimpleNamespace(ofproto=ofp, ofproto_parser=parser, id=1)
PORTS = ofmsg.Ports(uplink=3, tunnel=7)


def serialised(message) -> bytes:
    message.datapath = DATAPATH
    message.set_xid(0)
    message.serialize()
    return bytes(message.buf)


versions = st.sampled_from([4, 6])


@st.composite
def cases(draw):
    version = draw(versions)
    size = 4 if version == 4 else 16
    proto = draw(st.sampled_from(["tcp", "udp"]))
    hash_mode = draw(st.sampled_from(["5-tuple", "src-ip"]))
    dst = draw(st.binary(min_size=size, max_size=size))
    vip = Vip(
        "v",
        ".".join(map(str, dst))
        if version == 4
        else ":".join(dst[i : i + 2].hex() for i in range(0, 16, 2)),
        draw(st.integers(1, 65535)),
        protocol=proto,
        hash=hash_mode,
        idle_timeout=draw(st.integers(1, 4095)),
        vni=draw(st.integers(0, 2**24 - 1)),
    )
    backend = Backend(
        "b",
        ".".join(str(draw(st.integers(0, 255))) for _ in range(4)),
        "02:" + ":".join(f"{draw(st.integers(0, 255)):02x}" for _ in range(5)),
    )
    flow = Flow(
        version,
        draw(st.binary(min_size=size, max_size=size)),
        dst,
        6 if proto == "tcp" else 17,
        draw(st.integers(0, 65535)),
        vip.port,
    )
    return vip, backend, flow, draw(st.integers(1, 2**20 - 1))


@given(cases())
def test_flow_mod_bytes_equal_the_frameworks(case):
    vip, backend, flow, backend_id = case
    actions = ofwire.backend_actions(backend.mac, backend.tunnel_ip, vip.vni, PORTS.tunnel)
    mine = ofwire.flow_mod(
        ofwire.flow_match(flow, PORTS.uplink, vip.hash != "src-ip"),
        actions,
        ofmsg.flow_cookie(backend_id),
        vip.idle_timeout,
        ofmsg.PRIORITY_FLOW,
    )
    assert mine == serialised(ofmsg.flow_rule(flow, vip, backend, backend_id, PORTS))


@given(cases(), st.binary(max_size=1500), st.sampled_from([ofp.OFP_NO_BUFFER, 0, 77]))
def test_packet_out_bytes_equal_the_frameworks(case, data, buffer_id):
    vip, backend, _, _ = case
    actions = ofwire.backend_actions(backend.mac, backend.tunnel_ip, vip.vni, PORTS.tunnel)
    mine = ofwire.packet_out(PORTS.uplink, buffer_id, actions, data)
    reference = ofmsg.packet_out(
        PORTS.uplink, ofmsg.backend_actions(vip, backend, PORTS.tunnel), buffer_id, data
    )
    assert mine == serialised(reference)


def test_a_buffered_packet_out_carries_no_data():
    actions = ofwire.backend_actions("02:00:00:00:00:01", "10.0.0.1", 100, 2)
    assert ofwire.packet_out(1, 5, actions, b"x" * 100) == ofwire.packet_out(1, 5, actions, b"")


@given(cases(), st.binary(min_size=14, max_size=200))
def test_controller_packet_out_bytes_equal_the_frameworks(case, frame):
    vip, backend, _, _ = case
    actions = ofwire.backend_actions(backend.mac, backend.tunnel_ip, vip.vni, PORTS.tunnel)
    reference = ofmsg.controller_packet_out(
        ofmsg.backend_actions(vip, backend, PORTS.tunnel), frame
    )
    assert ofwire.controller_packet_out(actions, frame) == serialised(reference)
