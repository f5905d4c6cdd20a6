"""The integration topology: client -> ECMP router -> gateways (OVS + lockstep-gateway each)
-> VXLAN over an underlay bridge -> VMs (VIP on lo, HTTP server) -> straight back to the router.

    client ns  c-eth -- r-c  router ns  r-g1 -- gw1 bridge (uplink) ... VXLAN ...
                             (ECMP)     r-g2 -- gw2 bridge                        \\
                                        r-u  -- underlay bridge ul -- vm ns (vx0, VIP on lo)
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import textwrap
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.integration.netlab import Lab, PrivateOVS, free_port, listening, sh, wait_for

VIP = "10.0.0.100"
VIP6 = "fd00::100"  # the same service as an IPv6 VIP ("web6"), inner IPv6 over the IPv4 underlay
VIP_PORT = 80
VNI = 100
CLIENT = "10.1.0.11"
CLIENT6 = "fd00:1::11"
ROUTER_CLIENT_SIDE = "10.1.0.1"
ROUTER_CLIENT_SIDE6 = "fd00:1::1"
ROUTER_UPLINK = "10.0.1.254"
ROUTER_UNDERLAY = "10.99.0.254"
ROUTER_UNDERLAY6 = "fd00:99::254"
UNDERLAY = "10.99.0.0/24"
BIN = Path(sys.executable).parent


@dataclass
class GatewayHandle:
    name: str
    dpid: int
    address: str
    address6: str
    tunnel_ip: str
    openflow_port: int
    rest_port: int
    bridge: str
    uplink: str
    tunnel: str
    router_side: str
    process: object = None


@dataclass
class VmHandle:
    name: str
    ns: str
    tunnel_ip: str
    mac: str
    server: object = None


@dataclass
class Topology:
    lab: Lab
    ovs: PrivateOVS
    workdir: Path
    config: Path
    client_ns: str
    router_ns: str
    underlay_bridge: str
    gateways: list[GatewayHandle] = field(default_factory=list)
    vms: list[VmHandle] = field(default_factory=list)

    def start_controller(self, gateway: GatewayHandle) -> None:
        log = self.workdir / f"{gateway.name}.log"
        gateway.process = self.lab.spawn(
            [
                str(BIN / "lockstep-gateway"),
                "--config",
                str(self.config),
                "--gateway",
                gateway.name,
            ],
            log=log,
        )
        wait_for(
            lambda: listening(gateway.openflow_port), 20, f"{gateway.name} controller to listen"
        )

    def wait_pipeline(self, gateway: GatewayHandle, timeout: float = 20) -> None:
        """Until the controller has installed the VIP punt rule in the switch."""

        def ready():
            flows = self.ovs.ofctl("dump-flows", gateway.bridge)
            return "priority=100" in flows and "CONTROLLER" in flows

        wait_for(ready, timeout, f"{gateway.name} pipeline")

    def _http_client(self, path, source_port=0, pause=0.0, chunk=65536, timeout=5.0, output="text"):
        args = [path, source_port, pause, chunk, timeout, output]
        argv = [sys.executable, "-c", HTTP_CLIENT, *map(str, args)]
        return ["ip", "netns", "exec", self.client_ns, *argv]

    def http_get(self, path: str = "/", source_port: int = 0) -> str:
        """One request from the client to the VIP; the whole response as text."""
        return sh(*self._http_client(path, source_port))

    def start_download(self, size: int, pause: float, chunk: int, source_port: int = 0):
        """A slow download of ``size`` bytes in the background, read ``chunk`` bytes at a time
        with ``pause`` seconds between reads (from ``source_port``, or one the kernel picks, so
        a test can place it on a VM of its choice); ``communicate()`` gives 'LENGTH SHA256'."""
        argv = self._http_client(f"/bytes/{size}", source_port, pause, chunk, 20.0, "digest")
        return self.lab.spawn_capture(argv)

    def connect_many(
        self, first_port: int, count: int, mode: str = "http", ipv6: bool = False
    ) -> dict[int, str]:
        """``count`` connections from consecutive source ports, one client process: in
        ``http`` mode each gets the serving VM's name (or ``error:...``), in ``connect`` mode
        each is opened and reset at once (``ok``).  No TIME_WAIT is left on the client."""
        src, vip = (CLIENT6, VIP6) if ipv6 else (CLIENT, VIP)
        argv = [sys.executable, "-c", MANY_CLIENT, mode, str(first_port), str(count), src, vip]
        out = sh("ip", "netns", "exec", self.client_ns, *argv)
        return {
            int(port): result for port, result in (line.split(" ", 1) for line in out.splitlines())
        }

    def api(self, gateway: GatewayHandle, method: str, path: str, body=None, token=None):
        """One REST call to a gateway's controller: (status, decoded JSON or text)."""
        data = (
            None
            if body is None
            else (body if isinstance(body, bytes) else json.dumps(body).encode())
        )
        request = urllib.request.Request(
            f"http://127.0.0.1:{gateway.rest_port}{path}", data=data, method=method
        )
        if data is not None:
            request.add_header("Content-Type", "application/json")  # writes take JSON only
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        text = raw.decode()
        try:
            return status, json.loads(text) if text else None
        except json.JSONDecodeError:
            return status, text

    def healthy(self, gateway: GatewayHandle, vip: str = "web") -> set[str]:
        status, body = self.api(gateway, "GET", "/v1/health")
        assert status == 200, body
        return {row["backend"] for row in body["vips"][vip] if row["healthy"]}

    def wait_all_healthy(self, timeout: float = 15) -> None:
        everyone = {vm.name for vm in self.vms}
        for g in self.gateways:
            wait_for(lambda g=g: self.healthy(g) == everyone, timeout, f"{g.name}: all VMs up")

    def route_vip(self, *gateways: GatewayHandle) -> None:
        """Point the router's VIP route at these gateways (ECMP when several)."""
        for vip, prefix, address in ((VIP, "32", "address"), (VIP6, "128", "address6")):
            nexthops = []
            for g in gateways:
                nexthops += ["nexthop", "via", getattr(g, address), "dev", g.router_side]
            sh("ip", "route", "replace", f"{vip}/{prefix}", *nexthops, ns=self.router_ns)


