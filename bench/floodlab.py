"""The lab of ``bench/bench_flood.py``: ``bench/ovslab.py``'s gateway (private Open vSwitch,
userspace datapath, ``lockstep-gateway`` as its controller, three VMs behind VXLAN), with what
a flood needs around it: VMs that serve TCP and answer health probes, a router in front of the
gateway, a legitimate client and a flooding one behind the router::

    client ns (10.1.0.11) ==ce/rc==+
                                   router ns --rg====gu-- [gateway bridge g] -- vxlan gt --+
    flood ns  (10.2.0.11) ==fe/rf==+    |                        | OpenFlow                |
                                        +--ru====uru-- [underlay bridge ul, 10.99.0.1] ----+
                                                         == uvN ==veth== vNe: VM ns (vx0,
                                                            VIP on lo, HTTP server on :80)

The VMs answer through the router (direct return): to the client, and to the gateway's own
address for their probe answers, which so enter the gateway on the uplink that the flood fills.
The router has no route back to the flood's random sources: their SYN-ACKs die there, as they
would in a real SYN flood.  The router's neighbour entry for the gateway is static (nothing here
measures ARP under a flood).  Which tree's controller runs is a parameter: the bench runs two
builds in turn, each with ``PYTHONPATH`` pointing at its tree.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bench.ovslab import (
    GATEWAY_ADDRESS,
    GATEWAY_MAC,
    START_TIMEOUT,
    VIP,
    VIP_PORT,
    Gateway,
    Lab,
    add_gateway_bridge,
    add_underlay_and_vms,
    deployment,
)
from lab.ovs import free_port, listening, sh, wait_for
from ryu_app.core.pipeline import BASE_COOKIE, COOKIE_ALL_FLOWS_MASK
from ryu_app.core.switchrules import slot_cookie

ROOT = Path(__file__).resolve().parent.parent
VM_SERVER = ROOT / "mininet" / "vmserver.py"
CLIENT_ADDRESS, CLIENT_ROUTER = "10.1.0.11", "10.1.0.1"
FLOOD_ADDRESS, FLOOD_ROUTER = "10.2.0.11", "10.2.0.1"
ROUTER_UPLINK, ROUTER_UNDERLAY = "10.0.1.254", "10.99.0.254"
# The default deployment's check (topology/examples/default.yaml), as a TCP connect: a dead VM
# is seen within interval x fall + timeout = 2.5 s.
HEALTH = {"type": "tcp", "interval": 1.0, "timeout": 0.5, "rise": 2, "fall": 2}
SLOTS = 256  # a switch-mode VIP's table size (2**8: what the table size rule gives 3 VMs)


@dataclass
class FloodLab:
    """One lab, as the bench reads it: the gateway (``gw.client_ns`` is the legitimate
    client's namespace) and the flooding client."""

    gw: Gateway
    flood_ns: str
    flood_if: str
    router_ns: str


@dataclass(frozen=True)
class Settings:
    """What differs between the labs the benches build: the VIP's health check, its ``mode``
    (``switch``: also ``placement: port-bits`` and ``table_size: SLOTS``; ``controller``
    leaves both at their defaults, so that a build from before switch mode runs too), the
    gateway's flood guard (None: its default; ``{"rate": 0}``: off) and the VMs' server."""

    health: dict = field(default_factory=lambda: dict(HEALTH))
    mode: str = "controller"
    flood_guard: dict | None = None
    server: Path = VM_SERVER


def build(lab: Lab, tree: Path, settings: Settings | None = None) -> FloodLab:
    """The whole lab, in order: OVS, the underlay with serving VMs, the router and clients,
    the controller of ``tree``, then its switch (OVS backs off from a controller not yet
    listening); in switch mode, back once the controller's slot rules are in the switch."""
    settings = settings or Settings()
    lab.ovs.start()
    vms, vm_links = add_underlay_and_vms(lab)
    router = add_router(lab)
    client_ns, client_if = add_host(lab, "c", CLIENT_ADDRESS, CLIENT_ROUTER)
    flood_ns, flood_if = add_host(lab, "f", FLOOD_ADDRESS, FLOOD_ROUTER)
    for name, ns in vms.items():
        serve(lab, name, ns, settings.server)
    gw = start_controller(lab, tree, client_ns, client_if, vms, vm_links, settings)
    add_gateway_bridge(lab, gw)
    if settings.mode == "switch":
        wait_for_slot_rules(gw, 2 * SLOTS)
    return FloodLab(gw, flood_ns, flood_if, router)


def wait_for_slot_rules(gw: Gateway, count: int) -> None:
    """Until the switch holds ``count`` slot rules (by their cookie kind)."""
    rules = f"cookie={slot_cookie(0):#x}/{COOKIE_ALL_FLOWS_MASK:#x}"

    def all_in() -> bool:
        gw.check_controller()
        text = gw.lab.ovs.ofctl("dump-aggregate", gw.bridge, rules)
        found = re.search(r"flow_count=(\d+)", text)
        return bool(found) and int(found[1]) == count

    wait_for(all_in, START_TIMEOUT, f"{count} slot rules in the switch")


def add_router(lab: Lab) -> str:
    """The router: forwards without reverse-path checks, reaches the gateway's address on
    the uplink (static neighbour) and the VIP through it, the VMs on the underlay."""
    ns = lab.netns("r")
    for key in ("all", "default"):
        sh("sysctl", "-qw", f"net.ipv4.conf.{key}.rp_filter=0", ns=ns)
    sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=ns)
    uplink, underlay = lab.name("rg"), lab.name("ru")
    lab.veth(uplink, lab.name("gu"), ns, None)  # gu: the gateway bridge's uplink port
    sh("ip", "addr", "add", f"{ROUTER_UPLINK}/24", "dev", uplink, ns=ns)
    sh("ip", "neigh", "replace", GATEWAY_ADDRESS, "lladdr", GATEWAY_MAC, "dev", uplink,
       "nud", "permanent", ns=ns)  # fmt: skip
    sh("ip", "route", "add", f"{VIP}/32", "via", GATEWAY_ADDRESS, ns=ns)
    lab.veth(underlay, lab.name("uru"), ns, None)
    lab.ovs.vsctl("add-port", lab.name("ul"), lab.name("uru"))
    sh("ip", "addr", "add", f"{ROUTER_UNDERLAY}/24", "dev", underlay, ns=ns)
    return ns


