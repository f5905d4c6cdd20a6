"""topology.emulation without Mininet: scaling the shipped example, and the plan the Mininet layer
applies (links and interface names, addresses, routes, sysctls, VXLAN devices, VIPs on lo)."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections import Counter
from pathlib import Path

import pytest

from ryu_app.core.model import Backend, Gateway, HealthCheck, Vip
from topology import deployment as dep
from topology import emulation as em
from topology.network import Client, Deployment

EXAMPLE = Path(__file__).resolve().parents[2] / "topology" / "examples" / "default.yaml"
IFNAMSIZ = 15  # Linux interface names: at most 15 characters
MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


@pytest.fixture(scope="module")
def example() -> Deployment:
    return dep.load(EXAMPLE)  # frozen: safe to share


@pytest.fixture(scope="module")
def example_plan(example) -> em.Plan:
    return em.plan(example)


# ---- helpers -------------------------------------------------------------------------------------


def two_vips(example: Deployment) -> Deployment:
    """The example plus a UDP VIP on VNI 200 served by vm1 and vm2 (shared with 'web')."""
    web = example.vip("web")
    dns = Vip(
        name="dns",
        address="10.0.0.53",
        port=53,
        protocol="udp",
        idle_timeout=30,
        vni=200,
        health=HealthCheck(type="tcp", port=53),
        backends=web.backends[:2],
    )
    deployment = dataclasses.replace(example, vips=(web, dns))
    assert dep.deployment_problems(deployment) == []
    return deployment


def dual_stack(example: Deployment) -> Deployment:
    """The example with an IPv6 address on each gateway and an IPv6 VIP next to 'web'."""
    gateways = tuple(
        dataclasses.replace(g, addresses=(*g.addresses, f"fd00:1::{i}"))
        for i, g in enumerate(example.gateways, start=1)
    )
    web6 = dataclasses.replace(example.vip("web"), name="web6", address="fd00::100")
    deployment = dataclasses.replace(example, gateways=gateways, vips=(*example.vips, web6))
    assert dep.deployment_problems(deployment) == []
    return deployment


def links_of(plan: em.Plan, node: str) -> list[tuple[em.Interface, str]]:
    """(this node's interface, the other node) for each link of ``node``, in plan order."""
    result = []
    for link in plan.links:
        if link.node1 == node:
            result.append((link.intf1, link.node2))
        if link.node2 == node:
            result.append((link.intf2, link.node1))
    return result


def interface(plan: em.Plan, node: str, name: str) -> em.Interface:
    matches = [intf for intf, _ in links_of(plan, node) if intf.name == name]
    assert len(matches) == 1, f"{node} has {len(matches)} interfaces named {name}"
    return matches[0]


def vxlan_devices(host: em.Host) -> dict[str, dict[str, str]]:
    """Each VXLAN device a host's commands create: vni, dstport, local address and MAC."""
    devices: dict[str, dict[str, str]] = {}
    for command in host.commands:
        if command[:3] == ["ip", "link", "add"] and "vxlan" in command:
            device = command[3]
            devices[device] = {
                "vni": command[command.index("id") + 1],
                "dstport": command[command.index("dstport") + 1],
                "local": command[command.index("local") + 1],
                "learning": "nolearning" not in command,
            }
    for command in host.commands:
        if command[:3] == ["ip", "link", "set"] and "address" in command:
            devices[command[3]]["mac"] = command[command.index("address") + 1]
            devices[command[3]]["up"] = command[-1] == "up"
    return devices


def lo_addresses(host: em.Host) -> list[str]:
    return [
        c[3] for c in host.commands if c[:3] == ["ip", "addr", "add"] and c[-2:] == ["dev", "lo"]
    ]


def root_namespace_names(plan: em.Plan) -> list[str]:
    """Device names in the root namespace: the OVS bridges, their ports, the gateways' tunnels."""
    names = list(plan.switches)
    for link in plan.links:
        for node, intf in ((link.node1, link.intf1), (link.node2, link.intf2)):
            if node in plan.switches:
                names.append(intf.name)
    names += [s.gateway.tunnel_port for s in plan.switches.values() if s.role == "gateway"]
    return names


def all_macs(plan: em.Plan) -> list[str]:
    return [intf.mac for link in plan.links for intf in (link.intf1, link.intf2) if intf.mac]


# ---- scale ---------------------------------------------------------------------------------------


def test_scale_without_counts_keeps_the_deployment(example):
    assert em.scale(example) == example


def test_scale_numbers_a_new_gateway_like_the_example(example):
    scaled = em.scale(example, gateways=3)
    assert scaled.gateways[:2] == example.gateways
    assert scaled.gateways[2] == Gateway(
        name="gw3",
        dpid=3,
        addresses=("10.0.1.3",),
        tunnel_ip="192.168.100.3",
        openflow=("127.0.0.1", 6655),
        rest=("127.0.0.1", 8083),
        uplink_port="gw3-eth0",
        tunnel_port="gw3-vxlan",
        mac="02:00:00:00:00:03",
        state_file=None,
    )
    assert (scaled.vips, scaled.clients) == (example.vips, example.clients)


def test_scale_gives_every_new_gateway_its_own_ports_and_addresses(example):
    gateways = em.scale(example, gateways=16).gateways
    assert [g.name for g in gateways] == [f"gw{i}" for i in range(1, 17)]
    assert [g.dpid for g in gateways] == list(range(1, 17))
    assert [g.openflow[1] for g in gateways] == list(range(6653, 6669))
    assert [g.rest[1] for g in gateways] == list(range(8081, 8097))
    assert gateways[-1].mac == "02:00:00:00:00:10"
    assert gateways[-1].addresses == ("10.0.1.16",)
    # .11-.14 are the VMs': gw11 on take the next free underlay addresses.
    assert [g.tunnel_ip for g in gateways[9:12]] == [
        "192.168.100.10",
        "192.168.100.15",
        "192.168.100.16",
    ]
    underlay = [g.tunnel_ip for g in gateways] + [b.tunnel_ip for b in example.vip("web").backends]
    assert len(set(underlay)) == len(underlay)
    assert gateways[-1].uplink_port == "gw16-eth0"


def test_scale_adds_a_new_vm_to_every_vip(example):
    scaled = em.scale(two_vips(example), vms=5)
    vm5 = Backend("vm5", "192.168.100.15", "02:00:00:00:01:05", weight=1)
    web, dns = scaled.vips
    assert web.backends[:4] == example.vip("web").backends
    assert web.backends[4] == vm5
    # 'dns' had vm1 and vm2: it gets vm3..vm5, described exactly as in 'web'.
    assert dns.backends == web.backends
    assert (web.vni, dns.vni) == (100, 200)  # only the backends change


def test_scale_numbers_a_new_client_like_the_example(example):
    scaled = em.scale(example, clients=3)
    assert scaled.clients == (*example.clients, Client("c3", "10.1.0.13"))


def test_scale_shrinks_to_the_first_ones(example):
    scaled = em.scale(two_vips(example), clients=1, gateways=1, vms=1)
    assert scaled.clients == example.clients[:1]
    assert scaled.gateways == example.gateways[:1]
    assert [[b.name for b in v.backends] for v in scaled.vips] == [["vm1"], ["vm1"]]


@pytest.mark.parametrize(
    ("flag", "count"),
    [
        ("clients", 0),
        ("clients", 201),
        ("gateways", 0),
        ("gateways", 17),
        ("vms", 0),
        ("vms", 201),
        ("vms", -1),
    ],
)
def test_scale_rejects_a_count_out_of_range_naming_the_flag(example, flag, count):
    with pytest.raises(ValueError, match=f"^--{flag} must be .*got {count}$"):
        em.scale(example, **{flag: count})


def test_scale_needs_router_and_underlay(example):
    with pytest.raises(ValueError, match="router and underlay"):
        em.scale(dataclasses.replace(example, router=None), gateways=3)
    with pytest.raises(ValueError, match="router and underlay"):
        em.scale(dataclasses.replace(example, underlay=None), vms=3)


@pytest.mark.parametrize(
    ("clients", "gateways", "vms"), [(1, 1, 1), (3, 3, 5), (2, 2, 4), (200, 16, 200)]
)
def test_scaled_deployment_is_valid_and_round_trips(example, clients, gateways, vms):
    scaled = em.scale(example, clients=clients, gateways=gateways, vms=vms)
    assert (len(scaled.clients), len(scaled.gateways)) == (clients, gateways)
    assert len(scaled.vip("web").backends) == vms
    assert dep.deployment_problems(scaled) == []
    assert dep.parse_text(dep.dump(scaled)) == scaled


def test_scale_never_returns_a_vip_with_duplicate_backends(example):
    web = example.vip("web")
    gappy = dataclasses.replace(
        example, vips=(dataclasses.replace(web, backends=(web.backends[0], web.backends[2])),)
    )
    try:
        scaled = em.scale(gappy, vms=3)
    except ValueError:
        return  # refusing is fine too
    names = [b.name for b in scaled.vip("web").backends]
    assert len(set(names)) == 3, names
    assert dep.parse_text(dep.dump(scaled)) == scaled


def test_scale_gives_new_gateways_every_ip_version_of_the_last(example):
    scaled = em.scale(dual_stack(example), gateways=3)
    versions = {ipaddress.ip_address(a).version for a in scaled.gateways[2].addresses}
    assert versions == {4, 6}


# ---- plan: nodes and links -----------------------------------------------------------------------


def test_plan_nodes_and_roles(example_plan, example):
    assert example_plan.deployment == example
    assert {n: h.role for n, h in example_plan.hosts.items()} == {
        "r1": "router",
        "c1": "client",
        "c2": "client",
        "vm1": "vm",
        "vm2": "vm",
        "vm3": "vm",
        "vm4": "vm",
    }
    assert example_plan.switches == {
        em.CLIENT_LAN: em.Switch(em.CLIENT_LAN, "bridge"),
        em.UNDERLAY: em.Switch(em.UNDERLAY, "bridge"),
        "gw1": em.Switch("gw1", "gateway", example.gateway("gw1"), 1),
        "gw2": em.Switch("gw2", "gateway", example.gateway("gw2"), 2),
    }


def test_every_link_joins_planned_nodes_and_every_node_is_linked(example_plan):
    nodes = set(example_plan.hosts) | set(example_plan.switches)
    linked = {n for link in example_plan.links for n in (link.node1, link.node2)}
    assert linked == nodes
    # The emulation is a tree: no two links between the same pair of nodes.
    pairs = Counter(frozenset((link.node1, link.node2)) for link in example_plan.links)
    assert max(pairs.values()) == 1


def test_each_gateway_has_one_link_its_uplink_to_the_router(example_plan, example):
    for gateway in example.gateways:
        links = links_of(example_plan, gateway.name)
        assert len(links) == 1
        ((intf, peer),) = links
        assert peer == "r1"
        # Its first (only) port, so Mininet's own naming would agree: <name>-eth0.
        assert intf.name == gateway.uplink_port == f"{gateway.name}-eth0"
        assert intf.addresses == ()  # the controller answers for the gateway's addresses
        router_side = interface(example_plan, "r1", f"r1-{gateway.name}")
        assert router_side.addresses == ("10.0.1.254/32",)


def test_gateway_links_come_before_any_other_link_of_a_bridge(example_plan, example):
    """A gateway's uplink is its first link in the list (Mininet numbers ports in order)."""
    first = {}
    for position, link in enumerate(example_plan.links):
        for node in (link.node1, link.node2):
            first.setdefault(node, (position, link))
    for gateway in example.gateways:
        _, link = first[gateway.name]
        assert (link.node1, link.intf1.name) == (gateway.name, gateway.uplink_port)


# ---- plan: the router and the clients ------------------------------------------------------------


def test_router_routes_one_host_route_per_gateway_address_on_its_link(example_plan):
    assert example_plan.hosts["r1"].routes == [
        ["10.0.1.1/32", "dev", "r1-gw1"],
        ["10.0.1.2/32", "dev", "r1-gw2"],
    ]


def test_router_interfaces_and_sysctls(example_plan):
    router = example_plan.hosts["r1"]
    assert [intf.name for intf, _ in links_of(example_plan, "r1")] == [
        "r1-clan",
        "r1-gw1",
        "r1-gw2",
        "r1-ul",
    ]
    assert interface(example_plan, "r1", "r1-clan").addresses == ("10.1.0.1/24",)
    underlay = interface(example_plan, "r1", "r1-ul")
    assert (underlay.addresses, underlay.mtu) == (("192.168.100.254/24",), 1600)
    assert interface(example_plan, em.UNDERLAY, "ul-r1").mtu == 1600
    assert router.sysctls["net.ipv4.ip_forward"] == "1"
    assert router.sysctls["net.ipv4.fib_multipath_hash_policy"] == "1"
    assert router.sysctls["net.ipv4.conf.all.rp_filter"] == "0"
    assert router.commands == []


def test_router_vip_routes_list_every_gateway_address(example_plan):
    assert example_plan.router_vip_routes == {"10.0.0.100": ["10.0.1.1", "10.0.1.2"]}


def test_clients_route_via_the_first_host_of_their_subnet(example_plan, example):
    for client in example.clients:
        host = example_plan.hosts[client.name]
        assert host.routes == [["default", "via", "10.1.0.1"]]
        assert links_of(example_plan, client.name) == [
            (em.Interface(f"{client.name}-eth0", (f"{client.address}/24",)), em.CLIENT_LAN)
        ]


# ---- plan: the VMs and the underlay --------------------------------------------------------------


def test_vm_underlay_interface_and_return_route(example_plan, example):
    for backend in example.vip("web").backends:
        ((intf, peer),) = links_of(example_plan, backend.name)
        assert peer == em.UNDERLAY
        assert intf == em.Interface(
            f"{backend.name}-eth0",
            (f"{backend.tunnel_ip}/24",),
            example_plan.vm_macs[backend.name],
            1600,
        )
        assert interface(example_plan, em.UNDERLAY, f"ul-{backend.name}").mtu == 1600
        assert example_plan.hosts[backend.name].routes == [["default", "via", "192.168.100.254"]]


def test_vm_vxlan_device_and_vip_on_lo(example_plan, example):
    for backend in example.vip("web").backends:
        host = example_plan.hosts[backend.name]
        assert vxlan_devices(host) == {
            "vx100": {
                "vni": "100",
                "dstport": "4789",
                "local": backend.tunnel_ip,
                "learning": False,
                "mac": backend.mac,
                "up": True,
            }
        }
        assert ["sysctl", "-qw", "net.ipv4.conf.vx100.rp_filter=0"] in host.commands
        assert lo_addresses(host) == ["10.0.0.100/32"]
        # The device exists before it is configured.
        verbs = [c[:3] for c in host.commands]
        assert verbs.index(["ip", "link", "add"]) < verbs.index(["ip", "link", "set"])


def test_vm_sysctls_keep_the_vip_to_itself(example_plan):
    for name, host in example_plan.hosts.items():
        if host.role != "vm":
            continue
        assert host.sysctls == {
            "net.ipv4.conf.all.arp_ignore": "1",
            "net.ipv4.conf.all.arp_announce": "2",
            "net.ipv4.conf.all.rp_filter": "0",
            "net.ipv4.conf.default.rp_filter": "0",
        }, name


def test_underlay_addresses_are_the_gateways_tunnel_ips(example_plan):
    assert example_plan.underlay_addresses == ["192.168.100.1/24", "192.168.100.2/24"]


def test_tunnel_neighbours_map_each_vm_to_its_underlay_mac(example_plan, example):
    backends = example.vip("web").backends
    assert example_plan.tunnel_neighbours == {
        b.tunnel_ip: interface(example_plan, b.name, f"{b.name}-eth0").mac for b in backends
    }
    assert example_plan.vm_macs == {
        b.name: example_plan.tunnel_neighbours[b.tunnel_ip] for b in backends
    }
    macs = list(example_plan.vm_macs.values()) + [b.mac for b in backends]
    macs += [g.mac for g in example.gateways]
    assert len(set(macs)) == len(macs)  # underlay, VXLAN and gateway MACs all differ


def test_two_vips_on_two_vnis_share_their_vms(example):
    plan = em.plan(two_vips(example))
    for name in ("vm1", "vm2"):
        host = plan.hosts[name]
        devices = vxlan_devices(host)
        assert sorted(devices) == ["vx100", "vx200"]
        assert {d["vni"] for d in devices.values()} == {"100", "200"}
        backend = example.vip("web").backend(name)
        assert {d["mac"] for d in devices.values()} == {backend.mac}
        assert {d["local"] for d in devices.values()} == {backend.tunnel_ip}
        assert sorted(lo_addresses(host)) == ["10.0.0.100/32", "10.0.0.53/32"]
    for name in ("vm3", "vm4"):
        assert sorted(vxlan_devices(plan.hosts[name])) == ["vx100"]
        assert lo_addresses(plan.hosts[name]) == ["10.0.0.100/32"]
    # One host and one underlay link per VM, however many VIPs it serves.
    assert sorted(n for n, h in plan.hosts.items() if h.role == "vm") == [
        "vm1",
        "vm2",
        "vm3",
        "vm4",
    ]
    assert plan.router_vip_routes == {
        "10.0.0.100": ["10.0.1.1", "10.0.1.2"],
        "10.0.0.53": ["10.0.1.1", "10.0.1.2"],
    }


def test_one_address_on_two_ports_gives_one_device_and_one_lo_address(example):
    web = example.vip("web")
    https = dataclasses.replace(web, name="https", port=443)
    plan = em.plan(dataclasses.replace(example, vips=(web, https)))
    host = plan.hosts["vm1"]
    assert sorted(vxlan_devices(host)) == ["vx100"]
    assert lo_addresses(host) == ["10.0.0.100/32"]


def test_plan_needs_the_routers_underlay_address(example):
    router = dataclasses.replace(example.router, address=None)
    with pytest.raises(ValueError, match="underlay address"):
        em.plan(dataclasses.replace(example, router=router))
    with pytest.raises(ValueError):
        em.plan(dataclasses.replace(example, underlay=None))


# ---- plan: interface names -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("clients", "gateways", "vms"), [(None, None, None), (1, 1, 1), (200, 16, 200)]
)
def test_interface_names_fit_linux_and_are_unique(example, clients, gateways, vms):
    plan = em.plan(em.scale(example, clients=clients, gateways=gateways, vms=vms))
    for node in [*plan.hosts, *plan.switches]:
        names = [intf.name for intf, _ in links_of(plan, node)]
        if node in plan.hosts:
            names += list(vxlan_devices(plan.hosts[node])) + ["lo"]
        assert len(set(names)) == len(names), (node, names)
        too_long = [n for n in names if len(n) > IFNAMSIZ]
        assert not too_long, (node, too_long)
    root = root_namespace_names(plan)
    assert len(set(root)) == len(root)
    assert max(len(n) for n in root) <= IFNAMSIZ


