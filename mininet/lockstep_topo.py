"""Lockstep's emulated deployment in Mininet, built from a deployment file.

Every address, route and command comes from ``topology.emulation.plan`` (tested without
Mininet); the node classes here only apply it:

- ``GatewaySwitch``: an OVS bridge on the userspace datapath (``fail_mode=secure``, OpenFlow
  1.3) with its VXLAN port, connected to its own ``lockstep-gateway`` process, which it starts
  first and waits for (one controller per gateway; Mininet's own controllers are ignored);
- ``Bridge``: a plain learning OVS bridge (userspace datapath) for the client LAN and the
  underlay; the underlay's internal port holds the gateways' tunnel addresses;
- ``PlannedHost``: router, clients and VMs configured from their plan (sysctls, addresses,
  routes, VXLAN device, VIPs on ``lo``); VMs run ``vmserver.py`` and ``iperf3 -s``.

Who places new flows (``mode``, the demo's ``--mode``): ``controller`` runs the deployment file
as it is; ``switch`` gives every VIP ``placement: port-bits`` and ``mode: switch`` on every
gateway; ``mixed`` gives every gateway the same port-bits placement (the mapping must be one
fleet-wide) and alternates the VIPs' mode, gateway 1 ``controller``, gateway 2 ``switch``, ...
(``gateway_modes``).  A VIP's mode is not in the config digest, so each gateway may start from
a file of its own that differs from the fleet's only in ``mode`` (``deployment-switch.yaml``).

The class also loads in Mininet's own ``mn``, from the repository root with the virtualenv's
``mn`` and Open vSwitch daemons running (``LOCKSTEP_CONFIG`` names the deployment file, default
the shipped example)::

    .venv/bin/mn --custom mininet/lockstep_topo.py --topo lockstep --controller none

Beware that ``mn`` answers any error with its own clean-up, which kills processes and deletes
links by name; the demo never uses ``mn`` for that reason, and neither do the tests.

Everything started is tracked by PID and stopped with its node; nothing is killed by name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mininet.node import Host, OVSBridge, OVSSwitch
from mininet.topo import Topo

from ryu_app.core.model import MODE_CONTROLLER, MODE_SWITCH, PLACEMENT_PORT_BITS, slot_table_size
from topology import deployment as deployment_file
from topology import emulation

try:
    HERE = Path(__file__).resolve().parent
except NameError:  # `mn --custom` executes this file's text without a __file__: run from the repo
    HERE = Path.cwd() / "mininet"
ROOT = HERE.parent
DEFAULT_CONFIG = ROOT / "topology" / "examples" / "default.yaml"
BIN = Path(sys.executable).parent
MIXED = "mixed"
MODES = (MODE_CONTROLLER, MODE_SWITCH, MIXED)  # the demo's --mode


def gateway_modes(names, mode: str) -> dict[str, str]:
    """Each gateway's VIP mode for the demo's ``mode``: ``mixed`` alternates from gateway 1 in
    controller mode, so that every pair of neighbours has one gateway of each."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if mode != MIXED:
        return {name: mode for name in names}
    return {name: (MODE_CONTROLLER, MODE_SWITCH)[i % 2] for i, name in enumerate(names)}


def placed_by_port_bits(deployment, vip_mode: str):
    """The deployment with every VIP placed by source-port bits and in ``vip_mode``; its table
    size derived from its backends (``slot_table_size``), as the file's loader derives it, so
    every gateway builds the same table."""
    vips = tuple(
        dataclasses.replace(
            vip,
            placement=PLACEMENT_PORT_BITS,
            mode=vip_mode,
            table_size=slot_table_size(len(vip.backends)),
        )
        for vip in deployment.vips
    )
    return dataclasses.replace(deployment, vips=vips)


