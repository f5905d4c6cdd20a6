"""Second chance (core.secondchance): where a TCP non-SYN segment of a connection a gateway never
saw goes after its slot changed owner, on its own (``destinations``), in the balancer (``pick``)
and on the wire (the gateway's packet-out and per-flow rule)."""

from __future__ import annotations

import dataclasses

from ryu_app.core.balancer import Balancer
from ryu_app.core.flowkey import Flow
from ryu_app.core.maglev import build_spec, table_spec
from ryu_app.core.model import (
    HASH_5TUPLE,
    PLACEMENT_HASH,
    SECOND_CHANCE_DUPLICATE,
    SECOND_CHANCE_OFF,
    SECOND_CHANCE_PREVIOUS,
    Backend,
    Vip,
)
from ryu_app.core.packets import TCP_ACK, TCP_SYN
from ryu_app.core.secondchance import (
    HISTORY_TABLES,
    MAX_EXTRA,
    SecondChance,
    TableHistory,
    destinations,
    slotting,
)
from ryu_app.core.slots import placement_index
from tests.ryu_app.core.rig import BACKENDS, UPLINK, GatewayRig, frame

SIZE = 251
SLOTTING = ("hash", "5-tuple", SIZE)
NAMES = ("vm1", "vm2", "vm3")


def table(*names: str, size: int = SIZE):
    return build_spec(table_spec(size, [(name, 1) for name in names]))


def slot_moved(before, after, owner: str) -> int:
    """A slot that ``owner`` had in ``before`` and another backend has in ``after``."""
    return next(
        i for i in range(SIZE) if before.lookup(i) == owner and after.lookup(i) not in (owner,)
    )


def test_off_and_an_unchanged_slot_keep_the_current_owner():
    before, after = table(*NAMES), table("vm2", "vm3")
    moved = slot_moved(before, after, "vm1")
    kept = next(i for i in range(SIZE) if before.lookup(i) == after.lookup(i))
    alive = {"vm1", "vm2", "vm3"}.__contains__
    current = after.lookup(moved)
    assert destinations(SECOND_CHANCE_OFF, moved, current, (before,), alive) == (current,)
    same = after.lookup(kept)
    assert destinations(SECOND_CHANCE_DUPLICATE, kept, same, (before,), alive) == (same,)
    assert destinations(SECOND_CHANCE_DUPLICATE, moved, current, (), alive) == (current,)


def test_duplicate_adds_the_earlier_owner_previous_sends_to_it_alone():
    before, after = table(*NAMES), table("vm2", "vm3")  # vm1 drained
    moved = slot_moved(before, after, "vm1")
    current = after.lookup(moved)
    alive = {"vm1", "vm2", "vm3"}.__contains__
    assert destinations(SECOND_CHANCE_DUPLICATE, moved, current, (before,), alive) == (
        current,
        "vm1",
    )
    assert destinations(SECOND_CHANCE_PREVIOUS, moved, current, (before,), alive) == ("vm1",)


def test_an_earlier_owner_that_is_down_or_gone_gets_nothing():
    before, after = table(*NAMES), table("vm2", "vm3")
    moved = slot_moved(before, after, "vm1")
    current = after.lookup(moved)
    alive = {"vm2", "vm3"}.__contains__  # vm1 down here: its connections are gone with it
    for mode in (SECOND_CHANCE_DUPLICATE, SECOND_CHANCE_PREVIOUS):
        assert destinations(mode, moved, current, (before,), alive) == (current,)


def test_earlier_owners_are_distinct_newest_first_and_bounded():
    tables = (table("vm2", "vm3", "vm4"), table("vm1", "vm3", "vm4"), table("vm1", "vm2", "vm4"))
    tables += (table("vm5", "vm6", "vm7"),)
    now = table("vm8", "vm9")
    alive = lambda name: True  # noqa: E731
    for index in range(SIZE):
        current = now.lookup(index)
        found = destinations(SECOND_CHANCE_DUPLICATE, index, current, tables, alive)
        earlier = [t.lookup(index) for t in tables if t.lookup(index) != current]
        wanted = list(dict.fromkeys(earlier))[:MAX_EXTRA]
        assert found == (current, *wanted)