def test_largest_scale_plans_every_node(example):
    plan = em.plan(em.scale(example, clients=200, gateways=16, vms=200))
    vm200 = interface(plan, "vm200", "vm200-eth0").addresses[0]
    underlay = [a.split("/")[0] for a in plan.underlay_addresses] + list(plan.tunnel_neighbours)
    assert vm200.endswith("/24") and len(set(underlay)) == len(underlay) == 216
    assert interface(plan, "c200", "c200-eth0").addresses == ("10.1.0.210/24",)
    assert interface(plan, "r1", "r1-gw16").addresses == ("10.0.1.254/32",)
    assert ["10.0.1.16/32", "dev", "r1-gw16"] in plan.hosts["r1"].routes
    assert len(plan.hosts["r1"].routes) == 16
    assert len(plan.underlay_addresses) == 16
    assert len(plan.tunnel_neighbours) == len(plan.vm_macs) == 200
    macs = all_macs(plan)
    assert all(MAC.match(m) for m in macs)
    assert len(set(macs)) == len(macs) == 200


def test_plan_never_plans_an_interface_name_linux_refuses(example):
    web = example.vip("web")
    renamed = dataclasses.replace(web.backends[0], name="backend-web-01")
    deployment = dataclasses.replace(
        example, vips=(dataclasses.replace(web, backends=(renamed, *web.backends[1:])),)
    )
    assert dep.deployment_problems(deployment) == []
    try:
        plan = em.plan(deployment)
    except ValueError:
        return
    names = [i.name for link in plan.links for i in (link.intf1, link.intf2)]
    assert max(len(n) for n in names) <= IFNAMSIZ, max(names, key=len)