def mode_configs(deployment, mode: str, log_dir: Path) -> tuple[Path, dict[str, Path]]:
    """Write the deployment file(s) for ``mode``: the fleet's (``deployment.yaml``, what
    ``lockstep lookup`` and ``status`` read: in ``mixed``, its VIPs in controller mode) and
    the path each gateway's controller starts with, by gateway name.  Each file is read back,
    so a rule the change breaks (a table size, switch mode's limits) fails here."""
    modes = gateway_modes([g.name for g in deployment.gateways], mode)
    fleet = log_dir / "deployment.yaml"
    if mode == MODE_CONTROLLER:
        _write_deployment(fleet, deployment)  # today's demo: the file as it is
        return fleet, dict.fromkeys(modes, fleet)
    files = {MODE_CONTROLLER if mode == MIXED else MODE_SWITCH: fleet}
    if mode == MIXED:
        files[MODE_SWITCH] = log_dir / "deployment-switch.yaml"
    for vip_mode, path in files.items():
        _write_deployment(path, placed_by_port_bits(deployment, vip_mode))
    return fleet, {gateway: files[vip_mode] for gateway, vip_mode in modes.items()}


def _write_deployment(path: Path, deployment) -> None:
    path.write_text(deployment_file.dump(deployment))
    deployment_file.load(path)  # raises ConfigError if the file breaks a rule


def _quiet(*argv: str) -> None:
    subprocess.run(argv, check=False, capture_output=True)


def _run(*argv: str) -> None:
    result = subprocess.run(argv, check=False, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"{' '.join(argv)}: {result.stderr.strip()}")


def _offload_off(interface: str, node=None) -> None:
    """TCP through the userspace datapath needs TX checksum offload off on every veth."""
    if node is None:
        _quiet("ethtool", "-K", interface, "tx", "off")
    else:
        node.cmd("ethtool", "-K", interface, "tx", "off")


class _Endpoint:
    """What OVSSwitch.start needs to know of a controller."""

    protocol = "tcp"

    def __init__(self, name: str, host: str, port: int):
        self.name, self._host, self.port = name, host, port

    def IP(self) -> str:  # noqa: N802 - Mininet's name
        return self._host


