"""Transitional: ``pipeline`` (through the one encoder) builds exactly the bytes that ``ofmsg``
(os-ken's classes) and ``ofwire`` built for every rule and packet-out, so the switch-over to
it changes nothing on the wire.  Goes with ``ofmsg`` and ``ofwire``."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from ryu_app import ofmsg, ofwire
from ryu_app.compat import ofproto_v1_3 as ofp
from ryu_app.compat import ofproto_v1_3_parser as parser
from ryu_app.core import openflow as of
from ryu_app.core import pipeline
from ryu_app.core.flowkey import flow_from_fields
from topology.deployment import Backend, HealthCheck, Vip

DATAPATH = SimpleNamespace(ofproto=ofp, ofproto_parser=parser, id=1)
ADDRESSES = ("10.0.1.1", "fd00:1::1")
BACKEND = Backend("vm1", "10.99.0.11", "02:00:00:00:01:01")
VIPS = [
    Vip("web", "10.0.0.100", 80, backends=(BACKEND,)),
    Vip("dns", "fd00::100", 53, protocol="udp", backends=(BACKEND,)),
    Vip("static", "fd00::100", 443, backends=(BACKEND,), health=HealthCheck(type="none")),
    Vip(
        "sticky",
        "10.0.0.101",
        443,
        hash="src-ip",
        health=HealthCheck(port=8443),
        backends=(BACKEND,),
    ),
]


def serialised(message) -> bytes:
    message.datapath = DATAPATH
    message.set_xid(0)
    message.serialize()
    return bytes(message.buf)


def test_base_flows_and_deletes():
    old = ofmsg.base_flows(ADDRESSES, "02:00:00:00:00:01", ofmsg.Ports(3, 7))
    new = pipeline.base_flows(ADDRESSES, "02:00:00:00:00:01", pipeline.Ports(3, 7))
    assert [serialised(m) for m in old] == new
    assert serialised(ofmsg.delete_own_flows()) == pipeline.delete_own_flows()
    assert serialised(ofmsg.delete_backend_flows(77)) == pipeline.delete_backend_flows(77)
    assert serialised(ofmsg.port_desc_request()) == of.port_desc_request()


@pytest.mark.parametrize("vip", VIPS, ids=[v.name for v in VIPS])
def test_vip_rules(vip):
    assert [serialised(m) for m in ofmsg.vip_flows(vip, ADDRESSES, 3)] == pipeline.vip_flows(
        vip, ADDRESSES, 3
    )
    old = ofmsg.remove_vip_flows(vip, ADDRESSES, 3)
    assert [serialised(m) for m in old] == pipeline.remove_vip_flows(vip, ADDRESSES, 3)


@pytest.mark.parametrize("vip", VIPS, ids=[v.name for v in VIPS])
def test_flow_rules_and_packet_outs(vip):
    src = "10.1.0.11" if vip.ip_version == 4 else "fd00:5::11"
    flow = flow_from_fields(src, "40000", vip.address, str(vip.port), vip.protocol)
    actions = pipeline.backend_actions(BACKEND.mac, BACKEND.tunnel_ip, vip.vni, 7)
    assert actions == ofwire.backend_actions(BACKEND.mac, BACKEND.tunnel_ip, vip.vni, 7)
    rule = ofmsg.flow_rule(flow, vip, BACKEND, 5, ofmsg.Ports(3, 7))
    assert serialised(rule) == pipeline.flow_rule(flow, vip, 5, actions, 3)
    old = ofmsg.packet_out(3, ofmsg.backend_actions(vip, BACKEND, 7), ofp.OFP_NO_BUFFER, b"frame")
    assert serialised(old) == of.packet_out(3, of.OFP_NO_BUFFER, actions, b"frame")
    answer = ofmsg.controller_packet_out([ofmsg.output(3)], b"advert")
    assert serialised(answer) == of.controller_packet_out(of.output(3), b"advert")
