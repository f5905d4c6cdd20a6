"""A whole deployment as data: the gateways and the VIPs they serve (records of the domain model,
``ryu_app.core.model``) and the network around them.

The core works on one gateway and its VIPs; only the shell, the CLI and the emulation see a
whole deployment, so ``Deployment`` lives here, with what only the emulation and the
reachability check need: clients, the router and the underlay.  ``topology.deployment``
builds these from the deployment file.
"""

from __future__ import annotations

from dataclasses import dataclass

from ryu_app.core.model import Gateway, Vip


@dataclass(frozen=True)
class Client:
    name: str
    address: str


@dataclass(frozen=True)
class Router:
    name: str = "router"
    client_subnet: str = "10.1.0.0/24"
    uplink_subnet: str = "10.0.0.0/24"
    address: str | None = None  # on the underlay: the VMs' default route (return path)


@dataclass(frozen=True)
class Underlay:
    subnet: str
    mtu: int = 1600


@dataclass(frozen=True)
class Deployment:
    vips: tuple[Vip, ...]
    gateways: tuple[Gateway, ...]
    clients: tuple[Client, ...] = ()
    router: Router | None = None
    underlay: Underlay | None = None

    def gateway(self, gateway_name: str) -> Gateway:
        for gateway in self.gateways:
            if gateway.name == gateway_name:
                return gateway
        known = ", ".join(g.name for g in self.gateways)
        raise KeyError(f"no gateway named {gateway_name!r} (known: {known})")

    def vip(self, vip_name: str) -> Vip:
        for vip in self.vips:
            if vip.name == vip_name:
                return vip
        known = ", ".join(v.name for v in self.vips)
        raise KeyError(f"no VIP named {vip_name!r} (known: {known})")
