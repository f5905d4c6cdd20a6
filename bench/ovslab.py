"""The lab of ``bench/bench_ovs.py``: one gateway on a private Open vSwitch, its controller, a
client namespace on its uplink and the VMs behind VXLAN.  All it creates is recorded and
removed in ``Lab.close``, by name or by PID (``Lab.leftovers`` says what is still there).

    client ns: hping3 -> ce ==veth== gu  [gateway bridge g] -- vxlan port gt (tun_dst per flow)
                                               | OpenFlow           |
                                        lockstep-gateway     [underlay bridge ul, 10.99.0.1]
                                                               == uvN ==veth== vNe: VM ns, vx0
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lab.ovs import PrivateOVS, free_port, listening, sh, wait_for

VIP, VIP_PORT, VNI = "10.0.0.100", 80, 100
GATEWAY_ADDRESS, GATEWAY_MAC = "10.0.1.1", "02:00:00:00:00:01"
CLIENT_ADDRESS = "10.0.1.100"
TUNNEL_IP = "10.99.0.1"  # the gateway's tunnel endpoint, on the underlay bridge's internal port
VM_COUNT = 3
IDLE_TIMEOUT = 3600  # s: longer than any run (the schema's maximum is 4095)
START_TIMEOUT = 30.0


def run(command: str, **options) -> str:
    """``sh`` of a command written as one line (no argument holds a space)."""
    return sh(*command.split(), **options)


class Lab:
    """Namespaces, veths, bridges and processes of one run."""

    def __init__(self, workdir: Path):
        self.prefix = f"o{os.getpid() % 10000:04d}"  # + at most 4 characters: fits IFNAMSIZ
        self.workdir = workdir
        self.ovs = PrivateOVS(workdir / "ovs")
        self.namespaces: list[str] = []
        self.links: list[str] = []  # in the root namespace: veth ends, bridges' internal ports
        self.bridges: list[str] = []
        self.processes: list[subprocess.Popen] = []  # running
        self.pids: list[tuple[int, str]] = []  # (PID, name) of all started, for leftovers()

    def name(self, suffix: str) -> str:
        return f"{self.prefix}{suffix}"

    def netns(self, suffix: str) -> str:
        ns = self.name(suffix)
        sh("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        sh("ip", "link", "set", "lo", "up", ns=ns)
        sh("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", ns=ns)  # no stray RS/MLD
        return ns

    def veth(self, a: str, b: str, ns_a: str | None, ns_b: str | None) -> None:
        """a<->b, up, TX checksum offload off (the userspace datapath drops TCP otherwise)."""
        sh("ip", "link", "add", a, "type", "veth", "peer", "name", b)
        for end, ns in ((a, ns_a), (b, ns_b)):
            if ns:
                sh("ip", "link", "set", end, "netns", ns)
            else:
                self.links.append(end)
                sh("sysctl", "-qw", f"net.ipv6.conf.{end}.disable_ipv6=1")
            sh("ethtool", "-K", end, "tx", "off", ns=ns)
            sh("ip", "link", "set", end, "up", ns=ns)

    def bridge(self, name: str, *settings: str) -> None:
        self.bridges.append(name)
        self.links.append(name)
        self.ovs.vsctl(
            "add-br", name, "--", "set", "bridge", name, "datapath_type=netdev", *settings
        )

    def spawn(self, argv: list[str], ns: str | None = None, log: Path | None = None, env=None):
        """A process in a session of its own (killed as a group); ``ip netns exec`` execs the
        command, so the PID is the command's own.  ``env``: variables on top of ours."""
        full = (["ip", "netns", "exec", ns] if ns else []) + argv
        out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - lives with it
        process = subprocess.Popen(
            full,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **env} if env else None,
        )
        self.processes.append(process)
        self.pids.append((process.pid, Path(argv[0]).name[:15]))  # as /proc/PID/comm has it
        return process

    def kill(self, process: subprocess.Popen) -> None:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        with contextlib.suppress(ValueError):
            self.processes.remove(process)

    def close(self) -> None:
        for process in reversed(list(self.processes)):
            self.kill(process)
        self.pids += zip(self.ovs.pids, ("ovsdb-server", "ovs-vswitchd"), strict=True)
        if self.ovs.pids:
            for bridge in reversed(self.bridges):
                run(
                    f"ovs-vsctl --db={self.ovs.db} --timeout=10 --if-exists del-br {bridge}",
                    env=self.ovs.env,
                    check=False,
                )
        self.ovs.stop()
        for link in self.links:
            if Path(f"/sys/class/net/{link}").exists():
                sh("ip", "link", "del", link, check=False)
        for ns in reversed(self.namespaces):
            sh("ip", "netns", "del", ns, check=False)

    def leftovers(self) -> list[str]:
        """Anything of ours still there after close()."""
        found = [ns for ns in sh("ip", "netns", "list").split() if ns.startswith(self.prefix)]
        found += [link for link in os.listdir("/sys/class/net") if link.startswith(self.prefix)]
        return found + [f"{name} (PID {pid})" for pid, name in self.pids if alive(pid, name)]


