"""A private network lab for integration tests: a private Open vSwitch (userspace datapath, own
run directory), network namespaces and veth pairs, all created with a unique prefix and all
removed again by ``close`` -- by name for what we created, by PID for what we started.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from lab.ovs import PrivateOVS, free_port, listening, sh, wait_for

__all__ = ["Lab", "PrivateOVS", "free_port", "listening", "sh", "wait_for"]


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
