"""A gateway's decisions: consistent across gateways, sticky per gateway, re-hash on failure."""

import ipaddress
import random

import pytest

from ryu_app.core.balancer import Balancer, TableCache
from ryu_app.core.flowkey import PROTO_TCP, PROTO_UDP, TCP_ACK, TCP_SYN, Flow, flow_key
from ryu_app.core.flowtable import FlowTable
from ryu_app.core.maglev import TableSpec, build_table, table_spec
from ryu_app.core.model import Backend, HealthCheck, Vip


def backends(count, weight=1):
    return tuple(
        Backend(f"vm{i}", f"192.168.100.{10 + i}", f"02:00:00:00:01:{i:02x}", weight)
        for i in range(1, count + 1)
    )


def make_vip(name="web", address="10.0.0.100", port=80, count=4, **fields):
    return Vip(name, address, port, backends=fields.pop("backends", backends(count)), **fields)


def tcp_flow(
    src="10.1.0.11", sport=40000, dst="10.0.0.100", dport=80, flags=TCP_SYN, proto=PROTO_TCP
):
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    return Flow(s.version, s.packed, d.packed, proto, sport, dport, flags)


def random_flows(count, seed=1, dst="10.0.0.100"):
    rng = random.Random(seed)
    return [
        tcp_flow(
            src=str(ipaddress.IPv4Address(rng.getrandbits(32))),
            sport=rng.randint(1024, 65535),
            dst=dst,
        )
        for _ in range(count)
    ]


def ready(*vips):
    balancer = Balancer()
    for vip in vips:
        balancer.rebuild_now(balancer.set_vip(vip))
    return balancer


def down_and_retired(balancer, vip_name, backend_name):
    """The backend goes down, its table is built, and its grace ends (the gateway retires
    it then: ``retirement.Retirements``)."""
    balancer.rebuild_now(balancer.set_health(vip_name, backend_name, False))
    backend_id = balancer.vips[vip_name].backend_ids[backend_name]
    assert balancer.retire(vip_name, backend_name, backend_id)


def test_two_gateways_with_the_same_healthy_set_agree_without_sharing_anything():
    vip = make_vip(count=8)
    gateway_a = ready(vip)
    # The other gateway learns the same VIP with backends in another order.
    shuffled = list(vip.backends)
    random.Random(3).shuffle(shuffled)
    gateway_b = ready(make_vip(backends=tuple(shuffled)))
    for flow in random_flows(2000):
        a, b = gateway_a.pick(flow, 0.0), gateway_b.pick(flow, 0.0)
        assert a.backend.name == b.backend.name
    # All eight backends get flows.
    assert len({gateway_a.predict(f) for f in random_flows(2000)}) == 8


def test_a_flow_keeps_its_backend_from_the_flow_table():
    balancer = ready(make_vip())
    flow = tcp_flow()
    first = balancer.pick(flow, 0.0)
    assert not first.from_table
    again = balancer.pick(tcp_flow(flags=TCP_ACK), 1.0)
    assert again.from_table and again.backend == first.backend
    assert balancer.flows.counters.hits == 1 and balancer.flows.counters.inserts == 1


def test_non_syn_miss_is_counted_separately():
    balancer = ready(make_vip())
    balancer.pick(tcp_flow(flags=TCP_ACK), 0.0)
    balancer.pick(tcp_flow(sport=1, flags=TCP_SYN), 0.0)
    assert balancer.flows.counters.misses == 2
    assert balancer.flows.counters.tcp_non_syn_misses == 1


