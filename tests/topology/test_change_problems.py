"""``change_problems``: what a REST write checks.  The same problems as ``deployment_problems``
on the would-be deployment, for any change of VIPs, without walking the underlay's graph for
the VMs the deployment already had."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ryu_app.core.model import Backend, Vip
from topology import deployment as dep
from topology import graph

EXAMPLE = dep.load(Path(__file__).resolve().parents[2] / "topology" / "examples" / "default.yaml")
WEB = EXAMPLE.vip("web")
VM5 = Backend("vm5", "192.168.100.15", "02:00:00:00:01:05")


def with_vips(*vips: Vip):
    return dataclasses.replace(EXAMPLE, vips=vips)


def with_backends(*backends: Backend) -> Vip:
    return dataclasses.replace(WEB, backends=backends)


CHANGES = {
    "weight": with_vips(
        with_backends(*WEB.backends[:3], dataclasses.replace(WEB.backends[3], weight=0))
    ),
    "a VIP of the same VMs": with_vips(WEB, dataclasses.replace(WEB, name="api", port=443)),
    "a new VM": with_vips(with_backends(*WEB.backends, VM5)),
    "a new VM off the underlay": with_vips(
        with_backends(*WEB.backends, dataclasses.replace(VM5, tunnel_ip="192.168.200.15"))
    ),
    "a VM moved off the underlay": with_vips(
        with_backends(
            dataclasses.replace(WEB.backends[0], tunnel_ip="172.16.0.1"), *WEB.backends[1:]
        )
    ),
    "a VIP removed": with_vips(),
    "the same service twice": with_vips(WEB, dataclasses.replace(WEB, name="web2")),
    "a VM named like a gateway": with_vips(
        with_backends(*WEB.backends, dataclasses.replace(VM5, name="gw1"))
    ),
    "a VM described two ways": with_vips(
        WEB,
        dataclasses.replace(
            WEB,
            name="api",
            port=443,
            backends=(dataclasses.replace(WEB.backends[0], mac="02:00:00:00:09:09"),),
        ),
    ),
    "an IPv6 VIP without IPv6 gateways": with_vips(
        WEB, dataclasses.replace(WEB, name="six", address="fd00::80")
    ),
}


@pytest.mark.parametrize("name", CHANGES)
def test_a_change_of_vips_has_the_problems_of_the_whole_check(name):
    candidate = CHANGES[name]
    assert dep.change_problems(EXAMPLE, candidate) == dep.deployment_problems(candidate)


def test_the_changes_above_include_problems_of_every_kind():
    found = {name: dep.deployment_problems(candidate) for name, candidate in CHANGES.items()}
    assert not found["weight"] and not found["a new VM"] and not found["a VIP removed"]
    assert "cannot be reached" in found["a new VM off the underlay"][0].reason
    assert "cannot be reached" in found["a VM moved off the underlay"][0].reason
    assert all(found[name] for name in list(CHANGES)[6:])  # from "the same service twice" on


def test_only_new_tunnel_ips_are_looked_up_in_the_graph(monkeypatch):
    built = []
    build_graph = graph.build_graph
    monkeypatch.setattr(graph, "build_graph", lambda d: built.append(d) or build_graph(d))
    for name in ("weight", "a VIP of the same VMs", "a VIP removed", "the same service twice"):
        dep.change_problems(EXAMPLE, CHANGES[name])
    assert built == []
    dep.change_problems(EXAMPLE, CHANGES["a new VM"])
    assert len(built) == 1


def test_a_change_of_anything_but_vips_is_checked_in_full(monkeypatch):
    """The shortcut holds only while the gateways and the underlay are those already checked."""
    gw1 = dataclasses.replace(EXAMPLE.gateways[0], tunnel_ip="192.168.200.1")
    moved = dataclasses.replace(EXAMPLE, gateways=(gw1, *EXAMPLE.gateways[1:]))
    problems = dep.change_problems(EXAMPLE, moved)
    assert problems == dep.deployment_problems(moved)
    assert [p.path for p in problems] == [
        "gateways[0].tunnel_ip",
        *(f"vips[0].backends[{index}].tunnel_ip" for index in range(4)),
    ]