def test_plan_keeps_node_names_apart_from_the_bridges(example):
    clients = (Client("ul", "10.1.0.11"), *example.clients[1:])
    deployment = dataclasses.replace(example, clients=clients)
    assert dep.deployment_problems(deployment) == []
    try:
        plan = em.plan(deployment)
    except ValueError:
        return
    assert not set(plan.hosts) & set(plan.switches)


def test_plan_gives_every_vm_a_valid_mac_beyond_255(example):
    backends = tuple(
        Backend(
            f"v{i}",
            str(ipaddress.ip_address("192.168.1.1") + i),
            f"02:00:00:01:{i // 256:02x}:{i % 256:02x}",
        )
        for i in range(260)
    )
    underlay = dataclasses.replace(example.underlay, subnet="192.168.0.0/16")
    vips = (dataclasses.replace(example.vip("web"), backends=backends),)
    deployment = dataclasses.replace(example, vips=vips, underlay=underlay)
    assert dep.deployment_problems(deployment) == []
    macs = all_macs(em.plan(deployment))
    assert all(MAC.match(m) for m in macs), [m for m in macs if not MAC.match(m)]
    assert len(set(macs)) == len(macs)


# ---- IPv6 and vip_route_args ---------------------------------------------------------------------


def test_ipv6_addresses_get_host_routes_of_128(example):
    plan = em.plan(dual_stack(example))
    assert plan.hosts["r1"].routes == [
        ["10.0.1.1/32", "dev", "r1-gw1"],
        ["fd00:1::1/128", "dev", "r1-gw1"],
        ["10.0.1.2/32", "dev", "r1-gw2"],
        ["fd00:1::2/128", "dev", "r1-gw2"],
    ]
    # Each VIP is routed to the gateway addresses of its own IP version.
    assert plan.router_vip_routes == {
        "10.0.0.100": ["10.0.1.1", "10.0.1.2"],
        "fd00::100": ["fd00:1::1", "fd00:1::2"],
    }
    assert sorted(lo_addresses(plan.hosts["vm1"])) == ["10.0.0.100/32", "fd00::100/128"]


