"""The emulated network of a deployment, as data: what the Mininet scripts build.

``scale`` grows or shrinks a deployment's clients, gateways and VMs (the demo's flags), following
the shipped example's numbering; ``plan`` turns a deployment into hosts, switches and links with
every address, route, sysctl and command, so that the Mininet layer (``mininet/lockstep_topo.py``)
only applies it and this module is tested without Mininet.

    clients --- clients LAN --- router (ECMP, L4 hash) --- one link per gateway --- gateway bridge
                                   |                                               (OVS, VXLAN port)
                                   +--- underlay bridge --- VMs (vx device, VIPs on lo, servers)
                                          (its internal port holds the gateways' tunnel IPs)
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass, field

from ryu_app.core.model import Backend, Gateway
from topology.deployment import deployment_problems
from topology.network import Client, Deployment
from topology.schema import ConfigError

CLIENT_LAN = "clan"  # the clients' switch
UNDERLAY = "ul"  # the underlay switch (its internal port lives in the root namespace)
VXLAN_PORT = 4789


@dataclass(frozen=True)
class Interface:
    name: str
    addresses: tuple[str, ...] = ()  # with prefix length, e.g. "10.1.0.1/24"
    mac: str | None = None
    mtu: int | None = None


@dataclass(frozen=True)
class Link:
    node1: str
    node2: str
    intf1: Interface
    intf2: Interface


@dataclass
class Host:
    name: str
    role: str  # "client", "router" or "vm"
    routes: list[list[str]] = field(default_factory=list)  # `ip route` arguments
    sysctls: dict[str, str] = field(default_factory=dict)
    commands: list[list[str]] = field(default_factory=list)  # run in order after addresses


@dataclass(frozen=True)
class Switch:
    name: str
    role: str  # "gateway" or "bridge"
    gateway: Gateway | None = None
    dpid: int | None = None


@dataclass
class Plan:
    deployment: Deployment
    hosts: dict[str, Host]
    switches: dict[str, Switch]
    links: list[Link]
    underlay_addresses: list[str]  # on the underlay bridge's internal port (root namespace)
    tunnel_neighbours: dict[str, str]  # VM tunnel IP -> MAC of its underlay interface
    vm_macs: dict[str, str]  # backend name -> underlay interface MAC
    router_vip_routes: dict[str, list[str]]  # VIP address -> gateway addresses (ECMP)


# ---- scaling ----------------------------------------------------------------------------------


def scale(
    deployment: Deployment,
    clients: int | None = None,
    gateways: int | None = None,
    vms: int | None = None,
) -> Deployment:
    """The deployment with that many clients, gateways and VMs: the first ones as they are, the
    others numbered like the example (c3, gw3 on dpid 3 and the next ports, vm5 ...).  VMs are
    the backends of every VIP."""
    router, underlay = deployment.router, deployment.underlay
    if router is None or underlay is None:
        raise ValueError("emulation needs the deployment's router and underlay sections")
    result = deployment
    if clients is not None:
        result = dataclasses.replace(result, clients=_clients(result, clients))
    if gateways is not None:
        result = dataclasses.replace(result, gateways=_gateways(result, gateways))
    if vms is not None:
        result = dataclasses.replace(result, vips=tuple(_vms(v, vms, result) for v in result.vips))
    problems = deployment_problems(result)
    if problems:
        raise ConfigError(problems)
    return result


def _host(subnet: str, index: int) -> str:
    return str(ipaddress.ip_network(subnet)[index])


def _numbers(taken_names: set[str], prefix: str, start: int):
    """``start``, ``start + 1``, ... skipping numbers whose name is taken."""
    index = start
    while True:
        if f"{prefix}{index}" not in taken_names:
            yield index
        index += 1


def _clients(deployment: Deployment, count: int) -> tuple[Client, ...]:
    _check_count("clients", count, 1, 200)
    kept = list(deployment.clients[:count])
    taken = {c.address for c in kept}
    numbers = _numbers({c.name for c in kept}, "c", len(kept) + 1)
    while len(kept) < count:
        index = next(numbers)
        address = _host(deployment.router.client_subnet, 10 + index)
        if address not in taken:
            kept.append(Client(f"c{index}", address))
    return tuple(kept)


def _gateways(deployment: Deployment, count: int) -> tuple[Gateway, ...]:
    _check_count("gateways", count, 1, 16)
    kept = list(deployment.gateways[:count])
    numbers = _numbers({g.name for g in kept}, "gw", len(kept) + 1)
    while len(kept) < count:
        index = next(numbers)
        last = kept[-1]
        name = f"gw{index}"
        # An address of each IP version the last gateway has: IPv4 from the uplink subnet,
        # others the last one's plus one.
        addresses = tuple(
            _host(deployment.router.uplink_subnet, index)
            if ipaddress.ip_address(a).version == 4
            else str(ipaddress.ip_address(a) + 1)
            for a in last.addresses
        )
        kept.append(
            dataclasses.replace(
                last,
                name=name,
                dpid=max(g.dpid for g in kept) + 1,
                addresses=addresses,
                tunnel_ip=_free(
                    deployment.underlay.subnet, index, _underlay_taken(kept, deployment)
                ),
                openflow=(last.openflow[0], last.openflow[1] + 1),
                rest=(last.rest[0], last.rest[1] + 1),
                uplink_port=f"{name}-eth0",
                tunnel_port=f"{name}-vxlan",
                mac=f"02:00:00:00:00:{index:02x}",
                state_file=None,
            )
        )
    return tuple(kept)


def _vms(vip, count: int, deployment: Deployment):
    _check_count("vms", count, 1, 200)
    kept = list(vip.backends[:count])
    taken = _underlay_taken(deployment.gateways, deployment) | {b.tunnel_ip for b in kept}
    known = {b.name: b for v in deployment.vips for b in v.backends}  # a VM serves every VIP
    numbers = _numbers({b.name for b in kept}, "vm", len(kept) + 1)
    while len(kept) < count:
        index = next(numbers)
        name = f"vm{index}"
        if name in known:
            kept.append(known[name])
            continue
        address = _free(deployment.underlay.subnet, 10 + index, taken)
        taken.add(address)
        kept.append(Backend(name, address, f"02:00:00:00:01:{index:02x}"))
    return dataclasses.replace(vip, backends=tuple(kept))


def _underlay_taken(gateways, deployment: Deployment) -> set[str]:
    """Underlay addresses in use: gateways' tunnel IPs, VMs', the router's."""
    taken = {g.tunnel_ip for g in gateways}
    taken |= {b.tunnel_ip for v in deployment.vips for b in v.backends}
    if deployment.router and deployment.router.address:
        taken.add(deployment.router.address)
    return taken


