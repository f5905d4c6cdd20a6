"""GatewayCore's VIP changes, seen in a fake flow table: a new VIP is punted, a replaced one
keeps the flows of the backends that stay, a moved one stops being punted where it was, a
removed one leaves nothing behind."""

import pytest

from ryu_app.core import pipeline
from ryu_app.core.flowkey import TCP_ACK
from ryu_app.core.model import Backend, Vip
from tests.ryu_app.core.rig import (
    BACKENDS,
    BY_TUNNEL,
    PROBED_VIP,
    SMALL_TABLE,
    TUNNEL,
    UPLINK,
    GatewayRig,
    frame,
)
from tests.ryu_app.fake_oftable import packet_fields, run_actions

API = Vip("api", "10.0.0.101", 443, table_size=SMALL_TABLE, backends=BACKENDS)


def punted(rig, data) -> bool:
    return rig.table.forward(packet_fields(UPLINK, data)).to_controller


def flow_backends(rig) -> set[str]:
    """The backends the switch's per-flow rules send to."""
    rules = rig.table.rules_at(pipeline.PRIORITY_FLOW)
    return {BY_TUNNEL.get(run_actions(r.actions, {}).tunnel[0], "?") for r in rules}


def test_a_new_vip_is_punted_and_logged():
    rig = GatewayRig(vips=(PROBED_VIP,))
    assert not punted(rig, frame(dst="10.0.0.101", dport=443))
    effects = rig.run(rig.core.set_vip(API, 1.0))
    assert punted(rig, frame(dst="10.0.0.101", dport=443))
    assert rig.send(UPLINK, frame(dst="10.0.0.101", dport=443), 1.1).outputs == [TUNNEL]
    assert effects.notices == ["VIP api added: tcp 10.0.0.101 port 443, 3 backend(s)"]
    assert len(effects.messages) == 2  # its punt and the return of its probes' answers


def test_replacing_a_vip_deletes_only_the_flows_of_backends_that_went():
    rig = GatewayRig(vips=(PROBED_VIP,))
    ports = range(40000, 40030)
    before = [BY_TUNNEL[rig.send(UPLINK, frame(sport=port), 1.0).tunnel[0]] for port in ports]
    assert set(before) == {"vm1", "vm2", "vm3"}
    moved = Backend("vm2", "10.99.0.99", "02:00:00:00:01:02")  # same name, new tunnel
    replaced = Vip("web", "10.0.0.100", 80, table_size=SMALL_TABLE, backends=(BACKENDS[0], moved))
    rig.run(rig.core.set_vip(replaced, 2.0))
    assert flow_backends(rig) == {"vm1"}  # vm1 stayed: its rules stay
    assert punted(rig, frame(sport=50000))  # and the VIP is punted as before
    for port, backend in zip(ports, before, strict=True):
        now_at = rig.send(UPLINK, frame(sport=port, flags=TCP_ACK), 5.0).tunnel[0]
        if backend == "vm1":
            assert now_at == "10.99.0.11"  # its connections stay with it
        else:
            assert now_at in ("10.99.0.11", "10.99.0.99")  # never the old vm2 or vm3


def test_moving_a_vip_to_another_port_moves_its_punt():
    rig = GatewayRig(vips=(PROBED_VIP,))
    rig.send(UPLINK, frame(), 0.5)
    rig.run(
        rig.core.set_vip(
            Vip("web", "10.0.0.100", 8080, table_size=SMALL_TABLE, backends=BACKENDS), 1.0
        )
    )
    assert rig.table.forward(packet_fields(UPLINK, frame(sport=41000))).dropped
    assert punted(rig, frame(dport=8080))
    assert flow_backends(rig)  # the backends stayed: so did their flows


def test_the_same_service_replaced_keeps_its_punt():
    rig = GatewayRig(vips=(PROBED_VIP,))
    longer = Vip(
        "web", "10.0.0.100", 80, idle_timeout=30, table_size=SMALL_TABLE, backends=BACKENDS
    )
    effects = rig.run(rig.core.set_vip(longer, 1.0))
    assert len(rig.table.rules_at(pipeline.PRIORITY_VIP)) == 1 and punted(rig, frame())
    assert effects.notices == ["VIP web replaced: tcp 10.0.0.100 port 80, 3 backend(s)"]
    rig.send(UPLINK, frame(), 1.5)
    assert rig.flow_rule(frame()).idle_timeout == 30  # new flows follow the new settings


def test_removing_a_vip_removes_its_punt_and_every_backends_flows():
    rig = GatewayRig(vips=(PROBED_VIP,))
    rig.send(UPLINK, frame(), 0.5)
    rig.run(rig.core.remove_vip("web", 1.0))
    for priority in (pipeline.PRIORITY_VIP, pipeline.PRIORITY_LOCAL, pipeline.PRIORITY_FLOW):
        assert rig.table.rules_at(priority) == []
    assert rig.send(UPLINK, frame(), 2.0).dropped
    assert rig.packet_in(UPLINK, frame(), 2.0) == []  # not a VIP now
    assert rig.core.prober.states == {} and rig.notices[-1] == "VIP web removed"
    with pytest.raises(KeyError):
        rig.core.remove_vip("web", 2.0)


def test_vip_changes_before_the_switch_is_known_send_nothing_but_apply():
    rig = GatewayRig(vips=(PROBED_VIP,), connect=False)
    assert rig.core.set_vip(API, 1.0).messages == []
    assert rig.core.remove_vip("web", 1.0).messages == []
    assert set(rig.core.balancer.vips) == {"api"}
    rig.connect(2.0)
    assert punted(rig, frame(dst="10.0.0.101", dport=443)) and not punted(rig, frame())