def test_a_backend_down_keeps_its_flows_but_takes_no_new_ones_until_retired():
    balancer = ready(make_vip(count=5))
    flows = random_flows(1000)
    placed = {flow: balancer.pick(flow, 0.0).backend.name for flow in flows}
    victim_id = balancer.vips["web"].backend_ids["vm3"]
    assert balancer.set_health("web", "vm3", False)  # a rebuild is requested
    victims = [flow for flow in flows if placed[flow] == "vm3"]
    for flow in victims:  # its established flows stay with it (their rules do, in a switch)
        decision = balancer.pick(flow, 1.0)
        assert decision.from_table and decision.backend.name == "vm3"
    new = [balancer.pick(flow, 1.0) for flow in random_flows(300, seed=4)]
    assert all(d is None or d.backend.name != "vm3" for d in new)  # old table: dropped
    balancer.rebuild_now(balancer.set_health("web", "vm3", False))
    assert balancer.retire("web", "vm3", victim_id + 1000) is False  # not its id
    assert balancer.set_health("web", "vm3", True) == []  # back: the cached table
    assert balancer.retire("web", "vm3", victim_id) is False  # in service: nothing to end
    assert balancer.vips["web"].backend_ids["vm3"] == victim_id and balancer.counters


def test_a_retired_backend_ends_its_flows_and_its_entries_are_swept():
    balancer = ready(make_vip(count=5))
    flows = random_flows(1000)
    placed = {flow: balancer.pick(flow, 0.0).backend.name for flow in flows}
    victim_id = balancer.vips["web"].backend_ids["vm3"]
    assert balancer.flows.count_by_backend()[victim_id] > 0
    assert balancer.set_health("web", "vm3", False)  # a rebuild is requested ...
    assert balancer.retire("web", "vm3", victim_id)  # ... and the grace ended before it landed
    victims = [flow for flow in flows if placed[flow] == "vm3"]
    for flow in victims[:10]:
        decision = balancer.pick(flow, 1.0)  # the old table still names vm3: dropped
        assert decision is None or (decision.backend.name != "vm3" and not decision.from_table)
    assert balancer.counters.stale_entries == 10
    assert balancer.flows.sweeping
    balancer.flows.sweep()
    assert victim_id not in balancer.flows.count_by_backend()
    assert len(balancer.flows) == 1000 - len(victims)
    assert balancer.set_health("web", "vm3", False) == []  # idempotent


def test_a_backend_back_up_has_a_new_id_so_the_sweep_spares_its_new_flows():
    balancer = ready(make_vip(count=5))
    for flow in random_flows(500):
        balancer.pick(flow, 0.0)
    old_id = balancer.vips["web"].backend_ids["vm3"]
    down_and_retired(balancer, "web", "vm3")
    balancer.rebuild_now(balancer.set_health("web", "vm3", True))
    new_id = balancer.vips["web"].backend_ids["vm3"]
    assert new_id != old_id and balancer.backend_of(old_id) is None
    assert balancer.backend_of(new_id)[1].name == "vm3"
    fresh = [
        d for f in random_flows(500, seed=9) if (d := balancer.pick(f, 2.0)).backend_id == new_id
    ]
    assert fresh, "vm3 takes new flows again"
    balancer.flows.sweep()
    counts = balancer.flows.count_by_backend()
    assert old_id not in counts and counts[new_id] == len(fresh)


def test_backend_down_then_rebuild_moves_only_the_victims_flows():
    balancer = ready(make_vip(count=5))
    flows = random_flows(1000)
    before = {flow: balancer.pick(flow, 0.0).backend.name for flow in flows}
    down_and_retired(balancer, "web", "vm3")
    after = {flow: balancer.pick(flow, 1.0) for flow in flows}
    for flow, decision in after.items():
        assert decision.backend.name != "vm3"
        if before[flow] != "vm3":
            assert decision.backend.name == before[flow]
            assert decision.from_table
    # A gateway that never saw the flows (empty table) agrees with this one on every flow.
    fresh = ready(make_vip(count=5))
    fresh.rebuild_now(fresh.set_health("web", "vm3", False))
    moved = [f for f in flows if before[f] == "vm3"]
    assert moved
    for flow in moved:
        assert fresh.pick(flow, 0.0).backend.name == after[flow].backend.name