class GatewaySwitch(OVSSwitch):
    """A gateway bridge with its own controller process."""

    def __init__(
        self, name, gateway=None, config=None, log_dir=None, vip_mode=MODE_CONTROLLER, **params
    ):
        params.update(
            failMode="secure",
            datapath="user",
            protocols="OpenFlow13",
            dpid=f"{gateway.dpid:016x}",
            batch=False,  # start now, after its controller (Mininet would defer it)
        )
        super().__init__(name, **params)
        self.gateway = gateway
        self.config_path = str(config)  # in a mixed demo, its own (``mode_configs``)
        self.vip_mode = vip_mode  # its VIPs' mode: who places their new flows
        self.log_dir = Path(log_dir or tempfile.gettempdir())
        self.controller: subprocess.Popen | None = None

    def bridgeOpts(self) -> str:  # noqa: N802 - Mininet's name
        """The VXLAN port joins the bridge in the same transaction, so the controller sees
        every port in its first port description."""
        g = self.gateway
        return super().bridgeOpts() + (
            f" -- add-port {self} {g.tunnel_port} -- set interface {g.tunnel_port} type=vxlan"
            f" options:remote_ip=flow options:local_ip={g.tunnel_ip} options:key=flow"
        )

    def start(self, controllers):
        self.start_controller()
        host, port = self.gateway.openflow
        super().start([_Endpoint(f"{self.name}-ctl", host, port)])
        for intf in self.intfList():
            if intf.name != "lo":
                _offload_off(intf.name)

    def start_controller(self, timeout: float = 30.0) -> None:
        """Start this gateway's ``lockstep-gateway`` and wait until it listens.  Its port must
        be free first: another process listening there (another run on this machine) would
        take this switch, and the demo would judge a stranger's controller."""
        for host, port in (self.gateway.openflow, self.gateway.rest):
            with socket.socket() as probe:
                probe.settimeout(0.2)
                if probe.connect_ex((host, port)) == 0:
                    raise RuntimeError(f"{self.name}: {host}:{port} is taken by another process")
        log = open(self.log_dir / f"{self.name}.log", "ab")  # noqa: SIM115 - lives with it
        self.controller = subprocess.Popen(
            [
                str(BIN / "lockstep-gateway"),
                "--config",
                self.config_path,
                "--gateway",
                self.gateway.name,
                "--state-file",
                str(self.log_dir / f"{self.name}.state.json"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        host, port = self.gateway.openflow
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.controller.poll() is not None:
                raise RuntimeError(f"{self.name}: lockstep-gateway exited; see its log")
            with socket.socket() as probe:
                probe.settimeout(0.2)
                if probe.connect_ex((host, port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name}: lockstep-gateway did not listen on {host}:{port}")

    def kill_controller(self, sig: int = signal.SIGTERM) -> None:
        process, self.controller = self.controller, None
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, sig)
            process.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def stop(self, deleteIntfs=True):  # noqa: N803 - Mininet's name
        try:
            super().stop(deleteIntfs)
        finally:
            self.kill_controller()

    def terminate(self):
        """Mininet's net.stop() may delete the bridges in a batch and only terminate()s the
        switch objects: the controller must go here too."""
        try:
            self.kill_controller()
        finally:
            super().terminate()


class Bridge(OVSBridge):
    """A learning bridge on the userspace datapath; for the underlay, its internal port (root
    namespace) holds the gateways' tunnel addresses and OVS learns the VMs' MACs up front."""

    def __init__(self, name, addresses=(), neighbours=None, mtu=None, **params):
        params.update(datapath="user", batch=False)  # configured as soon as it exists
        super().__init__(name, **params)
        self.addresses = list(addresses)
        self.neighbours = dict(neighbours or {})
        self.mtu = mtu

    def start(self, controllers):
        super().start(controllers)
        for intf in self.intfList():
            if intf.name != "lo":
                _offload_off(intf.name)
                if self.mtu:
                    _quiet("ip", "link", "set", intf.name, "mtu", str(self.mtu))
        if self.addresses:
            # The internal port's device appears when ovs-vswitchd gets to it, not when
            # ovs-vsctl returns.
            device = Path("/sys/class/net") / self.name
            deadline = time.monotonic() + 10
            while not device.exists():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name}: the bridge's internal port never appeared")
                time.sleep(0.05)
            _run("ip", "link", "set", self.name, "up")
            if self.mtu:
                _run("ip", "link", "set", self.name, "mtu", str(self.mtu))
            for address in self.addresses:
                _run("ip", "addr", "add", address, "dev", self.name)
        for ip, mac in self.neighbours.items():
            # Without this the first packet to each VM is lost while OVS resolves it.
            _quiet("ovs-appctl", "tnl/neigh/set", self.name, ip, mac)


class PlannedHost(Host):
    """A host configured from its ``emulation.Host`` plan and its interfaces."""

    def __init__(self, name, planned=None, interfaces=(), log_dir=None, **params):
        super().__init__(name, **params)
        self.planned = planned
        self.interfaces = list(interfaces)
        self.log_dir = Path(log_dir or tempfile.gettempdir())
        self.servers: list[int] = []  # PIDs of what this host runs

    def config(self, **params):
        result = super().config(**params)
        for key, value in self.planned.sysctls.items():
            self.cmd("sysctl", "-qw", f"{key}={value}")
        for interface in self.interfaces:
            _offload_off(interface.name, self)
            if interface.mtu:
                self.cmd("ip", "link", "set", interface.name, "mtu", str(interface.mtu))
            for address in interface.addresses:
                self.cmd("ip", "addr", "add", address, "dev", interface.name)
        for command in self.planned.commands:
            self.cmd(*command)
        for route in self.planned.routes:
            self.cmd("ip", "route", "replace", *route)
        if self.planned.role == "vm":
            self.start_servers()
        return result

    def start_servers(self) -> None:
        log = self.log_dir / f"{self.name}.server.log"
        python = sys.executable
        self.servers.append(self.spawn(f"{python} {HERE / 'vmserver.py'} {self.name}", log))
        self.servers.append(self.spawn("iperf3 -s", log))

    def spawn(self, command: str, log: Path) -> int:
        """Run ``command`` in the background in this host; returns its PID."""
        output = self.cmd(f"{command} >>{log} 2>&1 & echo $!")
        return int(output.strip().splitlines()[-1])

    def kill(self, pid: int, sig: int = signal.SIGTERM) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)

    def stop_servers(self) -> None:
        for pid in self.servers:
            self.kill(pid)
        self.servers.clear()

    def terminate(self):
        self.stop_servers()
        super().terminate()


class LockstepTopo(Topo):
    """The emulation of a deployment (``config``, or the shipped example) scaled to the given
    counts, its VIPs in ``mode`` (``MODES``); ``log_dir`` receives controller logs, state
    files and the deployment files used."""

    def build(
        self, config=None, clients=None, gateways=None, vms=None, log_dir=None, mode=MODE_CONTROLLER
    ):
        log_dir = Path(log_dir or tempfile.mkdtemp(prefix="lockstep-"))
        log_dir.mkdir(parents=True, exist_ok=True)
        source = deployment_file.load(config or os.environ.get("LOCKSTEP_CONFIG", DEFAULT_CONFIG))
        deployment = emulation.scale(source, clients, gateways, vms)
        config_path, gateway_configs = mode_configs(deployment, mode, log_dir)
        self.mode, self.gateway_modes = mode, gateway_modes(gateway_configs, mode)
        self.plan = emulation.plan(deployment_file.load(config_path))  # the fleet's placement
        self.config_path, self.log_dir = config_path, log_dir
        interfaces: dict[str, list] = {}
        for link in self.plan.links:
            interfaces.setdefault(link.node1, []).append(link.intf1)
            interfaces.setdefault(link.node2, []).append(link.intf2)
        for switch in self.plan.switches.values():
            if switch.role == "gateway":
                self.addSwitch(
                    switch.name,
                    cls=GatewaySwitch,
                    gateway=switch.gateway,
                    config=gateway_configs[switch.name],
                    vip_mode=self.gateway_modes[switch.name],
                    log_dir=log_dir,
                )
            elif switch.name == emulation.UNDERLAY:
                self.addSwitch(
                    switch.name,
                    cls=Bridge,
                    addresses=self.plan.underlay_addresses,
                    neighbours=self.plan.tunnel_neighbours,
                    mtu=deployment.underlay.mtu,
                    dpid=f"{0xFFFF00:016x}",
                )
            else:
                self.addSwitch(switch.name, cls=Bridge, dpid=f"{0xFFFF01:016x}")
        for host in self.plan.hosts.values():
            self.addHost(
                host.name,
                cls=PlannedHost,
                planned=host,
                interfaces=interfaces.get(host.name, []),
                log_dir=log_dir,
                ip=None,
            )
        for link in self.plan.links:
            options = {"intfName1": link.intf1.name, "intfName2": link.intf2.name}
            if link.intf1.mac:
                options["addr1"] = link.intf1.mac
            if link.intf2.mac:
                options["addr2"] = link.intf2.mac
            self.addLink(link.node1, link.node2, **options)

    def switches(self, sort=True):
        """The bridges first: Mininet starts switches in this order, and a gateway's first
        probes must find the underlay (and its tunnel neighbours) already there."""
        names = super().switches(sort)
        return sorted(names, key=lambda n: self.nodeInfo(n).get("cls") is GatewaySwitch)


topos = {"lockstep": LockstepTopo}
