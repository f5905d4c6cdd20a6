"""mininet/lockstep_topo.py's LockstepTopo, built without starting Mininet (building a Topo is
pure: it only records nodes, links and their parameters), against topology.emulation's plan.

The node classes' constructors are exercised for GatewaySwitch and Bridge only: a Mininet node
starts a shell (mnexec, no namespace for a switch) and needs no Open vSwitch until start();
OVSSwitch.setup (which exits when no ovsdb-server answers) is bypassed for those tests.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from pathlib import Path

import lockstep_topo  # mininet/ is on sys.path (conftest.py)
import pytest
from lockstep_topo import Bridge, GatewaySwitch, LockstepTopo, PlannedHost, topos
from mininet.node import OVSSwitch

from topology import deployment as dep
from topology import emulation as em
from topology.network import Deployment

EXAMPLE = Path(__file__).resolve().parents[2] / "topology" / "examples" / "default.yaml"


@pytest.fixture(scope="module")
def example() -> Deployment:
    return dep.load(EXAMPLE)


@pytest.fixture(scope="module")
def scaled(example) -> Deployment:
    return em.scale(example, gateways=3, vms=5)


@pytest.fixture(scope="module")
def expected_plan(scaled) -> em.Plan:
    return em.plan(scaled)


@pytest.fixture
def topo(tmp_path) -> LockstepTopo:
    return LockstepTopo(config=EXAMPLE, gateways=3, vms=5, log_dir=tmp_path)


def params(topo: LockstepTopo, node: str) -> dict:
    """What Mininet passes to the node's class (it takes ``cls`` out first)."""
    info = dict(topo.nodeInfo(node))
    info.pop("isSwitch", None)
    return info


def planned_interfaces(plan: em.Plan, node: str) -> list[em.Interface]:
    result = []
    for link in plan.links:
        if link.node1 == node:
            result.append(link.intf1)
        if link.node2 == node:
            result.append(link.intf2)
    return result


# ---- the topology --------------------------------------------------------------------------------


def test_registered_for_mn_custom():
    assert topos["lockstep"] is LockstepTopo


def test_nodes(topo):
    assert set(topo.switches()) == {"clan", "ul", "gw1", "gw2", "gw3"}
    assert set(topo.hosts()) == {"r1", "c1", "c2", "vm1", "vm2", "vm3", "vm4", "vm5"}


def test_gateway_switches(topo, scaled, tmp_path):
    for gateway in scaled.gateways:
        assert params(topo, gateway.name) == {
            "cls": GatewaySwitch,
            "gateway": gateway,
            "config": tmp_path / "deployment.yaml",
            "log_dir": tmp_path,
            "vip_mode": "controller",
        }


# ---- who places new flows (the demo's --mode) ----------------------------------------------------


def test_gateway_modes_alternate_in_mixed_from_a_controller_gateway():
    names = ["gw1", "gw2", "gw3", "gw4"]
    assert lockstep_topo.gateway_modes(names, "mixed") == {
        "gw1": "controller", "gw2": "switch", "gw3": "controller", "gw4": "switch",
    }  # fmt: skip
    assert set(lockstep_topo.gateway_modes(names, "switch").values()) == {"switch"}
    assert set(lockstep_topo.gateway_modes(names, "controller").values()) == {"controller"}
    with pytest.raises(ValueError, match="mode must be one of"):
        lockstep_topo.gateway_modes(names, "hybrid")


def test_controller_mode_keeps_the_deployment_file_as_it_is(topo, scaled, tmp_path):
    assert dep.load(tmp_path / "deployment.yaml") == scaled
    assert not (tmp_path / "deployment-switch.yaml").exists()


def test_switch_mode_places_every_vip_by_port_bits_in_switch_mode_everywhere(tmp_path, scaled):
    topo = LockstepTopo(config=EXAMPLE, gateways=3, vms=5, log_dir=tmp_path, mode="switch")
    written = dep.load(tmp_path / "deployment.yaml")
    for vip in written.vips:
        assert (vip.placement, vip.mode) == ("port-bits", "switch")
        assert vip.table_size == 256  # derived from 5 backends: 2**clamp(3 + 5, 8, 12)
    assert written.gateways == scaled.gateways
    for gateway in scaled.gateways:
        assert params(topo, gateway.name)["config"] == tmp_path / "deployment.yaml"
        assert params(topo, gateway.name)["vip_mode"] == "switch"
    assert topo.plan.deployment.vips == written.vips