def test_history_keeps_the_newest_tables_within_the_window():
    history = TableHistory()
    history.replaced(table(), 0.0, SLOTTING)  # an empty table (a new VIP's) is not kept
    assert len(history) == 0
    tables = [table(*NAMES[: i % 3 + 1], size=SIZE) for i in range(HISTORY_TABLES + 2)]
    for at, replaced in enumerate(tables):
        history.replaced(replaced, float(at), SLOTTING)
    assert len(history) == HISTORY_TABLES
    newest = tuple(reversed(tables))[:HISTORY_TABLES]
    assert history.recent(5.0, window=100) == newest
    assert history.recent(7.0, window=3) == newest[:2]  # replaced at 5 and 4; at 3: too old
    assert len(history) == 2  # dropped for good
    assert history.recent(100.0, window=3) == ()


# ---- in the balancer ---------------------------------------------------------------------


def vip(mode: str, weights=(1, 1, 1), window: int = 900) -> Vip:
    backends = tuple(
        Backend(f"vm{i}", f"10.99.0.{10 + i}", f"02:00:00:00:01:{i:02x}", w)
        for i, w in enumerate(weights, start=1)
    )
    return Vip(
        "web",
        "10.0.0.100",
        80,
        table_size=SIZE,
        backends=backends,
        second_chance=mode,
        second_chance_window=window,
    )


def flow(port: int, flags: int) -> Flow:
    return Flow(4, bytes([10, 1, 0, 11]), bytes([10, 0, 0, 100]), 6, port, 80, flags)


def drained(mode: str, window: int = 900) -> Balancer:
    """A balancer whose VIP drained vm1 at t=10 (its table replaced then)."""
    balancer = Balancer()
    balancer.rebuild_now(balancer.set_vip(vip(mode, window=window), 0.0), 0.0)
    balancer.rebuild_now(balancer.set_vip(vip(mode, (0, 1, 1), window), 10.0), 10.0)
    return balancer


def moved_port(balancer: Balancer, after: int = 40000) -> int:
    """A source port (above ``after``) whose flow vm1 had before the drain (the first table)
    and another backend has now."""
    before = table(*NAMES)
    for port in range(after, 50000):
        probe = flow(port, TCP_SYN)
        index = placement_index(probe, HASH_5TUPLE, PLACEMENT_HASH, SIZE)
        if before.lookup(index) == "vm1" and balancer.predict(probe) != "vm1":
            return port
    raise AssertionError("no moved slot")


def test_a_moved_connection_goes_to_both_owners_and_keeps_doing_so():
    balancer = drained(SECOND_CHANCE_DUPLICATE)
    port = moved_port(balancer)
    decision = balancer.pick(flow(port, TCP_ACK), 20.0)
    assert decision.backend.name == balancer.predict(flow(port, TCP_SYN))
    assert [backend.name for backend, _ in decision.extra] == ["vm1"]
    again = balancer.pick(flow(port, TCP_ACK), 21.0)  # a hit: still both (a rule reinstalled)
    assert again.from_table and [b.name for b, _ in again.extra] == ["vm1"]
    assert balancer.second_chance.duplicated == 1
    balancer.forget_flow(again.key)
    assert len(balancer.second_chance) == 0


def test_previous_pins_a_moved_connection_to_the_earlier_owner():
    balancer = drained(SECOND_CHANCE_PREVIOUS)
    port = moved_port(balancer)
    decision = balancer.pick(flow(port, TCP_ACK), 20.0)
    assert decision.backend.name == "vm1" and decision.extra == ()
    assert balancer.pick(flow(port, TCP_ACK), 21.0).backend.name == "vm1"
    assert balancer.second_chance.previous == 1


def test_syns_off_and_an_expired_window_follow_the_current_table():
    balancer = drained(SECOND_CHANCE_DUPLICATE, window=30)
    port = moved_port(balancer)
    current = balancer.predict(flow(port, TCP_SYN))
    syn = balancer.pick(flow(port, TCP_SYN), 20.0)
    assert (syn.backend.name, syn.extra) == (current, ())
    late = balancer.pick(flow(port, TCP_ACK), 20.0)  # the same flow, begun by its SYN: a hit
    assert late.from_table and late.extra == ()
    expired = drained(SECOND_CHANCE_DUPLICATE, window=30)
    decision = expired.pick(flow(port, TCP_ACK), 41.0)  # replaced at 10, window 30
    assert (decision.backend.name, decision.extra) == (current, ())
    off = drained(SECOND_CHANCE_OFF)
    decision = off.pick(flow(port, TCP_ACK), 20.0)
    assert (decision.backend.name, decision.extra) == (current, ())


