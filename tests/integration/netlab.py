"""A private network lab for integration tests: a private Open vSwitch (userspace datapath, own
run directory), network namespaces and veth pairs, all created with a unique prefix and all
removed again by ``close`` -- by name for what we created, by PID for what we started.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

OVS_SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"


def sh(*cmd: str, ns: str | None = None, check: bool = True, env=None) -> str:
    argv = (["ip", "netns", "exec", ns] if ns else []) + list(cmd)
    result = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}"
        )
    return result.stdout


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


class PrivateOVS:
    """ovsdb-server and ovs-vswitchd of our own, in ``rundir``."""

    def __init__(self, rundir: Path):
        self.rundir = Path(rundir)
        self.rundir.mkdir(parents=True, exist_ok=True)
        self.db = f"unix:{self.rundir}/db.sock"
        self.env = dict(
            os.environ,
            OVS_RUNDIR=str(self.rundir),
            OVS_DBDIR=str(self.rundir),
            OVS_LOGDIR=str(self.rundir),
        )
        self.pids: list[int] = []
        self._made_netdev_tap = False

    def start(self) -> PrivateOVS:
        d = self.rundir
        # The userspace datapath creates a tap named "ovs-netdev" and leaves it behind.
        self._made_netdev_tap = not Path("/sys/class/net/ovs-netdev").exists()
        sh("ovsdb-tool", "create", f"{d}/conf.db", OVS_SCHEMA, env=self.env)
        sh(
            "ovsdb-server",
            f"{d}/conf.db",
            f"--remote=punix:{d}/db.sock",
            f"--pidfile={d}/ovsdb-server.pid",
            f"--log-file={d}/ovsdb-server.log",
            "--detach",
            env=self.env,
        )
        self.pids.append(int((d / "ovsdb-server.pid").read_text()))
        self.vsctl("--no-wait", "init")
        sh(
            "ovs-vswitchd",
            self.db,
            f"--pidfile={d}/ovs-vswitchd.pid",
            f"--log-file={d}/ovs-vswitchd.log",
            "--detach",
            env=self.env,
        )
        self.pids.append(int((d / "ovs-vswitchd.pid").read_text()))
        return self

    def vsctl(self, *args: str) -> str:
        return sh("ovs-vsctl", f"--db={self.db}", "--timeout=10", *args, env=self.env)

    def ofctl(self, *args: str) -> str:
        return sh("ovs-ofctl", "-O", "OpenFlow13", *args, env=self.env)

    def appctl(self, *args: str) -> str:
        target = f"{self.rundir}/ovs-vswitchd.{self.pids[-1]}.ctl"
        return sh("ovs-appctl", "-t", target, *args, env=self.env)

    def stop(self) -> None:
        for pid in reversed(self.pids):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
        self.pids.clear()
        if self._made_netdev_tap:
            sh("ip", "link", "del", "ovs-netdev", check=False)


class Lab:
    """Namespaces, veths and processes created by one test run, cleaned up in ``close``."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.namespaces: list[str] = []
        self.root_links: list[str] = []
        self.processes: list[subprocess.Popen] = []

    def name(self, suffix: str) -> str:
        name = f"{self.prefix}{suffix}"
        if len(name) > 15:
            raise ValueError(f"interface name {name!r} is longer than 15 characters")
        return name

    def netns(self, suffix: str) -> str:
        ns = self.name(suffix)
        sh("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        sh("ip", "link", "set", "lo", "up", ns=ns)
        # IPv6 addresses usable at once: no duplicate address detection in a private lab.
        for scope in ("all", "default"):
            sh("sysctl", "-qw", f"net.ipv6.conf.{scope}.accept_dad=0", ns=ns)
        return ns

    def veth(self, a: str, b: str, ns_a: str | None = None, ns_b: str | None = None) -> None:
        """A veth pair a<->b, each end moved into its namespace (None: stays in the root), up,
        with TX checksum offload off (the userspace datapath drops TCP otherwise)."""
        sh("ip", "link", "add", a, "type", "veth", "peer", "name", b)
        for end, ns in ((a, ns_a), (b, ns_b)):
            if ns:
                sh("ip", "link", "set", end, "netns", ns)
            else:
                self.root_links.append(end)
            sh("ethtool", "-K", end, "tx", "off", ns=ns)
            sh("ip", "link", "set", end, "up", ns=ns)

    def spawn(
        self, argv: list[str], ns: str | None = None, log: Path | None = None, env=None
    ) -> subprocess.Popen:
        full = (["ip", "netns", "exec", ns] if ns else []) + argv
        out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - lives with the process
        process = subprocess.Popen(
            full, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        self.processes.append(process)
        return process

    def spawn_capture(self, argv: list[str]) -> subprocess.Popen:
        """A short-lived process whose output the test reads with ``communicate``."""
        process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        self.processes.append(process)
        return process

    def kill(self, process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
        if process.poll() is None:
            try:
                os.killpg(process.pid, sig)  # its own session: the process and its children only
            except ProcessLookupError:
                return
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)

    def close(self) -> None:
        for process in reversed(self.processes):
            self.kill(process)
        for link in self.root_links:
            sh("ip", "link", "del", link, check=False)
        for ns in reversed(self.namespaces):
            sh("ip", "netns", "del", ns, check=False)
