"""mininet/switch_table.py on ``ovs-ofctl dump-flows`` text taken from a switch-mode demo gateway
(OVS 3.1; k = 8 slot bits): the rules' backends, pins, slot owners and counters."""

from __future__ import annotations

import switch_table  # mininet/ is on sys.path (conftest.py)

DUMP = """\
OFPST_FLOW reply (OF1.3) (xid=0x2): flags=[more]
 cookie=0x4c53010000000000, duration=2.251s, table=0, n_packets=0, n_bytes=0, priority=100,tcp,in_port=1,nw_dst=10.0.0.100,tp_dst=80 actions=meter:1,CONTROLLER:65535
 cookie=0x4c53030000000002, duration=2.251s, table=0, n_packets=7, n_bytes=0, priority=210,tcp,in_port=1,nw_dst=10.0.0.100,tp_src=0x0/0x1fe,tp_dst=80,tcp_flags=+syn-ack actions=set_field:02:00:00:00:01:02->eth_dst,set_field:192.168.100.12->tun_dst,set_field:0x64->tun_id,output:2
 cookie=0x4c53030000000001, duration=2.251s, table=0, n_packets=5, n_bytes=0, priority=210,tcp,in_port=1,nw_dst=10.0.0.100,tp_src=0x2/0x1fe,tp_dst=80,tcp_flags=+syn-ack actions=set_field:02:00:00:00:01:01->eth_dst,set_field:192.168.100.11->tun_dst,set_field:0x64->tun_id,output:2
 cookie=0x4c53030000000002, duration=2.251s, table=0, n_packets=0, n_bytes=0, priority=190,tcp,in_port=1,nw_dst=10.0.0.100,tp_src=0x0/0x1fe,tp_dst=80 actions=set_field:0x2->reg1,learn(table=0,idle_timeout=60,fin_idle_timeout=2,priority=200,cookie=0x4c53020000000002,NXM_OF_IN_PORT[],eth_type=0x800,nw_proto=6,NXM_OF_IP_SRC[],NXM_OF_IP_DST[],NXM_OF_TCP_SRC[],NXM_OF_TCP_DST[],load:0x20000000102->NXM_OF_ETH_DST[],load:0xc0a8640c->NXM_NX_TUN_IPV4_DST[],load:0x64->NXM_NX_TUN_ID[],output:NXM_NX_REG1[]),set_field:02:00:00:00:01:02->eth_dst,set_field:192.168.100.12->tun_dst,set_field:0x64->tun_id,output:2
 cookie=0x4c53030000000001, duration=2.251s, table=0, n_packets=0, n_bytes=0, priority=190,tcp,in_port=1,nw_dst=10.0.0.100,tp_src=0x2/0x1fe,tp_dst=80 actions=set_field:0x2->reg1,learn(table=0,idle_timeout=60,fin_idle_timeout=2,priority=200,cookie=0x4c53020000000001,NXM_OF_IN_PORT[],eth_type=0x800,nw_proto=6,NXM_OF_IP_SRC[],NXM_OF_IP_DST[],NXM_OF_TCP_SRC[],NXM_OF_TCP_DST[],load:0x20000000101->NXM_OF_ETH_DST[],load:0xc0a8640b->NXM_NX_TUN_IPV4_DST[],load:0x64->NXM_NX_TUN_ID[],output:NXM_NX_REG1[]),set_field:02:00:00:00:01:01->eth_dst,set_field:192.168.100.11->tun_dst,set_field:0x64->tun_id,output:2
 cookie=0x4c53020000000004, duration=0.932s, table=0, n_packets=3, n_bytes=234, idle_timeout=2, priority=200,tcp,in_port=1,nw_src=10.1.0.11,nw_dst=10.0.0.100,tp_src=20000,tp_dst=80 actions=fin_timeout(idle_timeout=2),load:0x20000000104->NXM_OF_ETH_DST[],load:0xc0a8640e->NXM_NX_TUN_IPV4_DST[],load:0x64->NXM_NX_TUN_ID[],output:2
 cookie=0x4c53020000000003, duration=0.5s, table=0, n_packets=9, n_bytes=900, idle_timeout=60, priority=200,tcp,in_port=1,nw_src=10.1.0.12,nw_dst=10.0.0.100,tp_src=20007,tp_dst=80 actions=set_field:02:00:00:00:01:03->eth_dst,set_field:192.168.100.13->tun_dst,set_field:0x64->tun_id,output:2
"""  # noqa: E501 - the switch's own lines

MACS = {f"02:00:00:00:01:0{n}": f"vm{n}" for n in range(1, 5)}


def test_parse_reads_priority_counters_match_and_backend():
    rules = switch_table.parse(DUMP)
    assert [r.priority for r in rules] == [100, 210, 210, 190, 190, 200, 200]
    syn = rules[1]
    assert syn.n_packets == 7 and syn.mac == "02:00:00:00:01:02"
    assert syn.match["tp_src"] == "0x0/0x1fe" and "tcp" in syn.match
    assert "duration" not in syn.match and "cookie" not in syn.match
    assert rules[0].mac is None


def test_a_slot_rules_backend_is_its_own_not_confused_by_its_learn_spec():
    rules = switch_table.parse(DUMP)
    assert [r.mac for r in rules if r.priority == 190] == ["02:00:00:00:01:02", "02:00:00:00:01:01"]


def test_pins_learned_by_the_switch_and_installed_by_a_controller():
    pins = switch_table.pins(switch_table.parse(DUMP), MACS)
    assert pins == [
        {"src_ip": "10.1.0.11", "src_port": 20000, "backend": "vm4"},  # learned: load:0x...
        {"src_ip": "10.1.0.12", "src_port": 20007, "backend": "vm3"},  # installed: set_field
    ]


def test_slot_owner_follows_the_masked_source_port_bits():
    rules = switch_table.parse(DUMP)
    # mask 0x1fe: bit 0 and bits 9.. do not count
    assert switch_table.slot_owner(rules, 0, MACS) == "vm2"
    assert switch_table.slot_owner(rules, 1, MACS) == "vm2"
    assert switch_table.slot_owner(rules, 3, MACS) == "vm1"
    assert switch_table.slot_owner(rules, 0x200 + 2, MACS) == "vm1"
    assert switch_table.slot_owner(rules, 4, MACS) is None  # no rule for that slot here


def test_counters_per_backend():
    rules = switch_table.parse(DUMP)
    assert switch_table.syns_placed(rules, MACS) == {"vm2": 7, "vm1": 5}
    assert switch_table.slot_targets(rules, MACS) == {"vm2": 2, "vm1": 2}


def test_an_exact_port_match_and_no_port():
    (rule,) = switch_table.parse(
        " cookie=0x1, n_packets=0, priority=200,tcp,tp_src=20000 actions=output:2\n"
    )
    assert rule.port_matches(20000) and not rule.port_matches(20001)
    (bare,) = switch_table.parse(" cookie=0x1, priority=10,ip actions=drop\n")
    assert not bare.port_matches(20000)