def alive(pid: int, name: str) -> bool:
    """Whether process ``pid`` still runs ``name`` (not a new process with a reused PID)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == name
    except OSError:
        return False


def other_ovs() -> list[int]:
    """PIDs of ovs-vswitchd processes already running (two userspace ones fight over the
    ``ovs-netdev`` tap)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == "ovs-vswitchd":
                    found.append(int(entry.name))
    return found


@dataclass
class Gateway:
    """The one gateway and its surroundings, as the steps read them."""

    lab: Lab
    client_ns: str
    client_if: str
    bridge: str
    openflow_port: int
    rest_port: int
    controller: subprocess.Popen
    log: Path
    vms: dict[str, str] = field(default_factory=dict)  # VM name -> its namespace
    vm_links: dict[str, str] = field(default_factory=dict)  # VM name -> root end of its veth

    def check_controller(self) -> None:
        if self.controller.poll() is not None:
            raise RuntimeError(
                f"lockstep-gateway exited ({self.controller.returncode}):{tail(self.log)}"
            )


def deployment(lab: Lab, openflow_port: int, rest_port: int) -> dict:
    backends = [
        {"name": f"vm{i}", "tunnel_ip": f"10.99.0.{10 + i}", "mac": f"02:00:00:00:01:{i:02x}"}
        for i in range(1, VM_COUNT + 1)
    ]
    vip = {
        "name": "web",
        "address": VIP,
        "port": VIP_PORT,
        "vni": VNI,
        "idle_timeout": IDLE_TIMEOUT,
        # The VMs answer nothing: probe rarely and take 100 failures to go down, so the
        # backends stay up (their initial state) for the whole run.
        "health": {"type": "tcp", "interval": 3600, "timeout": 1, "rise": 1, "fall": 100},
        "backends": backends,
    }
    gateway = {
        "name": "gw1",
        "dpid": 1,
        "addresses": [GATEWAY_ADDRESS],
        "mac": GATEWAY_MAC,
        "uplink_port": lab.name("gu"),
        "tunnel_port": lab.name("gt"),
        "tunnel_ip": TUNNEL_IP,
        "openflow": f"127.0.0.1:{openflow_port}",
        "rest": f"127.0.0.1:{rest_port}",
        "state_file": str(lab.workdir / "gw1.state.json"),
        # The switch's own new-flow capacity is what bench_ovs measures: no flood guard
        # metering it (bench_flood puts the default guard back).
        "flood_guard": {"rate": 0},
    }
    return {"version": 1, "vips": [vip], "gateways": [gateway]}


def build(lab: Lab) -> Gateway:
    """The whole lab, in order: OVS, the underlay with the VMs, the client, the controller,
    then its switch (OVS backs off for seconds from a controller not yet listening)."""
    lab.ovs.start()
    vms, vm_links = add_underlay_and_vms(lab)
    client_ns, client_if = add_client(lab)
    gateway = start_controller(lab, client_ns, client_if, vms, vm_links)
    add_gateway_bridge(lab, gateway)
    return gateway


def add_underlay_and_vms(lab: Lab) -> tuple[dict[str, str], dict[str, str]]:
    """The underlay: a bridge whose internal port holds the gateway's tunnel endpoint, the VMs
    on veths to it, each with a kernel VXLAN device.  Returns each VM's namespace and the
    root end of its veth."""
    ovs = lab.ovs
    underlay = lab.name("ul")
    lab.bridge(underlay, "fail_mode=standalone")
    sh("ip", "link", "set", underlay, "mtu", "1600", "up")
    sh("ip", "addr", "add", f"{TUNNEL_IP}/24", "dev", underlay)
    vms, vm_links = {}, {}
    for i in range(1, VM_COUNT + 1):
        ns, eth, peer = lab.netns(f"v{i}"), lab.name(f"v{i}e"), lab.name(f"uv{i}")
        lab.veth(eth, peer, ns, None)
        ovs.vsctl("add-port", underlay, peer)
        tep = f"10.99.0.{10 + i}"
        sh("ip", "addr", "add", f"{tep}/24", "dev", eth, ns=ns)
        run(f"ip link add vx0 type vxlan id {VNI} dstport 4789 local {tep} nolearning", ns=ns)
        sh("ip", "link", "set", "vx0", "address", f"02:00:00:00:01:{i:02x}", "up", ns=ns)
        # OVS's tunnel neighbour table, seeded: else the first packet to each VM is dropped.
        mac = sh("cat", f"/sys/class/net/{eth}/address", ns=ns).strip()
        ovs.appctl("tnl/neigh/set", underlay, tep, mac)
        # ... and the underlay's MAC table (the VMs send nothing it could learn from): else
        # it floods every tunnelled SYN to every VM.
        ovs.appctl("fdb/add", underlay, peer, "0", mac)
        vms[f"vm{i}"], vm_links[f"vm{i}"] = ns, peer
    return vms, vm_links


