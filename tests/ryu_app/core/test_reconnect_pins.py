"""Per-flow rules and switch mode's pins over a controller reconnection or restart (issue 14):
the controller deletes only the kinds of rule it writes again, each by its own cookie and mask,
and of the per-flow rules only those that name a port number the pipeline no longer uses."""

from __future__ import annotations

import dataclasses

from ryu_app.core import pipeline
from ryu_app.core.balancer import SavedIds
from ryu_app.core.flowkey import parse_frame
from ryu_app.core.pipeline import (
    BASE_COOKIE,
    COOKIE_ALL_FLOWS_MASK,
    KIND_SLOT,
    PRIORITY_FLOW,
    flow_cookie,
    kind_cookie,
)
from ryu_app.core.switchrules import PRIORITY_SLOT, PRIORITY_SYN_SLOT
from ryu_app.shell.compat import ofproto_v1_3 as ofp
from tests.ryu_app.core.rig import BACKENDS, OTHER, PORTS, TUNNEL, UPLINK, VIP, GatewayRig, frame
from tests.ryu_app.fake_oftable import decode, raw_flow_removed

TCP_ACK = 0x10
SWITCH_VIP = dataclasses.replace(VIP, placement="port-bits", table_size=256, mode="switch")


def deletes(messages) -> list:
    """The flow-mod deletes among ``messages``, decoded."""
    mods = [decode(m) for m in messages if m[1] == ofp.OFPT_FLOW_MOD]
    return [m for m in mods if m.command in (ofp.OFPFC_DELETE, ofp.OFPFC_DELETE_STRICT)]


def selects(delete, cookie: int) -> bool:
    return cookie & delete.cookie_mask == delete.cookie & delete.cookie_mask


def pin(rig, sport: int) -> tuple[bytes, object]:
    """A switch-mode flow's SYN and first ACK: its pin is learned; (the ACK, where it went)."""
    rig.send(UPLINK, frame(sport=sport), 1.0)
    ack = frame(sport=sport, flags=TCP_ACK)
    return ack, rig.send(UPLINK, ack, 1.0)


def test_connect_deletes_base_and_slot_rules_each_by_its_kind_and_no_flow_rule():
    rig = GatewayRig(vips=(SWITCH_VIP,), connect=False, saved_ids=SavedIds({}, 7))
    sent = deletes(rig.core.on_connect(0.0).messages)
    assert [(d.cookie, d.cookie_mask) for d in sent] == [
        (BASE_COOKIE, COOKIE_ALL_FLOWS_MASK),
        (kind_cookie(KIND_SLOT), COOKIE_ALL_FLOWS_MASK),
    ]
    assert all(d.command == ofp.OFPFC_DELETE and d.table_id == ofp.OFPTT_ALL for d in sent)
    assert all(d.out_port == ofp.OFPP_ANY and not d.match.items() for d in sent)
    for backend_id in (0, 1, 0xFFFFFFFF):
        assert not any(selects(d, flow_cookie(backend_id)) for d in sent)


def saved(rig) -> SavedIds:
    """What the state file of ``rig``'s run would keep (its ids), for a restarted one."""
    return rig.core.balancer.saved_ids()


def test_a_run_without_saved_ids_deletes_every_rule_of_ours_at_its_first_connection_only():
    """Its backends' ids need not be the ones the kept rules carry: one message takes all our
    rules, the per-flow ones too; from then on (a reconnection) the per-flow rules are its
    own, and stay."""
    rig = GatewayRig(vips=(SWITCH_VIP,))
    ack, first = pin(rig, 40002)
    sent = deletes(GatewayRig(vips=(SWITCH_VIP,), connect=False).core.on_connect(5.0).messages)
    assert [(d.cookie, d.cookie_mask) for d in sent] == [
        (pipeline.COOKIE_TAG, pipeline.COOKIE_TAG_MASK)
    ]
    assert all(selects(sent[0], flow_cookie(i)) for i in (1, 2, 0xFFFFF))
    fresh = GatewayRig(vips=(SWITCH_VIP,), connect=False)
    fresh.table = rig.table
    fresh.connect(5.0)
    assert fresh.table.rules_at(PRIORITY_FLOW) == []
    again = fresh.send(UPLINK, ack, 6.0)  # learned again from the slot rule
    assert again.learned and again.tunnel == first.tunnel
    fresh.connect(7.0)  # a reconnection within the run
    assert fresh.send(UPLINK, ack, 8.0).rule is again.learned[0]
    again_sent = deletes(fresh.core.on_connect(9.0).messages)
    assert [d.cookie for d in again_sent] == [BASE_COOKIE, kind_cookie(KIND_SLOT)]


