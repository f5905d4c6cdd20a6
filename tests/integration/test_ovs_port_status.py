"""Ports that change after the switch connected, on a real Open vSwitch: the controller follows
its tunnel port when it is deleted and added again under another number (issue 11)."""

from __future__ import annotations

import re

import pytest

from tests.integration import topo as topology
from tests.integration.netlab import wait_for

NEW_TUNNEL_NUMBER = 17
OURS = "cookie=0x4c53000000000000/0xffff000000000000"  # every rule a controller of ours made


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with topology.running(tmp_path_factory.mktemp("ports"), gateways=1, vms=2) as built:
        yield built


def our_rules(lab, gateway) -> list[str]:
    return [
        line
        for line in lab.ovs.ofctl("dump-flows", gateway.bridge, OURS).splitlines()
        if "cookie=" in line
    ]


def served_by(lab, source_port: int) -> str:
    return lab.http_get("/", source_port).strip().splitlines()[-1]  # the body: the VM's name


def test_a_tunnel_port_added_after_the_controller_connected_is_used(lab):
    gateway = lab.gateways[0]
    vms = {vm.name for vm in lab.vms}
    assert served_by(lab, 33000) in vms  # before: flows work
    lab.ovs.vsctl("del-port", gateway.bridge, gateway.tunnel)
    # The tunnel port is gone: the controller deletes its rules (they named it).
    wait_for(lambda: not our_rules(lab, gateway), 10, "the pipeline to be removed")
    lab.ovs.vsctl(
        "add-port",
        gateway.bridge,
        gateway.tunnel,
        "--",
        "set",
        "interface",
        gateway.tunnel,
        "type=vxlan",
        "options:remote_ip=flow",
        f"options:local_ip={gateway.tunnel_ip}",
        "options:key=flow",
        f"ofport_request={NEW_TUNNEL_NUMBER}",
    )
    lab.wait_pipeline(gateway)
    assert served_by(lab, 33001) in vms  # a new flow, through the new port
    rules = [line for line in our_rules(lab, gateway) if "priority=200" in line]
    assert rules and all(
        re.search(rf"output:(\"?{gateway.tunnel}\"?|{NEW_TUNNEL_NUMBER})\b", rule) for rule in rules
    ), rules
    assert lab.healthy(gateway) == vms  # probing came back through the new port too
    log = (lab.workdir / f"{gateway.name}.log").read_text()
    assert f"port {gateway.tunnel} ({NEW_TUNNEL_NUMBER}) added: pipeline installed" in log
    assert "pipeline removed, probing paused" in log