def test_old_table_never_sends_new_flows_to_a_backend_that_just_went_down():
    balancer = ready(make_vip(count=3))
    requests = balancer.set_health("web", "vm2", False)
    assert requests  # the rebuild is pending: the old table still names vm2
    picks = [balancer.pick(flow, 0.0) for flow in random_flows(300)]
    assert all(p is None or p.backend.name != "vm2" for p in picks)
    assert balancer.counters.stale_table_drops == sum(p is None for p in picks) > 0
    balancer.rebuild_now(requests)
    assert all(balancer.pick(flow, 0.0) is not None for flow in random_flows(300, seed=2))


def test_coming_back_up_leaves_existing_flows_where_they_are():
    balancer = ready(make_vip(count=4))
    balancer.rebuild_now(balancer.set_health("web", "vm1", False))
    flows = random_flows(500)
    placed = {flow: balancer.pick(flow, 0.0).backend.name for flow in flows}
    balancer.rebuild_now(balancer.set_health("web", "vm1", True))
    for flow in flows:
        decision = balancer.pick(flow, 1.0)
        assert decision.from_table and decision.backend.name == placed[flow]
    # New flows may go to vm1 again.
    assert "vm1" in {balancer.pick(f, 2.0).backend.name for f in random_flows(500, seed=9)}


def test_draining_backend_keeps_its_flows_but_takes_no_new_ones():
    vip = make_vip(count=3)
    balancer = ready(vip)
    flows = random_flows(600)
    placed = {flow: balancer.pick(flow, 0.0).backend.name for flow in flows}
    drained = make_vip(
        backends=tuple(
            b if b.name != "vm2" else Backend("vm2", b.tunnel_ip, b.mac, 0) for b in vip.backends
        )
    )
    balancer.rebuild_now(balancer.set_vip(drained))
    for flow in flows:
        assert balancer.pick(flow, 1.0).backend.name == placed[flow]
    assert "vm2" not in {balancer.pick(f, 1.0).backend.name for f in random_flows(600, seed=5)}


def test_unknown_service_is_not_vip_traffic():
    balancer = ready(make_vip())
    assert balancer.pick(tcp_flow(dport=81), 0.0) is None
    assert balancer.pick(tcp_flow(proto=PROTO_UDP, flags=0), 0.0) is None
    assert balancer.pick(tcp_flow(dst="10.0.0.101"), 0.0) is None
    assert balancer.counters.not_vip == 3


def test_all_backends_down_without_panic_means_no_backend():
    balancer = ready(make_vip(count=2, health=HealthCheck(panic_threshold=0)))
    balancer.rebuild_now(balancer.set_health("web", "vm1", False))
    balancer.rebuild_now(balancer.set_health("web", "vm2", False))
    assert balancer.pick(tcp_flow(), 0.0) is None
    assert balancer.counters.no_backend == 1 and not balancer.vips["web"].panic


def test_under_the_panic_threshold_new_flows_go_to_every_serving_backend():
    """Envoy's panic: 1 of 4 healthy is under 50%, so the table is over all four of weight > 0
    (the same on every gateway in panic), and the down ones keep their entries."""
    drained = Backend("vm4", "192.168.100.14", "02:00:00:00:01:04", 0)
    fifth = Backend("vm5", "192.168.100.15", "02:00:00:00:01:05")
    balancer = ready(make_vip(backends=(*backends(3), drained, fifth)))
    state = balancer.vips["web"]
    balancer.rebuild_now(balancer.set_health("web", "vm4", False))  # weight 0: counts nowhere
    balancer.rebuild_now(balancer.set_health("web", "vm1", False))
    assert not state.panic and state.serving == {"vm2", "vm3", "vm5"}  # 3 of 4 healthy
    balancer.rebuild_now(balancer.set_health("web", "vm2", False))
    assert not state.panic  # 2 of 4: not under 50%
    builds = balancer.cache.builds
    balancer.rebuild_now(balancer.set_health("web", "vm3", False))
    assert state.panic and state.serving == {"vm1", "vm2", "vm3", "vm5"}  # not vm4 (weight 0)
    assert state.out_of_service() == {"vm4"}  # draining and down: its flows may end
    assert balancer.cache.builds == builds  # the all-healthy table was cached: no build
    picked = {balancer.pick(flow, 1.0).backend.name for flow in random_flows(400)}
    assert picked == {"vm1", "vm2", "vm3", "vm5"}
    assert balancer.retire("web", "vm1", state.backend_ids["vm1"]) is False  # served in panic
    balancer.rebuild_now(balancer.set_health("web", "vm1", True))
    assert not state.panic and state.serving == {"vm1", "vm5"}
    assert state.out_of_service() == {"vm2", "vm3", "vm4"}