def test_mixed_mode_shares_the_placement_and_differs_only_in_mode(tmp_path):
    topo = LockstepTopo(config=EXAMPLE, gateways=3, vms=5, log_dir=tmp_path, mode="mixed")
    fleet = dep.load(tmp_path / "deployment.yaml")
    switch = dep.load(tmp_path / "deployment-switch.yaml")
    assert {v.mode for v in fleet.vips} == {"controller"}
    assert {v.mode for v in switch.vips} == {"switch"}
    assert [replace(v, mode="controller") for v in switch.vips] == list(fleet.vips)
    assert {v.placement for v in fleet.vips} == {"port-bits"}
    configs = {g: params(topo, g)["config"].name for g in ("gw1", "gw2", "gw3")}
    assert configs == {
        "gw1": "deployment.yaml", "gw2": "deployment-switch.yaml", "gw3": "deployment.yaml",
    }  # fmt: skip
    assert topo.gateway_modes == {"gw1": "controller", "gw2": "switch", "gw3": "controller"}


def test_bridges(topo, expected_plan):
    underlay = params(topo, "ul")
    assert underlay == {
        "cls": Bridge,
        "addresses": expected_plan.underlay_addresses,
        "neighbours": expected_plan.tunnel_neighbours,
        "mtu": 1600,
        "dpid": underlay["dpid"],
    }
    assert underlay["addresses"] == ["192.168.100.1/24", "192.168.100.2/24", "192.168.100.3/24"]
    assert len(underlay["neighbours"]) == 5
    client_lan = params(topo, "clan")
    assert client_lan == {"cls": Bridge, "dpid": client_lan["dpid"]}


def test_every_switch_has_its_own_16_digit_dpid(topo, scaled):
    dpids = [params(topo, name)["dpid"] for name in ("ul", "clan")]
    dpids += [f"{g.dpid:016x}" for g in scaled.gateways]  # what GatewaySwitch passes on
    assert all(len(d) == 16 and int(d, 16) > 0 for d in dpids)
    assert len(set(dpids)) == len(dpids)


def test_hosts_carry_their_plan_and_interfaces(topo, expected_plan, tmp_path):
    for name, planned in expected_plan.hosts.items():
        assert params(topo, name) == {
            "cls": PlannedHost,
            "planned": planned,
            "interfaces": planned_interfaces(expected_plan, name),
            "log_dir": tmp_path,
            "ip": None,  # addresses come from the plan, not from Mininet's 10.0.0.0/8
        }
    vm5 = params(topo, "vm5")
    assert [i.name for i in vm5["interfaces"]] == ["vm5-eth0"]
    assert vm5["interfaces"][0].addresses == ("192.168.100.15/24",)
    assert vm5["planned"].role == "vm"


def test_links_are_the_plans_with_names_and_macs(topo, expected_plan):
    got = sorted(
        (
            n1,
            n2,
            info["intfName1"],
            info["intfName2"],
            info.get("addr1"),
            info.get("addr2"),
        )
        for n1, n2, info in topo.links(withInfo=True)
    )
    want = sorted(
        (
            link.node1,
            link.node2,
            link.intf1.name,
            link.intf2.name,
            link.intf1.mac,
            link.intf2.mac,
        )
        for link in expected_plan.links
    )
    assert got == want
    # Only what the plan sets: no MAC is invented, no other option added.
    allowed = {"intfName1", "intfName2", "addr1", "addr2", "node1", "node2", "port1", "port2"}
    for _n1, _n2, info in topo.links(withInfo=True):
        assert set(info) <= allowed
    macs = {info["intfName1"]: info.get("addr1") for _, _, info in topo.links(withInfo=True)}
    assert macs["vm5-eth0"] == expected_plan.vm_macs["vm5"]
    assert macs["gw3-eth0"] is None


def test_gateway_uplink_is_its_first_port(topo, scaled):
    for gateway in scaled.gateways:
        info = topo.linkInfo(gateway.name, "r1")
        assert (info["node1"], info["intfName1"]) == (gateway.name, gateway.uplink_port)
        assert info["port1"] == 1  # OpenFlow port 1
    for vm in ("vm1", "vm5"):
        info = topo.linkInfo(vm, "ul")
        assert (info["intfName1"], info["port1"]) == (f"{vm}-eth0", 0)


def test_writes_the_scaled_deployment_it_plans(topo, scaled, expected_plan, tmp_path):
    written = tmp_path / "deployment.yaml"
    assert topo.config_path == written
    assert topo.log_dir == tmp_path
    assert dep.load(written) == scaled
    assert topo.plan == expected_plan


def test_counts_are_passed_to_scale(tmp_path, example):
    topo = LockstepTopo(config=EXAMPLE, clients=3, gateways=1, vms=2, log_dir=tmp_path)
    assert set(topo.switches()) == {"clan", "ul", "gw1"}
    assert set(topo.hosts()) == {"r1", "c1", "c2", "c3", "vm1", "vm2"}
    assert topo.plan.deployment == em.scale(example, clients=3, gateways=1, vms=2)