def test_restored_ids_name_the_kept_pins_so_a_backend_going_down_deletes_its_own():
    """Ids given in config order by a fresh run would differ (vm1 left while the controller
    was away): restored, each backend keeps its id, and the one going down takes exactly
    its pins."""
    rig = GatewayRig(vips=(SWITCH_VIP,))
    ack, first = pin(rig, 40002)
    owner = next(b for b in BACKENDS if b.tunnel_ip == first.tunnel[0])
    (learned,) = first.learned
    gone = next(b for b in BACKENDS if b is not owner)
    fewer = without(SWITCH_VIP, gone.name)
    restarted = GatewayRig(vips=(fewer,), connect=False, saved_ids=saved(rig))
    restarted.table = rig.table
    ids = restarted.core.balancer.vips[fewer.name].backend_ids
    before = rig.core.balancer.vips[VIP.name].backend_ids
    assert ids == {name: before[name] for name in ids}
    fresh = GatewayRig(vips=(fewer,), connect=False).core.balancer.vips[VIP.name].backend_ids
    assert fresh != ids  # what a run without them would have given
    restarted.connect(5.0)
    assert restarted.table.rules_at(PRIORITY_FLOW) == [learned]
    (other,) = [b for b in fewer.backends if b is not owner]
    vip = moved(fewer, other.name)  # its rules go (by its id's cookie): not the pin
    restarted.run(restarted.core.set_vip(vip, 6.0))
    assert restarted.table.rules_at(PRIORITY_FLOW) == [learned]
    restarted.run(restarted.core.set_vip(moved(vip, owner.name), 7.0))
    assert restarted.table.rules_at(PRIORITY_FLOW) == []


def without(vip, name: str):
    return dataclasses.replace(vip, backends=tuple(b for b in vip.backends if b.name != name))


def moved(vip, name: str):
    """``vip`` with backend ``name`` at another tunnel address (its rules are deleted)."""
    backends = tuple(
        dataclasses.replace(b, tunnel_ip="10.99.1.1") if b.name == name else b for b in vip.backends
    )
    return dataclasses.replace(vip, backends=backends)


def frame_flow(sport: int):
    return parse_frame(frame(sport=sport))


def test_a_switch_mode_pin_survives_a_reconnection_and_carries_its_flow():
    rig = GatewayRig(vips=(SWITCH_VIP,))
    ack, first = pin(rig, 40002)
    (learned,) = first.learned
    rig.connect(2.0)
    assert len(rig.table.rules_at(PRIORITY_SYN_SLOT) + rig.table.rules_at(PRIORITY_SLOT)) == 512
    again = rig.send(UPLINK, ack, 3.0)
    assert again.rule is learned and again.tunnel == first.tunnel and not again.learned


def test_a_pin_outlives_a_restart_even_where_its_slot_moved_meanwhile():
    """A restarted controller whose table gives the flow's slot to another VM (the pin's VM
    drained meanwhile): new flows of the slot go elsewhere, the pinned flow stays."""
    rig = GatewayRig(vips=(SWITCH_VIP,))
    ack, first = pin(rig, 40002)
    owner = next(b for b in BACKENDS if b.tunnel_ip == first.tunnel[0]).name
    drained = dataclasses.replace(
        SWITCH_VIP,
        backends=tuple(
            dataclasses.replace(b, weight=0) if b.name == owner else b for b in BACKENDS
        ),
    )
    restarted = GatewayRig(vips=(drained,), connect=False, saved_ids=saved(rig))
    restarted.table = rig.table  # the same switch, a new controller process
    restarted.connect(5.0)
    assert restarted.send(UPLINK, frame(sport=40002), 5.0).tunnel != first.tunnel  # slot moved
    assert restarted.send(UPLINK, ack, 5.1).tunnel == first.tunnel  # the pin holds


def test_a_tunnel_renumbered_while_away_takes_exactly_the_pins_to_its_old_number():
    rig = GatewayRig(vips=(SWITCH_VIP,))
    ack, _ = pin(rig, 40002)
    effects = rig.run(rig.core.on_connect(2.0))
    moved = {**PORTS, "vx0": 7}
    sent = deletes(rig.run(rig.core.on_ports(moved, 2.0)).messages)
    (stale,) = [d for d in sent if selects(d, flow_cookie(1))]
    assert stale.out_port == TUNNEL and not stale.match.items()  # only the old number
    assert effects.messages and rig.table.rules_at(PRIORITY_FLOW) == []
    renewed = rig.send(UPLINK, ack, 3.0)  # the slot rule learns it again, to the new port
    assert renewed.learned and renewed.outputs[-1] == 7


def test_a_restarted_controller_clears_flow_rules_naming_another_present_port():
    """It does not know the old numbers: every port but the pipeline's is cleared, as a
    tunnel port and as an uplink; rules naming the current ports stay."""
    rig = GatewayRig(vips=(SWITCH_VIP,))
    pin(rig, 40002)
    ours = pipeline.backend_actions(BACKENDS[0].mac, BACKENDS[0].tunnel_ip, 100, OTHER)
    # an earlier run's rules, when "other" was the tunnel, and when it was the uplink
    old_tunnel = pipeline.flow_rule(frame_flow(40100), VIP, 1, ours, UPLINK)
    old_uplink = pipeline.flow_rule(frame_flow(40200), VIP, 1, b"", OTHER)
    rig.table.apply([old_tunnel, old_uplink])
    restarted = GatewayRig(vips=(SWITCH_VIP,), connect=False, saved_ids=saved(rig))
    restarted.table = rig.table
    restarted.connect(5.0)
    kept = restarted.table.rules_at(PRIORITY_FLOW)
    assert len(kept) == 1 and kept[0].match["tcp_src"] == 40002


def test_a_flow_removed_for_a_flow_this_run_never_recorded_is_harmless():
    rig = GatewayRig()
    rig.send(UPLINK, frame(), 1.0)
    rule = rig.flow_rule(frame())
    restarted = GatewayRig(connect=False)
    restarted.table = rig.table
    restarted.connect(5.0)
    assert len(restarted.core.balancer.flows) == 0
    effects = restarted.core.on_messages([raw_flow_removed(rule)], 70.0)
    assert not effects and len(restarted.core.balancer.flows) == 0