def test_vip_route_args_one_gateway(example_plan):
    assert em.vip_route_args(example_plan, "10.0.0.100", ["10.0.1.2"]) == [
        "10.0.0.100/32",
        "nexthop",
        "via",
        "10.0.1.2",
        "dev",
        "r1-gw2",
    ]


def test_vip_route_args_ecmp_over_every_gateway(example_plan):
    addresses = example_plan.router_vip_routes["10.0.0.100"]
    assert em.vip_route_args(example_plan, "10.0.0.100", addresses) == [
        "10.0.0.100/32",
        *["nexthop", "via", "10.0.1.1", "dev", "r1-gw1"],
        *["nexthop", "via", "10.0.1.2", "dev", "r1-gw2"],
    ]


def test_vip_route_args_ipv6_ecmp_uses_each_gateways_router_device(example):
    plan = em.plan(dual_stack(example))
    addresses = plan.router_vip_routes["fd00::100"]
    assert em.vip_route_args(plan, "fd00::100", addresses) == [
        "fd00::100/128",
        *["nexthop", "via", "fd00:1::1", "dev", "r1-gw1"],
        *["nexthop", "via", "fd00:1::2", "dev", "r1-gw2"],
    ]
    # The order given is kept (the caller decides), and a subset is fine.
    assert em.vip_route_args(plan, "fd00::100", ["fd00:1::2"]) == [
        "fd00::100/128",
        *["nexthop", "via", "fd00:1::2", "dev", "r1-gw2"],
    ]


def test_vip_route_args_on_a_scaled_plan_names_the_new_gateways(example):
    plan = em.plan(em.scale(example, gateways=16))
    args = em.vip_route_args(plan, "10.0.0.100", plan.router_vip_routes["10.0.0.100"])
    hops = [args[i : i + 5] for i in range(1, len(args), 5)]
    assert hops == [["nexthop", "via", f"10.0.1.{i}", "dev", f"r1-gw{i}"] for i in range(1, 17)]