def _free(subnet: str, start: int, taken: set[str]) -> str:
    """The first host address of ``subnet`` from index ``start`` on that is not taken."""
    network = ipaddress.ip_network(subnet)
    for index in range(start, network.num_addresses - 1):
        address = str(network[index])
        if address not in taken:
            return address
    raise ValueError(f"the underlay {subnet} has no free address left")


def _check_count(what: str, count: int, low: int, high: int) -> None:
    if not low <= count <= high:
        raise ValueError(f"--{what} must be {low}..{high}, got {count}")


# ---- the plan ---------------------------------------------------------------------------------


def plan(deployment: Deployment) -> Plan:
    """Every node, link, address, route, sysctl and command of the emulation: the router with
    its links (the gateways' first), the clients, the VMs."""
    router, underlay = deployment.router, deployment.underlay
    if router is None or underlay is None or router.address is None:
        raise ValueError("emulation needs router (with its underlay address) and underlay sections")
    router_host, links, gateway_switches = _plan_router(deployment)
    client_hosts, client_links = _plan_clients(deployment)
    vm_hosts, vm_links, vm_macs, neighbours = _plan_vms(deployment)
    hosts = {host.name: host for host in (router_host, *client_hosts, *vm_hosts)}
    switches = {
        CLIENT_LAN: Switch(CLIENT_LAN, "bridge"),
        UNDERLAY: Switch(UNDERLAY, "bridge"),
        **gateway_switches,
    }
    links += client_links + vm_links
    underlay_len = ipaddress.ip_network(underlay.subnet).prefixlen
    underlay_addresses = [f"{g.tunnel_ip}/{underlay_len}" for g in deployment.gateways]
    _check_names(hosts, links, deployment)
    return Plan(
        deployment,
        hosts,
        switches,
        links,
        underlay_addresses,
        neighbours,
        vm_macs,
        _plan_vip_routes(deployment),
    )