def test_a_down_earlier_owner_stops_getting_duplicates():
    balancer = drained(SECOND_CHANCE_DUPLICATE)
    port = moved_port(balancer)
    assert balancer.pick(flow(port, TCP_ACK), 20.0).extra
    balancer.rebuild_now(balancer.set_health("web", "vm1", False, 25.0), 25.0)
    decision = balancer.pick(flow(port, TCP_ACK), 26.0)
    assert decision.extra == () and decision.undo  # its rule sends to one VM again
    assert len(balancer.second_chance) == 0


def test_a_vip_change_keeps_its_table_history():
    balancer = drained(SECOND_CHANCE_DUPLICATE)
    port = moved_port(balancer)
    same = dataclasses.replace(balancer.vips["web"].vip, idle_timeout=120)
    assert balancer.set_vip(same, 15.0) == []  # no new table: history as it was
    assert [b.name for b, _ in balancer.pick(flow(port, TCP_ACK), 20.0).extra] == ["vm1"]


# ---- on the wire ---------------------------------------------------------------------------


def tunnel_destinations(actions) -> list[str]:
    return [a.value for a in actions if getattr(a, "key", None) == "tun_ipv4_dst"]


def test_the_gateway_sends_a_moved_segment_and_its_rule_to_both_vms():
    rig = GatewayRig(vips=(vip(SECOND_CHANCE_DUPLICATE),))
    rig.run(rig.core.set_vip(vip(SECOND_CHANCE_DUPLICATE, (0, 1, 1)), 10.0))
    port = moved_port(rig.core.balancer)
    current = rig.core.balancer.predict(flow(port, TCP_SYN))
    tunnels = {b.name: b.tunnel_ip for b in BACKENDS}
    (out,) = rig.packet_in(UPLINK, frame(sport=port, flags=TCP_ACK), 20.0)
    wanted = [tunnels[current], tunnels["vm1"]]
    assert tunnel_destinations(out.message.actions) == wanted
    rule = rig.flow_rule(frame(sport=port, flags=TCP_ACK))
    assert tunnel_destinations(rule.actions) == wanted
    other = moved_port(rig.core.balancer, after=port + 1)  # a moved slot too, opened by a SYN
    (syn_out,) = rig.packet_in(UPLINK, frame(sport=other, flags=TCP_SYN), 20.0)
    assert tunnel_destinations(syn_out.message.actions) == [tunnels[current_of(rig, other)]]
    # The duplicating rule takes no SYN: a new connection on the same 5-tuple comes to the
    # controller, which gives it a rule of one backend in place of the duplicating one.
    assert rig.send(UPLINK, frame(sport=port, flags=TCP_SYN), 30.0).to_controller is False
    rule = rig.flow_rule(frame(sport=port, flags=TCP_ACK))
    assert tunnel_destinations(rule.actions) == [tunnels[current]]
    assert len(rig.core.balancer.second_chance) == 0


def test_history_is_kept_only_while_second_chance_is_on_and_let_go_after_its_window():
    off = drained(SECOND_CHANCE_OFF)
    assert len(off.vips["web"].history) == 0  # a VIP without second chance keeps no tables
    balancer = drained(SECOND_CHANCE_DUPLICATE, window=30)
    history = balancer.vips["web"].history
    assert len(history) == 1
    balancer.expire_history(39.0)  # replaced at 10: 29 s ago, within the window
    assert len(history) == 1
    balancer.expire_history(39.5)  # less than a second since the last look: not looked at
    balancer.expire_history(41.0)
    assert len(history) == 0
    turned_off = drained(SECOND_CHANCE_DUPLICATE)
    turned_off.set_vip(vip(SECOND_CHANCE_OFF, (0, 1, 1)), 12.0)
    assert len(turned_off.vips["web"].history) == 0


def current_of(rig: GatewayRig, port: int) -> str:
    return rig.core.balancer.predict(flow(port, TCP_SYN))


