"""The deployment as a networkx graph: who is attached to which network.

Nodes are named by the deployment's own names (unique across kinds) plus one node per network
(``net:clients``, ``net:uplink``, ``net:underlay``); each node has a ``kind`` attribute
(client, router, gateway, vm, network) and the fields the emulator needs.  The deployment's
validator uses it to check that every gateway reaches every VM over the underlay.

A VM's edges depend on its tunnel IP alone (it is attached to the underlay when the address is
in the underlay's subnet), so whether a VM is reachable is a fact about its tunnel IP: a change
of VIPs that brings no new tunnel IP cannot make one unreachable (``reachable`` below).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection

import networkx as nx

from topology.network import Deployment
from topology.schema import Problem

CLIENT_NET = "net:clients"
UPLINK_NET = "net:uplink"
UNDERLAY_NET = "net:underlay"


def _inside(address: str | None, subnet: str | None) -> bool:
    if address is None or subnet is None:
        return False
    ip = ipaddress.ip_address(address)
    net = ipaddress.ip_network(subnet)
    return ip.version == net.version and ip in net


def vip_node(vip_name: str) -> str:
    """VIPs live in their own namespace of node names: a VIP may share a VM's name."""
    return f"vip:{vip_name}"


def build_graph(deployment: Deployment) -> nx.Graph:
    graph = nx.Graph()
    router = deployment.router
    underlay = deployment.underlay
    underlay_subnet = underlay.subnet if underlay else None
    if router:
        graph.add_node(CLIENT_NET, kind="network", subnet=router.client_subnet)
        graph.add_node(UPLINK_NET, kind="network", subnet=router.uplink_subnet)
        graph.add_node(router.name, kind="router", address=router.address)
        graph.add_edge(router.name, CLIENT_NET)
        graph.add_edge(router.name, UPLINK_NET)
    if underlay:
        graph.add_node(UNDERLAY_NET, kind="network", subnet=underlay.subnet, mtu=underlay.mtu)
        if router and _inside(router.address, underlay_subnet):
            graph.add_edge(router.name, UNDERLAY_NET)
    for client in deployment.clients:
        graph.add_node(client.name, kind="client", address=client.address)
        if router and _inside(client.address, router.client_subnet):
            graph.add_edge(client.name, CLIENT_NET)
    for gateway in deployment.gateways:
        graph.add_node(gateway.name, kind="gateway", gateway=gateway)
        if router and any(_inside(a, router.uplink_subnet) for a in gateway.addresses):
            graph.add_edge(gateway.name, UPLINK_NET)
        if _inside(gateway.tunnel_ip, underlay_subnet):
            graph.add_edge(gateway.name, UNDERLAY_NET)
    for vip in deployment.vips:
        graph.add_node(vip_node(vip.name), kind="vip", vip=vip)
        for backend in vip.backends:
            if backend.name not in graph:
                graph.add_node(backend.name, kind="vm", backend=backend, vips=[])
                if _inside(backend.tunnel_ip, underlay_subnet):
                    graph.add_edge(backend.name, UNDERLAY_NET)
            graph.nodes[backend.name]["vips"].append(vip.name)
    return graph


def tunnel_graph(graph: nx.Graph) -> nx.Graph:
    """The part of the graph that VXLAN packets cross: gateways, VMs and underlay networks."""
    keep = [n for n, kind in graph.nodes(data="kind") if kind in ("gateway", "vm")]
    if UNDERLAY_NET in graph:
        keep.append(UNDERLAY_NET)
    return graph.subgraph(keep)


def reachability_problems(
    deployment: Deployment, reachable: Collection[str] = frozenset()
) -> list[Problem]:
    """Every (gateway, VM) pair that the underlay does not connect, and emulation mismatches.

    ``reachable``: tunnel IPs known to be reached from every gateway of this deployment (they
    were, and the gateways and underlay are the same); their VMs are not looked at again,
    and with no other VM the graph is not built at all."""
    subnet = deployment.underlay.subnet if deployment.underlay else None
    problems = []
    for index, gateway in enumerate(deployment.gateways):
        if not _inside(gateway.tunnel_ip, subnet):
            problems.append(
                Problem(
                    f"gateways[{index}].tunnel_ip",
                    f"{gateway.tunnel_ip} is not in the underlay subnet {subnet}",
                )
            )
    problems += _unreachable_vms(deployment, reachable, subnet)
    router = deployment.router
    if router:
        for index, gateway in enumerate(deployment.gateways):
            if not any(_inside(a, router.uplink_subnet) for a in gateway.addresses):
                problems.append(
                    Problem(
                        f"gateways[{index}].addresses",
                        f"no address in the router's uplink subnet {router.uplink_subnet}",
                    )
                )
        for index, client in enumerate(deployment.clients):
            if not _inside(client.address, router.client_subnet):
                problems.append(
                    Problem(
                        f"clients[{index}].address",
                        f"{client.address} is not in the router's client subnet "
                        f"{router.client_subnet}",
                    )
                )
        if router.address is not None and not _inside(router.address, subnet):
            problems.append(
                Problem(
                    "router.address", f"{router.address} is not in the underlay subnet {subnet}"
                )
            )
    return problems


def _unreachable_vms(
    deployment: Deployment, reachable: Collection[str], subnet: str | None
) -> list[Problem]:
    """A problem per VM (per VIP that has it) that some gateway cannot reach, among those whose
    tunnel IPs are not in ``reachable``.  Each gateway's part of the tunnel graph is found once
    (a search per gateway and VM pair took ~0.4 s at 100 VIPs x 100 backends)."""
    unknown = [
        (vi, bi, backend)
        for vi, vip in enumerate(deployment.vips)
        for bi, backend in enumerate(vip.backends)
        if backend.tunnel_ip not in reachable
    ]
    if not unknown:
        return []
    tunnels = tunnel_graph(build_graph(deployment))
    reached = {g.name: nx.node_connected_component(tunnels, g.name) for g in deployment.gateways}
    problems = []
    for vi, bi, backend in unknown:
        cut_off = [g.name for g in deployment.gateways if backend.name not in reached[g.name]]
        if cut_off:
            problems.append(
                Problem(
                    f"vips[{vi}].backends[{bi}].tunnel_ip",
                    f"VM {backend.name} ({backend.tunnel_ip}) cannot be reached from "
                    f"gateway(s) {', '.join(cut_off)} over the underlay {subnet}",
                )
            )
    return problems