def _plan_router(deployment: Deployment) -> tuple[Host, list[Link], dict[str, Switch]]:
    """The router (forwarding, ECMP with an L4 hash) and its links: the client LAN, one
    point-to-point link per gateway (gateways first on their own links, so that their uplink
    is their first port, -eth0) with a host route to each gateway address, the underlay.
    Returns the gateways' switches too."""
    router, underlay = deployment.router, deployment.underlay
    underlay_len = ipaddress.ip_network(underlay.subnet).prefixlen
    client_net = ipaddress.ip_network(router.client_subnet)
    router_client = f"{client_net[1]}/{client_net.prefixlen}"
    router_uplink = _host(router.uplink_subnet, -2)  # e.g. 10.0.1.254: one /32 per gateway link
    r = router.name
    host = Host(
        r,
        "router",
        sysctls={
            "net.ipv4.ip_forward": "1",
            "net.ipv4.conf.all.rp_filter": "0",
            "net.ipv4.conf.default.rp_filter": "0",
            "net.ipv4.fib_multipath_hash_policy": "1",  # L4 hash: flows spread, each stays put
        },
    )
    links = [
        Link(
            r, CLIENT_LAN, Interface(f"{r}-clan", (router_client,)), Interface(f"{CLIENT_LAN}-{r}")
        )
    ]
    switches = {}
    for gateway in deployment.gateways:
        switches[gateway.name] = Switch(gateway.name, "gateway", gateway, gateway.dpid)
        router_side = f"{r}-{gateway.name}"
        links.append(
            Link(
                gateway.name,
                r,
                Interface(gateway.uplink_port),
                Interface(router_side, (f"{router_uplink}/32",)),
            )
        )
        for address in gateway.addresses:
            host.routes.append([f"{address}/{_prefix_len(address)}", "dev", router_side])
    links.append(
        Link(
            r,
            UNDERLAY,
            Interface(f"{r}-ul", (f"{router.address}/{underlay_len}",), mtu=underlay.mtu),
            Interface(f"{UNDERLAY}-{r}", mtu=underlay.mtu),
        )
    )
    return host, links, switches


def _plan_clients(deployment: Deployment) -> tuple[list[Host], list[Link]]:
    """Each client on the client LAN, its default route via the router."""
    client_net = ipaddress.ip_network(deployment.router.client_subnet)
    hosts, links = [], []
    for client in deployment.clients:
        hosts.append(Host(client.name, "client", routes=[["default", "via", str(client_net[1])]]))
        links.append(
            Link(
                client.name,
                CLIENT_LAN,
                Interface(f"{client.name}-eth0", (f"{client.address}/{client_net.prefixlen}",)),
                Interface(f"{CLIENT_LAN}-{client.name}"),
            )
        )
    return hosts, links


