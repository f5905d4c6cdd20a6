"""A port-bits VIP on a controller-mode gateway (issue 14, step 1): its new flows go where
the source port's slot says in the 2**k table, which is what a switch-mode gateway's slot
rules will send them to; the flow table still comes first."""

from __future__ import annotations

import dataclasses

from ryu_app.core import pipeline
from ryu_app.core.flowkey import TCP_ACK, parse_frame
from ryu_app.core.maglev import build_table
from ryu_app.core.model import PLACEMENT_PORT_BITS, Vip
from ryu_app.core.slots import changed_slots, port_slot
from tests.ryu_app.core.rig import BACKENDS, BY_TUNNEL, UPLINK, GatewayRig, frame

SLOTS = 256
BY_PORT = Vip(
    "web", "10.0.0.100", 80, placement=PLACEMENT_PORT_BITS, table_size=SLOTS, backends=BACKENDS
)


def expected_owners(backends) -> tuple:
    """The slot table computed apart from the gateway: by name and weight, as every gateway."""
    return build_table([(b.name, b.weight) for b in backends], SLOTS, PLACEMENT_PORT_BITS).owners()


def placed(rig, sport, src="10.1.0.11", now=1.0) -> str:
    """The backend a new connection from ``sport`` is sent to (through the controller)."""
    forwarding = rig.send(UPLINK, frame(src=src, sport=sport), now)
    assert forwarding.rule is None and forwarding.tunnel is not None
    return BY_TUNNEL[forwarding.tunnel[0]]


def test_new_flows_go_to_their_source_ports_slot_owner_whatever_the_client():
    rig = GatewayRig(vips=(BY_PORT,))
    owners = expected_owners(BACKENDS)
    assert set(owners) == {b.name for b in BACKENDS}
    for index, sport in enumerate(range(32768, 32768 + 2 * 300, 2)):
        src = f"10.1.{index % 7}.{11 + index % 50}"
        assert placed(rig, sport, src) == owners[port_slot(sport, SLOTS)], sport


def test_the_balancers_prediction_is_the_slot_owner():
    rig = GatewayRig(vips=(BY_PORT,))
    owners = expected_owners(BACKENDS)
    for sport in range(1024, 65536, 997):
        flow = parse_frame(frame(sport=sport))
        assert rig.core.balancer.predict(flow) == owners[port_slot(sport, SLOTS)]


def test_the_flow_table_comes_first_a_drained_backend_keeps_its_flow():
    rig = GatewayRig(vips=(BY_PORT,))
    sport = 40000
    name = placed(rig, sport)
    drained = tuple(dataclasses.replace(b, weight=0) if b.name == name else b for b in BACKENDS)
    rig.run(rig.core.set_vips([dataclasses.replace(BY_PORT, backends=drained)], 2.0))
    rig.build()
    # The established flow still follows its rule to its backend.
    then = rig.send(UPLINK, frame(sport=sport, flags=TCP_ACK), 2.1)
    assert then.rule.priority == pipeline.PRIORITY_FLOW and BY_TUNNEL[then.tunnel[0]] == name
    # A new connection in the same slot, from another client, goes to the slot's new owner.
    owners = expected_owners(drained)
    assert owners[port_slot(sport, SLOTS)] != name
    assert placed(rig, sport, src="10.1.0.99", now=2.2) == owners[port_slot(sport, SLOTS)]


def test_a_backend_going_down_moves_only_its_slots():
    rig = GatewayRig(vips=(BY_PORT,))
    before = rig.core.balancer.vips["web"].table.owners()
    rig.run(rig.core.set_health("web", "vm2", False, 1.0))
    rig.build()
    after = rig.core.balancer.vips["web"].table.owners()
    assert after == expected_owners([b for b in BACKENDS if b.name != "vm2"])
    own = {slot for slot, name in enumerate(before) if name == "vm2"}
    moved = set(changed_slots(before, after))
    assert own <= moved and len(moved) <= len(own) * 1.2
    for sport in range(1024, 65536, 331):  # flows of unmoved slots keep their backend
        if port_slot(sport, SLOTS) not in moved:
            flow = parse_frame(frame(src="10.1.0.77", sport=sport))
            assert rig.core.balancer.predict(flow) == before[port_slot(sport, SLOTS)]