def test_log_dir_is_created(tmp_path, example):
    log_dir = tmp_path / "a" / "b"
    LockstepTopo(config=EXAMPLE, log_dir=log_dir)
    assert dep.load(log_dir / "deployment.yaml") == example


def test_without_log_dir_uses_a_fresh_temporary_one(tmp_path, monkeypatch, example):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    topo = LockstepTopo(config=EXAMPLE)
    assert topo.log_dir.parent == tmp_path
    assert topo.log_dir.name.startswith("lockstep-")
    assert dep.load(topo.log_dir / "deployment.yaml") == example


def test_lockstep_config_is_used_without_config(tmp_path, monkeypatch, example):
    other = em.scale(example, clients=1, gateways=1, vms=1)
    path = tmp_path / "other.yaml"
    path.write_text(dep.dump(other))
    monkeypatch.setenv("LOCKSTEP_CONFIG", str(path))
    topo = LockstepTopo(log_dir=tmp_path / "logs")
    assert topo.plan.deployment == other
    assert set(topo.hosts()) == {"r1", "c1", "vm1"}


def test_config_wins_over_lockstep_config(tmp_path, monkeypatch, example):
    monkeypatch.setenv("LOCKSTEP_CONFIG", str(tmp_path / "missing.yaml"))
    topo = LockstepTopo(config=EXAMPLE, log_dir=tmp_path)
    assert topo.plan.deployment == example


def test_shipped_example_without_config_or_lockstep_config(tmp_path, monkeypatch, example):
    monkeypatch.delenv("LOCKSTEP_CONFIG", raising=False)
    assert lockstep_topo.DEFAULT_CONFIG == EXAMPLE
    topo = LockstepTopo(log_dir=tmp_path)
    assert topo.plan.deployment == example


# ---- node classes (a shell each, no Open vSwitch) ------------------------------------------------


@pytest.fixture
def without_ovs(monkeypatch):
    """Skip OVSSwitch.setup (it calls exit(1) when no ovsdb-server answers): bridgeOpts only
    needs the version, and start() is never called."""
    monkeypatch.setattr(OVSSwitch, "isSetup", True)
    monkeypatch.setattr(OVSSwitch, "OVSVersion", "2.17.0", raising=False)
    for cls in (GatewaySwitch, Bridge):
        monkeypatch.setattr(cls, "isSetup", True)


# Mininet's OVSSwitch.isOldOVS compares versions with distutils.
IGNORE_DISTUTILS = pytest.mark.filterwarnings("ignore:distutils Version classes:DeprecationWarning")


def build_node(topo: LockstepTopo, name: str):
    """The node as Mininet.buildFromTopo would construct it; the caller terminates it."""
    info = dict(topo.nodeInfo(name))
    cls = info.pop("cls")
    return cls(name, **info)


def assert_gone(pid: int) -> None:
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@IGNORE_DISTUTILS
def test_gateway_switch_bridge_options_add_its_vxlan_port(topo, scaled, tmp_path, without_ovs):
    switch = build_node(topo, "gw3")
    pid = switch.pid
    try:
        assert switch.gateway == scaled.gateway("gw3")
        assert switch.config_path == str(tmp_path / "deployment.yaml")
        assert switch.log_dir == tmp_path
        assert switch.dpid == "0000000000000003"
        assert (switch.failMode, switch.datapath, switch.protocols) == (
            "secure",
            "user",
            "OpenFlow13",
        )
        assert switch.batch is False
        assert switch.controller is None  # started by start(), not by the constructor
        options = switch.bridgeOpts()
        assert options.endswith(
            " -- add-port gw3 gw3-vxlan -- set interface gw3-vxlan type=vxlan"
            " options:remote_ip=flow options:local_ip=192.168.100.3 options:key=flow"
        )
        for option in (
            "other_config:datapath-id=0000000000000003",
            "fail_mode=secure",
            "datapath_type=netdev",
            "protocols=OpenFlow13",
        ):
            assert option in options.split(" -- ")[0].split()
    finally:
        switch.terminate()  # no controller: kills the shell only
    assert switch.shell is None
    assert_gone(pid)


@IGNORE_DISTUTILS
def test_underlay_bridge_keeps_its_addresses_and_neighbours(topo, expected_plan, without_ovs):
    bridge = build_node(topo, "ul")
    pid = bridge.pid
    try:
        assert bridge.addresses == expected_plan.underlay_addresses
        assert bridge.neighbours == expected_plan.tunnel_neighbours
        assert bridge.mtu == 1600
        assert (bridge.datapath, bridge.failMode, bridge.batch) == ("user", "standalone", False)
        assert "datapath_type=netdev" in bridge.bridgeOpts()
    finally:
        bridge.terminate()
    assert_gone(pid)