def add_client(lab: Lab) -> tuple[str, str]:
    """The client, straight on the gateway's uplink: the VIP routed via the gateway's
    address, whose MAC is set statically (the switch would answer ARP for it too).  Returns
    its namespace and interface."""
    client_ns, client_if, uplink = lab.netns("c"), lab.name("ce"), lab.name("gu")
    lab.veth(client_if, uplink, client_ns, None)
    sh("ip", "addr", "add", f"{CLIENT_ADDRESS}/24", "dev", client_if, ns=client_ns)
    run(
        f"ip neigh replace {GATEWAY_ADDRESS} lladdr {GATEWAY_MAC} dev {client_if} nud permanent",
        ns=client_ns,
    )
    sh("ip", "route", "add", f"{VIP}/32", "via", GATEWAY_ADDRESS, ns=client_ns)
    return client_ns, client_if


def start_controller(
    lab: Lab, client_ns: str, client_if: str, vms: dict[str, str], vm_links: dict[str, str]
) -> Gateway:
    """``lockstep-gateway`` with the lab's deployment, once it listens for its switch."""
    openflow_port, rest_port = free_port(), free_port()
    config = lab.workdir / "deployment.yaml"
    config.write_text(yaml.safe_dump(deployment(lab, openflow_port, rest_port), sort_keys=False))
    launcher = Path(sys.executable).parent / "lockstep-gateway"
    command = [str(launcher)] if launcher.exists() else [sys.executable, "-m", "ryu_app"]
    command += ["--config", str(config), "--gateway", "gw1", "--log-level", "WARNING"]
    log = lab.workdir / "gw1.log"
    gateway = Gateway(
        lab,
        client_ns,
        client_if,
        lab.name("g"),
        openflow_port,
        rest_port,
        lab.spawn(command, log=log),
        log,
        vms,
        vm_links,
    )
    wait_for(
        lambda: listening(openflow_port) or gateway.controller.poll() is not None,
        START_TIMEOUT,
        "the controller to listen",
    )
    gateway.check_controller()
    return gateway


def add_gateway_bridge(lab: Lab, gateway: Gateway) -> None:
    """The gateway's bridge (secure fail mode: nothing passes without the controller), its
    uplink and VXLAN tunnel ports, its controller; back once the controller's pipeline is in."""
    ovs = lab.ovs
    bridge, tunnel = gateway.bridge, lab.name("gt")
    lab.bridge(
        bridge,
        "fail_mode=secure",
        "protocols=OpenFlow13",
        "other-config:datapath-id=0000000000000001",
    )
    ovs.vsctl("add-port", bridge, lab.name("gu"))
    ovs.vsctl(
        *f"add-port {bridge} {tunnel} -- set interface {tunnel} type=vxlan "
        f"options:remote_ip=flow options:local_ip={TUNNEL_IP} options:key=flow".split()
    )
    ovs.vsctl("set-controller", bridge, f"tcp:127.0.0.1:{gateway.openflow_port}")

    def pipeline_in() -> bool:
        gateway.check_controller()
        flows = ovs.ofctl("dump-flows", bridge)
        return "priority=100" in flows and "CONTROLLER" in flows

    wait_for(pipeline_in, START_TIMEOUT, "the controller's pipeline in the switch")


def tail(log: Path, lines: int = 15) -> str:
    text = log.read_text(errors="replace").splitlines()[-lines:] if log.exists() else []
    return "".join(f"\n    {line}" for line in text) or " (empty log)"


def log_problems(log: Path, words: tuple[str, ...]) -> list[str]:
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    return [line for line in lines if any(word in line for word in words)]