def test_a_syn_on_a_duplicated_5_tuple_ends_the_duplication():
    balancer = drained(SECOND_CHANCE_DUPLICATE)
    port = moved_port(balancer)
    assert balancer.pick(flow(port, TCP_ACK), 20.0).extra
    syn = balancer.pick(flow(port, TCP_SYN), 21.0)  # the client opens it again
    assert syn.from_table and syn.extra == () and syn.undo
    assert len(balancer.second_chance) == 0


def test_a_record_outliving_its_entry_is_undone_at_the_next_miss():
    balancer = drained(SECOND_CHANCE_DUPLICATE, window=30)
    port = moved_port(balancer)
    first = balancer.pick(flow(port, TCP_ACK), 20.0)
    balancer.flows.remove(first.key)  # evicted at capacity: the record stays behind
    late = balancer.pick(flow(port, TCP_ACK), 50.0)  # past the window: one backend
    assert late.extra == () and late.undo and not late.from_table
    assert len(balancer.second_chance) == 0


def test_turning_duplicate_off_ends_duplication_on_the_next_hit():
    balancer = drained(SECOND_CHANCE_DUPLICATE)
    port = moved_port(balancer)
    balancer.pick(flow(port, TCP_ACK), 20.0)
    balancer.set_vip(vip(SECOND_CHANCE_OFF, (0, 1, 1)), 21.0)
    hit = balancer.pick(flow(port, TCP_ACK), 22.0)
    assert hit.from_table and hit.extra == () and hit.undo


def test_a_flapping_backend_does_not_push_the_drain_out_of_the_history():
    balancer = drained(SECOND_CHANCE_DUPLICATE)
    port = moved_port(balancer)
    for at in (11.0, 12.0, 13.0, 14.0):  # vm3 down and up, twice
        balancer.rebuild_now(balancer.set_health("web", "vm3", at in (12.0, 14.0), at), at)
    assert len(balancer.vips["web"].history) == 3  # the drain's and the two of the flap
    decision = balancer.pick(flow(port, TCP_ACK), 20.0)
    assert "vm1" in [b.name for b, _ in decision.extra] or decision.backend.name == "vm1"


def test_a_new_way_of_finding_slots_starts_a_new_history():
    balancer = drained(SECOND_CHANCE_DUPLICATE)
    resized = dataclasses.replace(vip(SECOND_CHANCE_DUPLICATE, (0, 1, 1)), table_size=509)
    balancer.rebuild_now(balancer.set_vip(resized, 15.0), 15.0)
    state = balancer.vips["web"]  # 251-slot tables say nothing of 509 slots
    assert state.history.recent(20.0, 900, slotting(state.vip)) == ()
    port = moved_port(balancer)  # (a flow vm1 had in the first 251-slot table)
    assert balancer.pick(flow(port, TCP_ACK), 20.0).extra == ()


def test_a_switch_mode_vip_keeps_no_history():
    balancer = Balancer()
    switch = dataclasses.replace(
        vip(SECOND_CHANCE_DUPLICATE), placement="port-bits", table_size=256, mode="switch"
    )
    balancer.rebuild_now(balancer.set_vip(switch, 0.0), 0.0)
    drained_switch = dataclasses.replace(switch, backends=vip("off", (0, 1, 1)).backends)
    balancer.rebuild_now(balancer.set_vip(drained_switch, 10.0), 10.0)
    assert len(balancer.vips["web"].history) == 0


def test_duplicated_flows_are_bounded_and_counted():
    balancer = drained(SECOND_CHANCE_DUPLICATE)
    balancer.second_chance = SecondChance(capacity=1)
    first = moved_port(balancer)
    second = moved_port(balancer, after=first + 1)
    balancer.pick(flow(first, TCP_ACK), 20.0)
    balancer.pick(flow(second, TCP_ACK), 20.0)
    assert len(balancer.second_chance) == 1 and balancer.second_chance.evicted == 1


