"""``health: {type: none}``: static backends, never probed and always counted healthy; their
weight still applies (0 drains)."""

from __future__ import annotations

import dataclasses

from ryu_app.core import pipeline
from ryu_app.core.flowkey import flow_from_fields
from ryu_app.core.model import HealthCheck
from tests.ryu_app.core.rig import BACKENDS, PROBED_VIP, UPLINK, GatewayRig, frame
from tests.ryu_app.core.test_gateway_probes import run_probes
from topology import deployment as deployment_file

STATIC = dataclasses.replace(PROBED_VIP, health=HealthCheck(type="none"))
ALL = {b.name for b in BACKENDS}


def test_the_deployment_file_accepts_type_none():
    data = {**deployment_file.vip_to_data(PROBED_VIP), "health": {"type": "none"}}
    vip = deployment_file.parse_vip(data)
    assert vip.health.type == "none" and not vip.probed and PROBED_VIP.probed


def test_static_backends_are_never_probed_and_stay_healthy():
    rig = GatewayRig(vips=(STATIC,))
    assert rig.core.prober.states == {} and rig.core.prober.targets == {}
    run_probes(rig, 0.0, 60.0)  # a minute of health ticks
    assert rig.core.prober.sent == 0 and rig.table.packet_outs == []
    assert rig.core.balancer.vips["web"].healthy == ALL


def test_a_static_vip_punts_no_probe_answers():
    rig = GatewayRig(vips=(STATIC,))
    assert len(rig.table.rules_at(pipeline.PRIORITY_VIP)) == 1
    assert rig.table.rules_at(pipeline.PRIORITY_LOCAL) == []  # nothing answers a probe


def test_turning_checks_off_brings_down_backends_back_and_removes_the_probe_punt():
    no_panic = dataclasses.replace(PROBED_VIP.health, panic_threshold=0)
    rig = GatewayRig(vips=(dataclasses.replace(PROBED_VIP, health=no_panic),))
    now = 1.0
    for backend in BACKENDS:
        rig.run(rig.core.set_health("web", backend.name, False, now))
    assert rig.core.balancer.vips["web"].healthy == set()
    assert rig.send(UPLINK, frame(), now).dropped  # no backend to place a flow on
    rig.run(rig.core.set_vip(STATIC, now))
    assert rig.core.balancer.vips["web"].healthy == ALL
    assert rig.table.rules_at(pipeline.PRIORITY_LOCAL) == []
    assert rig.core.prober.states == {}
    assert rig.send(UPLINK, frame(), now).outputs != []  # flows are placed
    # And on again: probing starts, from the balancer's view (all up).
    rig.run(rig.core.set_vip(PROBED_VIP, now))
    assert {state.state for state in rig.core.prober.states.values()} == {"up"}
    assert len(rig.core.prober.states) == len(BACKENDS)
    assert len(rig.table.rules_at(pipeline.PRIORITY_LOCAL)) == 1


def test_weight_zero_drains_a_static_backend():
    drained = dataclasses.replace(BACKENDS[1], weight=0)
    rig = GatewayRig(
        vips=(dataclasses.replace(STATIC, backends=(BACKENDS[0], drained, *BACKENDS[2:])),)
    )
    assert rig.core.balancer.vips["web"].healthy == ALL  # healthy, but owns no slot
    picks = {
        rig.core.balancer.predict(
            flow_from_fields("10.1.0.11", str(port), "10.0.0.100", "80", "tcp")
        )
        for port in range(40000, 40400)
    }
    assert picks == ALL - {drained.name}
