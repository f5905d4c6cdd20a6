"""A private Open vSwitch (ovsdb-server and ovs-vswitchd with their own run directory, userspace
datapath) and the small process helpers around it.  Shared by the integration tests and the
Mininet demo, which must never touch the machine's own OVS: every bridge, daemon and file of
ours lives and dies with one ``PrivateOVS``.

Mininet drives OVS through ``ovs-vsctl`` without a ``--db``: ``PrivateOVS.env`` (``OVS_RUNDIR``
and friends) points those commands at ours, so set it in ``os.environ`` before Mininet starts.
"""

from __future__ import annotations

import contextlib
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
            else:  # still there after 5 s
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.pids.clear()
        if self._made_netdev_tap:
            sh("ip", "link", "del", "ovs-netdev", check=False)