def duplicated_on_the_wire() -> tuple[GatewayRig, int, str]:
    """A gateway that drained vm1 at 10 and duplicated a moved connection (to vm1 and its
    slot's current owner) at 20: the rig, the connection's source port, the current owner."""
    rig = GatewayRig(vips=(vip(SECOND_CHANCE_DUPLICATE),))
    rig.run(rig.core.set_vip(vip(SECOND_CHANCE_DUPLICATE, (0, 1, 1)), 10.0))
    port = moved_port(rig.core.balancer)
    rig.packet_in(UPLINK, frame(sport=port, flags=TCP_ACK), 20.0)
    return rig, port, current_of(rig, port)


def rule_tunnels(rig: GatewayRig, port: int) -> list[str]:
    """Where the switch's rule for the connection from ``port`` sends its segments."""
    return tunnel_destinations(rig.flow_rule(frame(sport=port, flags=TCP_ACK)).actions)


def test_turning_it_off_over_rest_gives_duplicated_flows_one_backend_again():
    rig, port, current = duplicated_on_the_wire()
    rig.run(rig.core.set_vip(vip(SECOND_CHANCE_OFF, (0, 1, 1)), 21.0))
    tunnels = {b.name: b.tunnel_ip for b in BACKENDS}
    assert rule_tunnels(rig, port) == [tunnels[current]]
    assert len(rig.core.balancer.second_chance) == 0


def test_a_retired_earlier_owner_leaves_the_duplicating_rule():
    rig, port, current = duplicated_on_the_wire()
    rig.run(rig.core.set_health("web", "vm1", False, 21.0))
    rig.tick(21.0 + 60.0)  # long past the grace: vm1 retired
    tunnels = {b.name: b.tunnel_ip for b in BACKENDS}
    assert rule_tunnels(rig, port) == [tunnels[current]]
    assert len(rig.core.balancer.second_chance) == 0


# ---- across a restart ----------------------------------------------------------------------


def restarted(
    saved, now: float, wall: float, mode: str = SECOND_CHANCE_DUPLICATE, window: int = 900
) -> Balancer:
    """A new run (its clock at ``now``, the wall clock at ``wall``) of a gateway that had
    drained vm1: it starts from its configuration, every backend healthy, and takes the
    earlier run's history (the state file's) with tables built from its specs."""
    balancer = Balancer()
    balancer.rebuild_now(balancer.set_vip(vip(mode, (0, 1, 1), window), now), now)
    specs = {kept.spec for entries in saved.history.values() for kept in entries}
    tables = {spec: build_spec(spec) for spec in specs}
    balancer.restore_history(saved, tables, now, wall)
    return balancer


def test_the_history_outlives_a_restart_through_the_saved_state():
    before = drained(SECOND_CHANCE_DUPLICATE)  # vm1 drained at 10
    port = moved_port(before)
    saved = before.ids_snapshot(20.0).saved(wall=1_000_020.0)  # written at 20 (wall 1,000,020)
    (entries,) = saved.history.values()
    assert [kept.at for kept in entries] == [None, 1_000_010.0]  # in use; replaced at 10
    after = restarted(saved, now=3.0, wall=1_000_050.0)  # a new run, 30 s later
    decision = after.pick(flow(port, TCP_ACK), 4.0)
    assert [backend.name for backend, _ in decision.extra] == ["vm1"]
    assert after.history_version == 1


def test_a_restart_keeps_only_what_is_within_the_window_and_second_chance_on():
    before = drained(SECOND_CHANCE_DUPLICATE, window=30)
    port = moved_port(before)
    saved = before.ids_snapshot(20.0).saved(wall=1_000_020.0)
    late = restarted(saved, now=3.0, wall=1_000_045.0, window=30)  # replaced 35 s ago
    assert late.pick(flow(port, TCP_ACK), 4.0).extra == ()
    off = restarted(saved, now=3.0, wall=1_000_021.0, mode=SECOND_CHANCE_OFF)
    assert len(off.vips["web"].history) == 0
    assert drained(SECOND_CHANCE_OFF).ids_snapshot(20.0).history == ()


def test_a_vip_change_that_keeps_duplicating_leaves_the_records_alone():
    rig, port, _ = duplicated_on_the_wire()
    longer = dataclasses.replace(vip(SECOND_CHANCE_DUPLICATE, (0, 1, 1)), idle_timeout=120)
    rig.run(rig.core.set_vip(longer, 21.0))
    assert len(rig.core.balancer.second_chance) == 1
    assert len(rule_tunnels(rig, port)) == 2  # still to both