def test_identical_backend_sets_share_one_table_and_rebuild_only_on_change():
    cache = TableCache()
    balancer = Balancer(cache=cache)
    balancer.rebuild_now(balancer.set_vip(make_vip("web", port=80)))
    balancer.rebuild_now(balancer.set_vip(make_vip("api", port=8080)))
    assert cache.builds == 1
    assert balancer.vips["web"].table is balancer.vips["api"].table
    # Reporting a backend healthy that already is changes nothing.
    assert balancer.set_health("web", "vm1", True) == []
    assert cache.builds == 1
    balancer.rebuild_now(balancer.set_health("web", "vm1", False))
    balancer.rebuild_now(balancer.set_health("api", "vm1", False))
    assert cache.builds == 2  # api reused web's new table
    balancer.rebuild_now(balancer.set_health("web", "vm1", True))
    assert cache.builds == 2  # the all-healthy table is still cached


def test_stale_table_request_is_not_installed():
    balancer = ready(make_vip(count=3))
    request = balancer.set_health("web", "vm1", False)[0]
    balancer.set_health("web", "vm1", True)  # back up before the rebuild landed
    assert not balancer.install_table(request, TableCache.build(request.spec))
    assert balancer.vips["web"].table.names == ("vm1", "vm2", "vm3")


def test_src_ip_mode_keeps_a_client_on_one_backend_and_separates_vips():
    balancer = ready(
        make_vip(hash="src-ip", count=6), make_vip("alt", port=443, hash="src-ip", count=6)
    )
    for client in ("10.1.0.11", "10.1.0.12", "10.9.9.9"):
        names = {
            balancer.pick(tcp_flow(src=client, sport=p), 0.0).backend.name
            for p in range(1000, 1050)
        }
        assert len(names) == 1
    # Same client, same address, other port: its own table entry, not the first VIP's.
    balancer.pick(tcp_flow(src="10.1.0.11", dport=443), 0.0)
    assert len(balancer.flows) == 4


def test_ipv6_vip():
    vip = make_vip("web6", address="fd00::100", count=4)
    balancer = ready(vip)
    flow = tcp_flow(src="fd00:1::11", dst="fd00::100")
    decision = balancer.pick(flow, 0.0)
    assert decision.vip.name == "web6"
    assert balancer.predict(flow) == decision.backend.name


def test_replacing_a_vip_keeps_health_and_ids_of_unchanged_backends():
    balancer = ready(make_vip(count=3))
    balancer.rebuild_now(balancer.set_health("web", "vm2", False))
    ids = dict(balancer.vips["web"].backend_ids)
    changed = list(backends(3))
    changed[0] = Backend("vm1", "192.168.100.99", changed[0].mac)  # moved: a new backend
    balancer.rebuild_now(balancer.set_vip(make_vip(backends=tuple(changed))))
    state = balancer.vips["web"]
    assert state.healthy == {"vm1", "vm3"}
    assert state.backend_ids["vm3"] == ids["vm3"] and state.backend_ids["vm1"] != ids["vm1"]


def test_entries_of_a_removed_vip_are_not_used():
    balancer = ready(make_vip())
    flow = tcp_flow()
    balancer.pick(flow, 0.0)
    assert balancer.remove_vip("web") and not balancer.remove_vip("web")
    assert balancer.pick(flow, 0.0) is None


