"""``health: {type: none}``: static backends, never probed and always counted healthy; their
weight still applies (0 drains)."""

from __future__ import annotations

import dataclasses

from ryu_app.compat import ofproto_v1_3 as ofp
from ryu_app.core import pipeline
from ryu_app.core.balancer import probed
from ryu_app.core.flowkey import flow_from_fields
from tests.ryu_app.core.test_gateway import (
    BACKENDS,
    PROBED_VIP,
    UPLINK,
    frame,
    packet_in,
    probed_core,
    run_probes,
)
from tests.ryu_app.wire import decode_all
from topology import deployment as deployment_file
from topology.deployment import HealthCheck

STATIC = dataclasses.replace(PROBED_VIP, health=HealthCheck(type="none"))
ALL = {b.name for b in BACKENDS}


def priorities(messages, command=ofp.OFPFC_ADD):
    return sorted(
        m.priority for m in decode_all(messages) if getattr(m, "command", None) == command
    )


def test_the_deployment_file_accepts_type_none():
    data = {**deployment_file.vip_to_data(PROBED_VIP), "health": {"type": "none"}}
    vip = deployment_file.parse_vip(data)
    assert vip.health.type == "none" and not probed(vip) and probed(PROBED_VIP)


def test_static_backends_are_never_probed_and_stay_healthy():
    core = probed_core(vips=(STATIC,))
    assert core.prober.states == {} and core.prober.targets == {}
    run_probes(core, 0.0, 60.0)  # a minute of health ticks
    assert core.prober.sent == 0
    assert core.balancer.vips["web"].healthy == ALL


def test_a_static_vip_punts_no_probe_answers():
    core = probed_core(vips=(STATIC,), connect=False)
    core.on_connect(0.0)
    installed = core.on_ports({"up0": 1, "vx0": 2}, 0.0)
    assert pipeline.PRIORITY_VIP in priorities(installed)
    assert pipeline.PRIORITY_LOCAL not in priorities(installed)  # nothing answers a probe


def test_turning_checks_off_brings_down_backends_back_and_removes_the_probe_punt():
    core = probed_core()
    now = run_probes(core, 0.0, 10 * PROBED_VIP.health.interval)  # nothing answers: all down
    assert core.balancer.vips["web"].healthy == set()
    messages = core.set_vip(STATIC, now)
    assert core.balancer.vips["web"].healthy == ALL
    assert pipeline.PRIORITY_LOCAL in priorities(messages, ofp.OFPFC_DELETE_STRICT)
    assert core.prober.states == {}
    core.balancer.rebuild_now(messages.tables)
    rule, _ = packet_in(core, UPLINK, ofp.OFP_NO_BUFFER, frame(), now)  # flows are placed
    assert rule.priority == pipeline.PRIORITY_FLOW
    # And on again: probing starts, from the balancer's view (all up).
    core.set_vip(PROBED_VIP, now)
    assert {state.state for state in core.prober.states.values()} == {"up"}
    assert len(core.prober.states) == len(BACKENDS)


def test_weight_zero_drains_a_static_backend():
    drained = dataclasses.replace(BACKENDS[1], weight=0)
    core = probed_core(
        vips=(dataclasses.replace(STATIC, backends=(BACKENDS[0], drained, *BACKENDS[2:])),)
    )
    assert core.balancer.vips["web"].healthy == ALL  # healthy, but owns no slot
    picks = {
        core.balancer.predict(flow_from_fields("10.1.0.11", str(port), "10.0.0.100", "80", "tcp"))
        for port in range(40000, 40400)
    }
    assert picks == ALL - {drained.name}