def add_host(lab: Lab, suffix: str, address: str, router_address: str) -> tuple[str, str]:
    """A client namespace behind the router, on a subnet of its own; (namespace, interface)."""
    ns, interface, router_side = lab.netns(suffix), lab.name(f"{suffix}e"), lab.name(f"r{suffix}")
    lab.veth(interface, router_side, ns, lab.name("r"))
    sh("ip", "addr", "add", f"{address}/24", "dev", interface, ns=ns)
    sh("ip", "route", "add", "default", "via", router_address, ns=ns)
    sh("ip", "addr", "add", f"{router_address}/24", "dev", router_side, ns=lab.name("r"))
    return ns, interface


def serve(lab: Lab, name: str, ns: str, server: Path = VM_SERVER) -> None:
    """Make a VM of ``add_underlay_and_vms`` a server: the VIP on its loopback (not answered
    to ARP), replies through the router, and ``server`` (the demo's HTTP server, or
    ``bench_ovs``'s accept-and-reset sink) on the VIP's port."""
    for key, value in (("all.arp_ignore", 1), ("all.arp_announce", 2), ("all.rp_filter", 0),
                       ("default.rp_filter", 0)):  # fmt: skip
        sh("sysctl", "-qw", f"net.ipv4.conf.{key}={value}", ns=ns)
    sh("ip", "addr", "add", f"{VIP}/32", "dev", "lo", ns=ns)
    sh("ip", "route", "add", "default", "via", ROUTER_UNDERLAY, ns=ns)
    argv = [sys.executable, str(server)] + ([name] if server == VM_SERVER else [])
    lab.spawn(argv, ns=ns, log=lab.workdir / f"{name}.log")


def config(lab: Lab, openflow_port: int, rest_port: int, settings: Settings) -> dict:
    """``ovslab``'s deployment with the settings' health check and mode, and by default the
    gateway's default flood guard (``ovslab`` turns it off to measure capacity; a build from
    before the guard knows no such key)."""
    whole = deployment(lab, openflow_port, rest_port)
    vip = whole["vips"][0]
    vip["health"] = dict(settings.health)
    if settings.mode == "switch":
        vip.update({"placement": "port-bits", "table_size": SLOTS, "mode": "switch"})
    if settings.flood_guard is None:
        whole["gateways"][0].pop("flood_guard", None)
    else:
        whole["gateways"][0]["flood_guard"] = dict(settings.flood_guard)
    return whole


def start_controller(lab, tree, client_ns, client_if, vms, vm_links, settings) -> Gateway:
    """``python -m ryu_app`` of ``tree`` (``PYTHONPATH``; ``PYTHONSAFEPATH`` keeps the working
    directory's own ``ryu_app`` out), INFO log (health changes and disconnects are INFO and
    WARNING lines), once it listens for its switch."""
    openflow_port, rest_port = free_port(), free_port()
    path = lab.workdir / "deployment.yaml"
    path.write_text(
        yaml.safe_dump(config(lab, openflow_port, rest_port, settings), sort_keys=False)
    )
    command = [sys.executable, "-m", "ryu_app", "--config", str(path), "--gateway", "gw1",
               "--log-level", "INFO"]  # fmt: skip
    env = {"PYTHONPATH": str(tree), "PYTHONSAFEPATH": "1"}
    log = lab.workdir / "gw1.log"
    process = lab.spawn(command, log=log, env=env)
    gw = Gateway(lab, client_ns, client_if, lab.name("g"), openflow_port, rest_port, process, log,
                 vms, vm_links)  # fmt: skip
    wait_for(
        lambda: listening(openflow_port) or process.poll() is not None,
        START_TIMEOUT,
        "the controller to listen",
    )
    gw.check_controller()
    return gw


def meter_punt(gw: Gateway, rate: int, burst: int | None = None) -> None:
    """Put an OpenFlow meter (``rate`` packets/s, drop band) on the VIP's punt rule by hand:
    the flood guard issue 13 asks for, to measure its effect on a build without it.  The
    probe answers' rule keeps no meter.  (The controller installs the punt rule once, at its
    switch's connection; this replaces it, same match and cookie.)"""
    ovs, uplink = gw.lab.ovs, gw.lab.name("gu")
    burst = burst or max(1, rate // 10)
    band = f"type=drop,rate={rate},burst_size={burst}"
    ovs.ofctl("add-meter", gw.bridge, f"meter=1,pktps,burst,stats,bands={band}")
    punt = f"priority=100,tcp,in_port={uplink},nw_dst={VIP},tp_dst={VIP_PORT}"
    ovs.ofctl(
        "add-flow", gw.bridge, f"cookie={BASE_COOKIE:#x},{punt},actions=meter:1,CONTROLLER:65535"
    )