def test_idle_entries_expire_and_the_flow_is_rehashed_to_the_same_backend():
    balancer = Balancer(flows=FlowTable(capacity=10))
    balancer.rebuild_now(balancer.set_vip(make_vip(idle_timeout=5)))
    first = balancer.pick(tcp_flow(), 0.0)
    later = balancer.pick(tcp_flow(), 6.0)
    assert not later.from_table and later.backend == first.backend


def test_health_of_unknown_backend_is_an_error():
    balancer = ready(make_vip())
    with pytest.raises(KeyError):
        balancer.set_health("web", "vm9", False)


def test_udp_vip_uses_udp_idle_timeout_from_config():
    vip = make_vip("dns", port=53, protocol="udp", idle_timeout=30, health=HealthCheck())
    balancer = ready(vip)
    flow = Flow(4, bytes([10, 1, 0, 11]), bytes([10, 0, 0, 100]), PROTO_UDP, 5353, 53)
    assert balancer.pick(flow, 0.0) is not None
    assert balancer.pick(flow, 29.0).from_table
    assert not balancer.pick(flow, 60.0).from_table


# ---- one rule for stale entries, one identity for tables -------------------------------------


def test_held_backend_is_the_stale_entry_rule():
    """An entry stands while its backend is this VIP's and not retired, draining or down
    within its grace included; it is stale once the backend was retired (its id with it) or
    went away, or for another VIP."""
    vip = make_vip(count=3)
    balancer = ready(vip, make_vip("api", port=8080, count=3))
    web, api = balancer.vips["web"], balancer.vips["api"]
    vm1, vm2 = web.backend_ids["vm1"], web.backend_ids["vm2"]
    assert balancer.held_backend(web, vm1).name == "vm1"
    assert balancer.held_backend(api, vm1) is None  # web's id, looked up for api
    drained = tuple(
        b if b.name != "vm1" else Backend("vm1", b.tunnel_ip, b.mac, 0) for b in vip.backends
    )
    balancer.rebuild_now(balancer.set_vip(make_vip(backends=drained)))
    assert balancer.held_backend(web, vm1).weight == 0  # draining: the entry stands
    balancer.rebuild_now(balancer.set_health("web", "vm2", False))
    assert balancer.held_backend(web, vm2).name == "vm2"  # down, within its grace: stands
    assert balancer.retire("web", "vm2", vm2)
    assert balancer.held_backend(web, vm2) is None  # retired: stale
    balancer.rebuild_now(balancer.set_health("web", "vm2", True))
    assert balancer.held_backend(web, vm2) is None  # back up under a new id: still stale
    balancer.rebuild_now(balancer.set_vip(make_vip(backends=drained[:1])))
    assert balancer.held_backend(balancer.vips["web"], web.backend_ids["vm3"]) is None  # gone


def test_pick_serves_from_the_table_exactly_when_held_backend_says_so():
    balancer = ready(make_vip(count=4))
    flows = random_flows(300)
    for flow in flows:
        balancer.pick(flow, 0.0)
    down_and_retired(balancer, "web", "vm2")
    state = balancer.vips["web"]
    verdicts = []
    for flow in flows:
        entry = balancer.flows.peek(flow_key(flow, "5-tuple"), 1.0)
        held = balancer.held_backend(state, entry)
        decision = balancer.pick(flow, 1.0)
        assert decision.from_table == (held is not None)
        assert held is None or decision.backend == held
        verdicts.append(held is not None)
    assert 0 < verdicts.count(False) < len(flows)  # vm2's entries were stale, the others held


def test_a_table_request_carries_the_table_spec_the_builder_needs():
    cache = TableCache()
    balancer = Balancer(cache=cache)
    drained = (*backends(2), Backend("vm3", "192.168.100.13", "02:00:00:00:01:03", 0))
    (request,) = balancer.set_vip(make_vip(backends=drained, table_size=251))
    assert request.spec == TableSpec(251, (("vm1", 1), ("vm2", 1)))  # weight 0: no slots
    assert request.spec == table_spec(251, [("vm2", 1), ("vm3", 0), ("vm1", 1)])
    assert TableCache.build(request.spec) == build_table([("vm1", 1), ("vm2", 1)], 251)