def _plan_vms(
    deployment: Deployment,
) -> tuple[list[Host], list[Link], dict[str, str], dict[str, str]]:
    """Each VM on the underlay: its link, sysctls (the VIP on lo answered for by nobody, replies
    leaving another way than requests came), a VXLAN device per VNI and its VIPs on lo.
    Returns the hosts, links, each VM's underlay MAC and the tunnel neighbours (tunnel IP ->
    that MAC)."""
    underlay = deployment.underlay
    underlay_len = ipaddress.ip_network(underlay.subnet).prefixlen
    hosts, links = [], []
    vm_macs: dict[str, str] = {}
    neighbours: dict[str, str] = {}
    for index, (backend, vips) in enumerate(_vms_of(deployment), start=1):
        name = backend.name
        underlay_mac = f"02:00:00:02:{index >> 8:02x}:{index & 0xFF:02x}"
        vm_macs[name] = underlay_mac
        neighbours[backend.tunnel_ip] = underlay_mac
        hosts.append(
            Host(
                name,
                "vm",
                routes=[["default", "via", deployment.router.address]],
                sysctls={
                    "net.ipv4.conf.all.arp_ignore": "1",  # the VIP on lo is not answered for
                    "net.ipv4.conf.all.arp_announce": "2",
                    # requests arrive on vx*, replies leave eth0
                    "net.ipv4.conf.all.rp_filter": "0",
                    "net.ipv4.conf.default.rp_filter": "0",
                },
                commands=_vm_commands(backend, vips),
            )
        )
        links.append(
            Link(
                name,
                UNDERLAY,
                Interface(
                    f"{name}-eth0",
                    (f"{backend.tunnel_ip}/{underlay_len}",),
                    underlay_mac,
                    underlay.mtu,
                ),
                Interface(f"{UNDERLAY}-{name}", mtu=underlay.mtu),
            )
        )
    return hosts, links, vm_macs, neighbours


def _vm_commands(backend: Backend, vips: list) -> list[list[str]]:
    """A VXLAN device per VNI the VM serves (its inner MAC the backend's), then its VIPs on lo."""
    commands = []
    for vni in sorted({vip.vni for vip in vips}):
        device = f"vx{vni}"
        commands += [
            ["ip", "link", "add", device, "type", "vxlan", "id", str(vni), "dstport",
             str(VXLAN_PORT), "local", backend.tunnel_ip, "nolearning"],
            ["ip", "link", "set", device, "address", backend.mac, "up"],
            ["sysctl", "-qw", f"net.ipv4.conf.{device}.rp_filter=0"],
        ]  # fmt: skip
    for address in sorted({vip.address for vip in vips}):
        commands.append(["ip", "addr", "add", f"{address}/{_prefix_len(address)}", "dev", "lo"])
    return commands


def _plan_vip_routes(deployment: Deployment) -> dict[str, list[str]]:
    """Each VIP address -> the gateway addresses of its IP version (the router's ECMP hops)."""
    return {
        vip.address: [
            a
            for g in deployment.gateways
            for a in g.addresses
            if ipaddress.ip_address(a).version == vip.ip_version
        ]
        for vip in deployment.vips
    }


def _prefix_len(address: str) -> int:
    """A host route's prefix length: /32 or /128."""
    return 32 if ipaddress.ip_address(address).version == 4 else 128


def _check_names(hosts: dict, links: list[Link], deployment: Deployment) -> None:
    """Node names must not be the bridges', interface names must fit Linux (15 bytes)."""
    nodes = set(hosts) | {g.name for g in deployment.gateways}
    clash = sorted(nodes & {CLIENT_LAN, UNDERLAY})
    if clash:
        raise ValueError(f"node name(s) {', '.join(clash)} are the emulation's bridges' names")
    for link in links:
        for node, interface in ((link.node1, link.intf1), (link.node2, link.intf2)):
            if len(interface.name.encode()) > 15:
                raise ValueError(
                    f"{node}: interface name {interface.name!r} is longer than Linux allows "
                    "(15 bytes): give the node a shorter name"
                )


def _vms_of(deployment: Deployment) -> list[tuple[Backend, list]]:
    """Each distinct backend (VM) with the VIPs it serves, in order of first appearance."""
    seen: dict[str, tuple[Backend, list]] = {}
    for vip in deployment.vips:
        for backend in vip.backends:
            seen.setdefault(backend.name, (backend, []))[1].append(vip)
    return list(seen.values())


def vip_route_args(plan: Plan, vip_address: str, gateway_addresses: list[str]) -> list[str]:
    """`ip route replace` arguments sending a VIP to these gateways (ECMP when several)."""
    prefix = 32 if ipaddress.ip_address(vip_address).version == 4 else 128
    router = plan.deployment.router.name
    by_address = {a: g for g in plan.deployment.gateways for a in g.addresses}
    hops: list[str] = []
    for address in gateway_addresses:
        hops += ["nexthop", "via", address, "dev", f"{router}-{by_address[address].name}"]
    return [f"{vip_address}/{prefix}", *hops]