HTTP_CLIENT = textwrap.dedent(
    f"""
    import hashlib, socket, sys, time
    path, source_port, pause, chunk, timeout, output = sys.argv[1:]
    source_port, pause, chunk, timeout = int(source_port), float(pause), int(chunk), float(timeout)
    s = socket.socket()
    s.settimeout(timeout)
    if source_port:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("{CLIENT}", source_port))
    s.connect(("{VIP}", {VIP_PORT}))
    s.sendall(b"GET %s HTTP/1.0\\r\\nHost: vip\\r\\n\\r\\n" % path.encode())
    data = b""
    while True:
        piece = s.recv(chunk)
        if not piece:
            break
        data += piece
        if pause:
            time.sleep(pause)
    if output == "digest":
        body = data.split(b"\\r\\n\\r\\n", 1)[1]
        print(len(body), hashlib.sha256(body).hexdigest())
    else:
        sys.stdout.write(data.decode(errors="replace"))
    """
)


MANY_CLIENT = textwrap.dedent(
    f"""
    import socket, struct, sys
    mode, first, count, src, vip = sys.argv[1:]
    first, count = int(first), int(count)
    for port in range(first, first + count):
        s = socket.socket(socket.AF_INET6 if ":" in vip else socket.AF_INET)
        s.settimeout(3.0)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        try:
            s.bind((src, port))
            s.connect((vip, {VIP_PORT}))
            if mode == "http":
                s.sendall(b"GET / HTTP/1.0\\r\\nHost: vip\\r\\n\\r\\n")
                data = b""
                while piece := s.recv(4096):
                    data += piece
                result = data.rsplit(b"\\r\\n\\r\\n", 1)[-1].decode().strip() or "error:empty"
            else:
                result = "ok"
        except OSError as error:
            result = f"error:{{type(error).__name__}}"
        finally:
            s.close()
        print(port, result, flush=True)
    """
)


VM_SERVER = textwrap.dedent(
    """
    import http.server, socket, socketserver, sys
    NAME = sys.argv[1]
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.startswith("/bytes/"):
                size = int(self.path.split("/")[2])
                self.send_response(200)
                self.send_header("Content-Length", str(size))
                self.end_headers()
                block = bytes(range(256)) * 256
                while size:
                    chunk = block[: min(size, len(block))]
                    self.wfile.write(chunk)
                    size -= len(chunk)
                return
            body = NAME.encode() + b"\\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *args):
            pass
    class Server(socketserver.ThreadingTCPServer):
        address_family = socket.AF_INET6  # and IPv4, as mapped addresses
        allow_reuse_address = True
        def server_bind(self):
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            super().server_bind()
    Server(("::", 80), Handler).serve_forever()
    """
)


