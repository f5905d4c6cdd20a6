"""The fake flow table the gateway's behaviour tests trust: OpenFlow's rules for adding and
deleting rules, priorities, masks and prerequisites, and what actions do to a packet."""

from __future__ import annotations

import pytest

from ryu_app.core import openflow as of
from tests.ryu_app.core.rig import arp_request, frame
from tests.ryu_app.fake_oftable import FakeOFTable, packet_fields

WEB = packet_fields(1, frame())  # 10.1.0.11:40000 -> 10.0.0.100:80, TCP, on port 1


def add(table, match, actions=b"", priority=100, cookie=0, idle=0, flags=0):
    table.apply([of.flow_mod(match, actions, priority, cookie, idle, flags)])


def test_the_highest_priority_match_wins_and_a_miss_goes_nowhere():
    table = FakeOFTable()
    assert table.forward(WEB).dropped and table.forward(WEB).rule is None
    add(table, of.match(eth_type=0x0800), of.output(5), priority=10)
    add(table, of.match(in_port=1, eth_type=0x0800, ip_proto=6, tcp_dst=80), of.output(6), 20)
    add(table, of.match(in_port=1, eth_type=0x0800, ip_proto=6, tcp_dst=81), of.output(7), 30)
    assert table.forward(WEB).outputs == [6]
    assert table.forward({**WEB, "tcp_dst": 22}).outputs == [5]


def test_masked_fields_match_on_their_bits():
    table = FakeOFTable()
    probe_ports = (0xC000, 0xC000)
    add(table, of.match(eth_type=0x0800, ip_proto=6, tcp_src=probe_ports), of.output(2))
    assert table.forward({**WEB, "tcp_src": 50000}).outputs == [2]
    assert table.forward({**WEB, "tcp_src": 40000}).dropped


def test_equal_priorities_that_both_match_are_an_error():
    table = FakeOFTable()
    add(table, of.match(eth_type=0x0800), of.output(1))
    add(table, of.match(in_port=1), of.output(2))
    with pytest.raises(AssertionError, match="undefined"):
        table.forward(WEB)


def test_an_add_of_the_same_match_and_priority_replaces_the_rule():
    table = FakeOFTable()
    add(table, of.match(in_port=1), of.output(1))
    add(table, of.match(in_port=1), of.output(2))
    assert len(table.rules) == 1 and table.forward(WEB).outputs == [2]


def test_deletes_by_cookie_and_strictly():
    table = FakeOFTable()
    flags = of.OFPFF_SEND_FLOW_REM
    add(table, of.match(in_port=1), of.output(1), 10, cookie=0xAB01, idle=60, flags=flags)
    add(table, of.match(in_port=2), of.output(1), 10, cookie=0xAB02)
    add(table, of.match(in_port=3), of.output(1), 10, cookie=0xCD01)
    delete = of.flow_mod(
        of.match(),
        cookie=0xAB00,
        cookie_mask=0xFF00,
        command=of.OFPFC_DELETE,
        table_id=of.OFPTT_ALL,
        out_port=of.OFPP_ANY,
        out_group=of.OFPG_ANY,
    )
    table.apply([delete])
    assert [r.cookie for r in table.rules] == [0xCD01]
    assert len(table.flow_removed) == 1  # only the rule that asked to be told
    strict = of.flow_mod(
        of.match(in_port=3),
        priority=11,  # not its priority: strict deletes nothing
        command=of.OFPFC_DELETE_STRICT,
        out_port=of.OFPP_ANY,
        out_group=of.OFPG_ANY,
    )
    table.apply([strict])
    assert len(table.rules) == 1


def test_a_match_without_its_prerequisite_is_refused():
    with pytest.raises(AssertionError, match="ipv4_dst matched without eth_type"):
        FakeOFTable().apply([of.flow_mod(of.match(ipv4_dst="10.0.0.1"), of.output(1))])


def test_actions_set_fields_move_bits_and_output_to_the_in_port():
    table = FakeOFTable()
    actions = (
        of.reg_move("arp_spa", "arp_tpa", 32)
        + of.set_field("arp_spa", "10.0.1.1")
        + of.set_field("tun_ipv4_dst", "192.168.100.11")
        + of.output(of.OFPP_IN_PORT)
    )
    add(table, of.match(eth_type=0x0806, arp_tpa="10.0.1.1"), actions)
    result = table.forward(packet_fields(4, arp_request("10.0.1.1", sender="172.16.0.9")))
    assert result.outputs == [4]
    assert (result.fields["arp_spa"], result.fields["arp_tpa"]) == ("10.0.1.1", "172.16.0.9")
    assert result.tunnel[0] == "192.168.100.11"


def test_a_message_os_ken_would_write_otherwise_is_refused():
    message = bytearray(of.flow_mod(of.match(in_port=1), of.output(2)))
    message[-1] = 1  # the output action's padding, which os-ken writes as zeros
    with pytest.raises(AssertionError, match="not what os-ken writes"):
        FakeOFTable().apply([bytes(message)])
