"""The flood guard's messages are what os-ken writes, and what a switch answers parses as
os-ken parses it: meter-mods, the meter instruction, meter features and statistics, errors."""

from __future__ import annotations

import struct
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ryu_app.core import ofmeter
from ryu_app.core import openflow as of
from ryu_app.core.openflow import WireError
from ryu_app.shell.compat import ofproto_v1_3 as ofp
from ryu_app.shell.compat import ofproto_v1_3_parser as parser

DATAPATH = SimpleNamespace(ofproto=ofp, ofproto_parser=parser, id=1)
U32 = st.integers(1, ofmeter.OFPM_MAX)


def serialised(message) -> bytes:
    message.datapath = DATAPATH
    message.set_xid(0)
    message.serialize()
    return bytes(message.buf)


@given(
    st.sampled_from([ofmeter.OFPMC_ADD, ofmeter.OFPMC_MODIFY]), U32, U32, st.integers(0, 2**32 - 1)
)
def test_a_meter_mod_is_as_os_ken_writes_it(command, meter_id, rate, burst):
    flags = ofp.OFPMF_PKTPS | ofp.OFPMF_STATS | (ofp.OFPMF_BURST if burst else 0)
    band = parser.OFPMeterBandDrop(rate=rate, burst_size=burst)
    theirs = parser.OFPMeterMod(DATAPATH, command, flags, meter_id, [band])
    assert ofmeter.meter_mod(command, meter_id, rate, burst) == serialised(theirs)


def test_deleting_every_meter_names_no_band():
    flags = ofp.OFPMF_PKTPS | ofp.OFPMF_STATS
    theirs = parser.OFPMeterMod(DATAPATH, ofp.OFPMC_DELETE, flags, ofp.OFPM_ALL, [])
    assert ofmeter.meter_mod(ofmeter.OFPMC_DELETE, ofmeter.OFPM_ALL) == serialised(theirs)


@given(U32)
def test_a_metered_rule_is_as_os_ken_writes_it(meter_id):
    actions = of.to_controller()
    mine = of.flow_mod(of.match(in_port=1), actions, priority=100, meter_id=meter_id)
    instructions = [
        parser.OFPInstructionMeter(meter_id),
        parser.OFPInstructionActions(
            ofp.OFPIT_APPLY_ACTIONS,
            [parser.OFPActionOutput(ofp.OFPP_CONTROLLER, ofp.OFPCML_NO_BUFFER)],
        ),
    ]
    theirs = parser.OFPFlowMod(
        DATAPATH, priority=100, match=parser.OFPMatch(in_port=1), instructions=instructions
    )
    assert mine == serialised(theirs)


def test_requests_are_as_os_ken_writes_them():
    assert ofmeter.meter_features_request() == serialised(
        parser.OFPMeterFeaturesStatsRequest(DATAPATH)
    )
    assert ofmeter.meter_stats_request() == serialised(
        parser.OFPMeterStatsRequest(DATAPATH, 0, ofp.OFPM_ALL)
    )


def reply(kind: int, body: bytes) -> bytes:
    head = struct.pack("!BBHIHH4x", 4, ofmeter.OFPT_MULTIPART_REPLY, 16 + len(body), 7, kind, 0)
    return head + body


def parsed_by_os_ken(message: bytes):
    version, kind, length, xid = struct.unpack_from("!BBHI", message)
    return parser.msg_parser(DATAPATH, version, kind, length, xid, message)


@given(
    st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(0, 15), st.integers(0, 255)
)
def test_meter_features_parse_as_os_ken_parses_them(max_meter, band_types, capabilities, bands):
    message = reply(
        ofmeter.OFPMP_METER_FEATURES,
        struct.pack("!IIIBB2x", max_meter, band_types, capabilities, bands, 0),
    )
    theirs = parsed_by_os_ken(message).body[0]
    mine = ofmeter.parse_meter_features(message)
    assert ofmeter.multipart_kind(message) == ofmeter.OFPMP_METER_FEATURES
    assert mine == (theirs.max_meter, theirs.band_types, theirs.capabilities, theirs.max_bands)


def test_a_switch_can_guard_only_with_packet_rate_drop_meters():
    good = ofmeter.MeterFeatures(1024, 1 << ofmeter.OFPMBT_DROP, ofmeter.OFPMF_PKTPS, 1)
    assert good.can_guard
    assert not good._replace(max_meter=0).can_guard  # no meters (OVS before 2.7, say)
    assert not good._replace(band_types=1 << 2).can_guard  # DSCP remark only
    assert not good._replace(capabilities=ofmeter.OFPMF_KBPS).can_guard
    assert not good._replace(max_bands=0).can_guard


def meter_stats(meter_id: int, bands: list[int]) -> bytes:
    body = b"".join(struct.pack("!QQ", packets, packets * 60) for packets in bands)
    length = 40 + len(body)
    return struct.pack("!IH6xIQQII", meter_id, length, 1, 99, 9900, 3, 0) + body


@given(st.dictionaries(U32, st.lists(st.integers(0, 2**40), max_size=3), max_size=5))
def test_meter_stats_count_the_packets_each_meters_bands_dropped(meters):
    message = reply(ofmeter.OFPMP_METER, b"".join(meter_stats(m, b) for m, b in meters.items()))
    theirs = parsed_by_os_ken(message).body
    expected = {s.meter_id: sum(b.packet_band_count for b in s.band_stats) for s in theirs}
    assert ofmeter.parse_meter_stats(message) == expected == {m: sum(b) for m, b in meters.items()}


def test_meter_stats_that_do_not_frame_are_refused():
    bad = reply(ofmeter.OFPMP_METER, meter_stats(1, [5])[:-4] + struct.pack("!I", 0))
    bad = bad[:16] + struct.pack("!IH", 1, 200) + bad[22:]
    with pytest.raises(WireError):
        ofmeter.parse_meter_stats(bad)


def test_an_error_names_the_message_it_refuses():
    refused = of.flow_mod(of.match(in_port=1), of.to_controller(), priority=100)
    error = parser.OFPErrorMsg(
        DATAPATH, type_=ofp.OFPET_FLOW_MOD_FAILED, code=ofp.OFPFMFC_TABLE_FULL, data=refused[:64]
    )
    parsed = ofmeter.parse_error(serialised(error))
    assert (parsed.type, parsed.code) == (ofp.OFPET_FLOW_MOD_FAILED, ofp.OFPFMFC_TABLE_FULL)
    assert parsed.refused_type == of.OFPT_FLOW_MOD
    assert parsed.refused == refused[:64]
    with pytest.raises(WireError):
        ofmeter.parse_error(b"\x04\x01\x00\x0a\x00\x00\x00\x00\x00\x01")