def write_config(topo: Topology, vm_specs, gateway_specs) -> None:
    backends = "\n".join(
        f"      - {{name: {vm.name}, tunnel_ip: {vm.tunnel_ip}, mac: '{vm.mac}'}}"
        for vm in vm_specs
    )
    gateways = "\n".join(
        textwrap.dedent(
            f"""\
              - name: {g.name}
                dpid: {g.dpid}
                addresses: [{g.address}, "{g.address6}"]
                uplink_port: {g.uplink}
                tunnel_port: {g.tunnel}
                tunnel_ip: {g.tunnel_ip}
                openflow: 127.0.0.1:{g.openflow_port}
                rest: 127.0.0.1:{g.rest_port}
                state_file: {topo.workdir / (g.name + ".state.json")}
            """
        )
        for g in gateway_specs
    )
    topo.config.write_text(
        textwrap.dedent(
            """\
            vips:
              - name: web
                address: {vip}
                port: {port}
                vni: {vni}
                health: {{type: tcp, interval: 0.5, timeout: 0.25, rise: 2, fall: 2}}
                backends:
            {backends}
              - name: web6
                address: "{vip6}"
                port: {port}
                vni: {vni}
                health: {{type: http, path: /, interval: 0.5, timeout: 0.25, rise: 2, fall: 2}}
                backends:
            {backends}
            gateways:
            {gateways}
            clients:
              - {{name: client, address: {client}}}
            router: {{name: router, client_subnet: 10.1.0.0/24, uplink_subnet: 10.0.1.0/24,
                     address: {router_ul}}}
            underlay: {{subnet: {underlay}}}
            """
        ).format(
            vip=VIP,
            vip6=VIP6,
            port=VIP_PORT,
            vni=VNI,
            backends=backends,
            gateways=gateways,
            client=CLIENT,
            router_ul=ROUTER_UNDERLAY,
            underlay=UNDERLAY,
        )
    )


def build(workdir: Path, gateways: int = 2, vms: int = 3) -> Topology:
    prefix = f"l{os.getpid() % 10000:04d}"
    lab = Lab(prefix)
    ovs = PrivateOVS(workdir / "ovs")
    topo = Topology(lab, ovs, workdir, workdir / "deployment.yaml", "", "", lab.name("ul"))
    try:
        _build(topo, gateways, vms)
    except BaseException:
        teardown(topo)
        raise
    return topo


