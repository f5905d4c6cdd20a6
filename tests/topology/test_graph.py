"""The deployment as a graph: nodes, kinds, edges, the tunnel subgraph and reachability."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import networkx as nx
import pytest

from topology import deployment as dep
from topology.graph import (
    CLIENT_NET,
    UNDERLAY_NET,
    UPLINK_NET,
    build_graph,
    reachability_problems,
    tunnel_graph,
)
from topology.network import Deployment

EXAMPLE = Path(__file__).resolve().parents[2] / "topology" / "examples" / "default.yaml"
VMS = ["vm1", "vm2", "vm3", "vm4"]


@pytest.fixture(scope="module")
def deployment() -> Deployment:
    return dep.load(EXAMPLE)


@pytest.fixture(scope="module")
def graph(deployment) -> nx.Graph:
    return build_graph(deployment)


def edge_set(graph: nx.Graph) -> set[frozenset[str]]:
    return {frozenset(edge) for edge in graph.edges}


def with_backend(deployment: Deployment, index: int, **changes) -> Deployment:
    """The deployment with backend ``index`` of its first VIP changed."""
    vip = deployment.vips[0]
    backends = list(vip.backends)
    backends[index] = dataclasses.replace(backends[index], **changes)
    new_vip = dataclasses.replace(vip, backends=tuple(backends))
    return dataclasses.replace(deployment, vips=(new_vip, *deployment.vips[1:]))


def test_node_kinds(graph):
    kinds = dict(graph.nodes(data="kind"))
    assert kinds == {
        CLIENT_NET: "network",
        UPLINK_NET: "network",
        UNDERLAY_NET: "network",
        "r1": "router",
        "c1": "client",
        "c2": "client",
        "gw1": "gateway",
        "gw2": "gateway",
        "vip:web": "vip",
        "vm1": "vm",
        "vm2": "vm",
        "vm3": "vm",
        "vm4": "vm",
    }


def test_edges(graph):
    expected = {
        frozenset({"c1", CLIENT_NET}),
        frozenset({"c2", CLIENT_NET}),
        frozenset({"r1", CLIENT_NET}),
        frozenset({"r1", UPLINK_NET}),
        frozenset({"r1", UNDERLAY_NET}),
        frozenset({"gw1", UPLINK_NET}),
        frozenset({"gw1", UNDERLAY_NET}),
        frozenset({"gw2", UPLINK_NET}),
        frozenset({"gw2", UNDERLAY_NET}),
    } | {frozenset({vm, UNDERLAY_NET}) for vm in VMS}
    assert edge_set(graph) == expected


def test_router_is_on_all_three_networks(graph):
    assert set(graph.neighbors("r1")) == {CLIENT_NET, UPLINK_NET, UNDERLAY_NET}


def test_clients_only_on_the_client_network(graph):
    assert set(graph.neighbors(CLIENT_NET)) == {"c1", "c2", "r1"}


def test_gateways_on_uplink_and_underlay(graph):
    for gateway in ("gw1", "gw2"):
        assert set(graph.neighbors(gateway)) == {UPLINK_NET, UNDERLAY_NET}
    assert set(graph.neighbors(UPLINK_NET)) == {"r1", "gw1", "gw2"}


def test_vms_only_on_the_underlay(graph):
    for vm in VMS:
        assert set(graph.neighbors(vm)) == {UNDERLAY_NET}
    assert set(graph.neighbors(UNDERLAY_NET)) == {"r1", "gw1", "gw2", *VMS}


def test_vip_node_is_not_attached(graph, deployment):
    assert graph.degree("vip:web") == 0
    assert graph.nodes["vip:web"]["vip"] is deployment.vips[0]


def test_node_attributes(graph, deployment):
    assert graph.nodes[CLIENT_NET]["subnet"] == "10.1.0.0/24"
    assert graph.nodes[UPLINK_NET]["subnet"] == "10.0.1.0/24"
    assert graph.nodes[UNDERLAY_NET]["subnet"] == "192.168.100.0/24"
    assert graph.nodes[UNDERLAY_NET]["mtu"] == 1600
    assert graph.nodes["r1"]["address"] == "192.168.100.254"
    assert graph.nodes["c2"]["address"] == "10.1.0.12"
    assert graph.nodes["gw2"]["gateway"] == deployment.gateway("gw2")
    assert graph.nodes["vm3"]["backend"] == deployment.vips[0].backend("vm3")


def test_vm_node_records_the_vips_it_serves(graph):
    for vm in VMS:
        assert graph.nodes[vm]["vips"] == ["web"]


def test_vm_shared_by_two_vips_is_one_node_listing_both(deployment):
    web = deployment.vips[0]
    api = dataclasses.replace(web, name="api", port=8080, backends=web.backends[1:3])
    graph = build_graph(dataclasses.replace(deployment, vips=(web, api)))
    assert graph.nodes["vm1"]["vips"] == ["web"]
    assert graph.nodes["vm2"]["vips"] == ["web", "api"]
    assert graph.nodes["vm3"]["vips"] == ["web", "api"]
    assert graph.nodes["vm4"]["vips"] == ["web"]
    assert [n for n, kind in graph.nodes(data="kind") if kind == "vm"] == VMS
    # Building does not mutate anything shared between builds.
    assert build_graph(deployment).nodes["vm2"]["vips"] == ["web"]


def test_tunnel_graph_holds_only_gateways_vms_and_the_underlay(graph):
    tunnels = tunnel_graph(graph)
    assert set(tunnels.nodes) == {"gw1", "gw2", *VMS, UNDERLAY_NET}
    assert edge_set(tunnels) == {frozenset({n, UNDERLAY_NET}) for n in ("gw1", "gw2", *VMS)}
    for gateway in ("gw1", "gw2"):
        for vm in VMS:
            assert nx.has_path(tunnels, gateway, vm)


def test_tunnel_graph_without_an_underlay(deployment):
    graph = build_graph(dataclasses.replace(deployment, underlay=None))
    tunnels = tunnel_graph(graph)
    assert set(tunnels.nodes) == {"gw1", "gw2", *VMS}
    assert tunnels.number_of_edges() == 0


def test_graph_without_router_or_underlay(deployment):
    bare = dataclasses.replace(deployment, router=None, underlay=None, clients=())
    graph = build_graph(bare)
    assert set(graph.nodes) == {"gw1", "gw2", "vip:web", *VMS}
    assert graph.number_of_edges() == 0


def test_router_outside_the_underlay_is_not_attached_to_it(deployment):
    router = dataclasses.replace(deployment.router, address="10.9.9.9")
    graph = build_graph(dataclasses.replace(deployment, router=router))
    assert set(graph.neighbors("r1")) == {CLIENT_NET, UPLINK_NET}


def test_no_reachability_problems_in_the_example(deployment):
    assert reachability_problems(deployment) == []


def test_vm_moved_out_of_the_underlay_is_unreachable(deployment):
    moved = with_backend(deployment, 2, tunnel_ip="172.16.0.13")
    graph = build_graph(moved)
    assert set(graph.neighbors("vm3")) == set()
    problems = reachability_problems(moved)
    assert [(p.path, p.reason) for p in problems] == [
        (
            "vips[0].backends[2].tunnel_ip",
            "VM vm3 (172.16.0.13) cannot be reached from gateway(s) gw1, gw2 "
            "over the underlay 192.168.100.0/24",
        )
    ]


def test_gateway_moved_out_of_the_underlay(deployment):
    gw1 = dataclasses.replace(deployment.gateways[0], tunnel_ip="10.9.9.1")
    moved = dataclasses.replace(deployment, gateways=(gw1, deployment.gateways[1]))
    problems = [(p.path, p.reason) for p in reachability_problems(moved)]
    assert problems[0] == (
        "gateways[0].tunnel_ip",
        "10.9.9.1 is not in the underlay subnet 192.168.100.0/24",
    )
    assert [path for path, _ in problems[1:]] == [
        f"vips[0].backends[{i}].tunnel_ip" for i in range(4)
    ]
    assert all("from gateway(s) gw1 over" in reason for _, reason in problems[1:])


def test_client_and_gateway_uplink_problems(deployment):
    c1 = dataclasses.replace(deployment.clients[0], address="10.7.0.1")
    gw2 = dataclasses.replace(deployment.gateways[1], addresses=("10.0.2.2",))
    broken = dataclasses.replace(
        deployment, clients=(c1, deployment.clients[1]), gateways=(deployment.gateways[0], gw2)
    )
    graph = build_graph(broken)
    assert not graph.has_edge("c1", CLIENT_NET)
    assert not graph.has_edge("gw2", UPLINK_NET)
    assert [(p.path, p.reason) for p in reachability_problems(broken)] == [
        ("gateways[1].addresses", "no address in the router's uplink subnet 10.0.1.0/24"),
        ("clients[0].address", "10.7.0.1 is not in the router's client subnet 10.1.0.0/24"),
    ]