def _build(topo: Topology, gateway_count: int, vm_count: int) -> None:
    lab, ovs = topo.lab, topo.ovs
    ovs.start()
    topo.client_ns = lab.netns("c")
    topo.router_ns = lab.netns("r")
    r = topo.router_ns
    for key, value in (
        ("net.ipv4.ip_forward", "1"),
        ("net.ipv4.conf.all.rp_filter", "0"),
        ("net.ipv4.conf.default.rp_filter", "0"),
        ("net.ipv4.fib_multipath_hash_policy", "1"),
        ("net.ipv6.conf.all.forwarding", "1"),
        ("net.ipv6.fib_multipath_hash_policy", "1"),
    ):
        sh("sysctl", "-qw", f"{key}={value}", ns=r)
    # client <-> router
    lab.veth(lab.name("ce"), lab.name("rc"), topo.client_ns, r)
    sh("ip", "addr", "add", f"{CLIENT}/24", "dev", lab.name("ce"), ns=topo.client_ns)
    sh("ip", "route", "add", "default", "via", ROUTER_CLIENT_SIDE, ns=topo.client_ns)
    sh("ip", "addr", "add", f"{ROUTER_CLIENT_SIDE}/24", "dev", lab.name("rc"), ns=r)
    sh("ip", "-6", "addr", "add", f"{CLIENT6}/64", "dev", lab.name("ce"), ns=topo.client_ns)
    sh("ip", "-6", "route", "add", "default", "via", ROUTER_CLIENT_SIDE6, ns=topo.client_ns)
    sh("ip", "-6", "addr", "add", f"{ROUTER_CLIENT_SIDE6}/64", "dev", lab.name("rc"), ns=r)
    # underlay bridge with the gateways' tunnel addresses on its internal port
    ul = topo.underlay_bridge
    ovs.vsctl(
        "add-br", ul, "--", "set", "bridge", ul, "datapath_type=netdev", "fail_mode=standalone"
    )
    lab.root_links.append(ul)
    sh("ip", "link", "set", ul, "up")
    sh("ip", "link", "set", ul, "mtu", "1600")
    lab.veth(lab.name("ru"), lab.name("uru"), r, None)
    ovs.vsctl("add-port", ul, lab.name("uru"))
    sh("ip", "addr", "add", f"{ROUTER_UNDERLAY}/24", "dev", lab.name("ru"), ns=r)
    sh("ip", "-6", "addr", "add", f"{ROUTER_UNDERLAY6}/64", "dev", lab.name("ru"), ns=r)
    # VMs
    for index in range(1, vm_count + 1):
        vm = VmHandle(
            f"vm{index}",
            lab.netns(f"v{index}"),
            f"10.99.0.{10 + index}",
            f"02:00:00:00:01:{index:02x}",
        )
        lab.veth(lab.name(f"v{index}e"), lab.name(f"uv{index}"), vm.ns, None)
        ovs.vsctl("add-port", ul, lab.name(f"uv{index}"))
        eth = lab.name(f"v{index}e")
        for key, value in (
            ("net.ipv4.conf.all.arp_ignore", "1"),
            ("net.ipv4.conf.all.arp_announce", "2"),
            ("net.ipv4.conf.all.rp_filter", "0"),
            ("net.ipv4.conf.default.rp_filter", "0"),
        ):
            sh("sysctl", "-qw", f"{key}={value}", ns=vm.ns)
        sh("ip", "addr", "add", f"{vm.tunnel_ip}/24", "dev", eth, ns=vm.ns)
        sh("ip", "route", "add", "default", "via", ROUTER_UNDERLAY, ns=vm.ns)
        sh(
            "ip",
            "link",
            "add",
            "vx0",
            "type",
            "vxlan",
            "id",
            str(VNI),
            "dstport",
            "4789",
            "local",
            vm.tunnel_ip,
            "nolearning",
            ns=vm.ns,
        )
        sh("ip", "link", "set", "vx0", "address", vm.mac, "up", ns=vm.ns)
        sh("sysctl", "-qw", "net.ipv4.conf.vx0.rp_filter=0", ns=vm.ns)
        sh("ip", "addr", "add", f"{VIP}/32", "dev", "lo", ns=vm.ns)
        sh("ip", "-6", "addr", "add", f"fd00:99::{10 + index}/64", "dev", eth, ns=vm.ns)
        sh("ip", "-6", "route", "add", "default", "via", ROUTER_UNDERLAY6, ns=vm.ns)
        sh("ip", "-6", "addr", "add", f"{VIP6}/128", "dev", "lo", ns=vm.ns)
        vm.server = lab.spawn([sys.executable, "-c", VM_SERVER, vm.name], ns=vm.ns)
        mac = sh("cat", f"/sys/class/net/{eth}/address", ns=vm.ns).strip()
        ovs.appctl("tnl/neigh/set", ul, vm.tunnel_ip, mac)
        topo.vms.append(vm)
    # gateways
    for index in range(1, gateway_count + 1):
        g = GatewayHandle(
            name=f"gw{index}",
            dpid=index,
            address=f"10.0.1.{index}",
            address6=f"fd00:0:1::{index}",
            tunnel_ip=f"10.99.0.{index}",
            openflow_port=free_port(),
            rest_port=free_port(),
            bridge=lab.name(f"g{index}"),
            uplink=lab.name(f"g{index}u"),
            tunnel=lab.name(f"g{index}t"),
            router_side=lab.name(f"rg{index}"),
        )
        sh("ip", "addr", "add", f"{g.tunnel_ip}/24", "dev", ul)
        topo.gateways.append(g)
    write_config(topo, topo.vms, topo.gateways)
    for g in topo.gateways:
        topo.start_controller(g)
        ovs.vsctl(
            "add-br",
            g.bridge,
            "--",
            "set",
            "bridge",
            g.bridge,
            "datapath_type=netdev",
            "fail_mode=secure",
            "protocols=OpenFlow13",
            f"other-config:datapath-id={g.dpid:016x}",
        )
        lab.root_links.append(g.bridge)
        lab.veth(g.router_side, g.uplink, r, None)
        ovs.vsctl("add-port", g.bridge, g.uplink)
        ovs.vsctl(
            "add-port",
            g.bridge,
            g.tunnel,
            "--",
            "set",
            "interface",
            g.tunnel,
            "type=vxlan",
            "options:remote_ip=flow",
            f"options:local_ip={g.tunnel_ip}",
            "options:key=flow",
        )
        ovs.vsctl("set-controller", g.bridge, f"tcp:127.0.0.1:{g.openflow_port}")
        sh("ip", "addr", "add", f"{ROUTER_UPLINK}/32", "dev", g.router_side, ns=r)
        sh("ip", "route", "add", f"{g.address}/32", "dev", g.router_side, ns=r)
        sh("ip", "-6", "route", "add", f"{g.address6}/128", "dev", g.router_side, ns=r)
    topo.route_vip(*topo.gateways)
    for g in topo.gateways:
        topo.wait_pipeline(g)
    time.sleep(0.2)


@contextlib.contextmanager
def running(workdir: Path, gateways: int = 2, vms: int = 3, healthy: bool = True):
    """A lab built in ``workdir`` (with every VM healthy on every gateway first, if
    ``healthy``), torn down when the block ends: the body of a module's ``lab`` fixture."""
    built = build(workdir, gateways, vms)
    try:
        if healthy:
            built.wait_all_healthy()
        yield built
    finally:
        teardown(built)


def teardown(topo: Topology) -> None:
    try:
        topo.lab.close()
    finally:
        topo.ovs.stop()
