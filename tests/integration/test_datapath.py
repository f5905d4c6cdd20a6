"""End to end on a real Open vSwitch: TCP through the gateways, the tunnel and DSR."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time

import pytest

from tests.integration import topo as topology
from tests.integration.topo import CLIENT, VIP, VIP_PORT


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with topology.running(tmp_path_factory.mktemp("lab"), healthy=False) as built:
        yield built


def predicted(lab, rows: list[int]) -> list[str]:
    text = "".join(f"{CLIENT},{port},{VIP},{VIP_PORT},tcp\n" for port in rows)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ryu_app.cli",
            "lookup",
            "--config",
            str(lab.config),
            "--vip",
            "web",
        ],
        input=text,
        capture_output=True,
        text=True,
        check=True,
    )
    return [line.rsplit(",", 1)[1] for line in result.stdout.splitlines()]


def test_connections_reach_the_vm_that_lookup_predicts(lab):
    ports = list(range(41000, 41030))
    expected = predicted(lab, ports)
    served = []
    for port in ports:
        reply = lab.http_get(source_port=port)
        assert reply.startswith("HTTP/1.0 200"), reply
        served.append(reply.rsplit("\n", 2)[-2].strip())
    assert served == expected
    assert len(set(served)) > 1  # the flows really spread


def test_both_gateways_installed_rules_and_replies_bypass_them(lab):
    for port in range(42000, 42020):
        lab.http_get(source_port=port)
    per_gateway = []
    for gateway in lab.gateways:
        flows = lab.ovs.ofctl("dump-flows", gateway.bridge)
        per_gateway.append(sum("priority=200" in line for line in flows.splitlines()))
    assert all(count > 0 for count in per_gateway), per_gateway
    # Direct server return: nothing from the VMs ever enters a gateway bridge.
    for gateway in lab.gateways:
        stats = lab.ovs.ofctl("dump-ports", gateway.bridge, gateway.tunnel)
        assert "rx pkts=0" in stats, stats


MALFORMED_SENDER = """
import socket, sys
frames = [
    bytes(6 * [0xFF]) + bytes.fromhex("020000000bad") + b"\\x00\\x1a" + bytes(12),  # 802.3 length
    bytes.fromhex("020000000001020000000bad0800") + b"\\x45\\x00",  # IPv4 cut short
    bytes.fromhex("020000000001020000000bad86dd") + bytes(10),  # IPv6 cut short
]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
for _ in range(20):
    for frame in frames:
        s.send(frame.ljust(26, b"\\x00") if len(frame) < 26 else frame)
"""


def test_malformed_frames_cannot_stop_a_controller(lab):
    for gateway in lab.gateways:
        topology.sh(sys.executable, "-c", MALFORMED_SENDER, gateway.router_side, ns=lab.router_ns)
    for gateway in lab.gateways:
        miss = [
            line
            for line in lab.ovs.ofctl("dump-flows", gateway.bridge).splitlines()
            if "priority=0" in line
        ]
        assert miss and "n_packets=0," not in miss[0], miss  # they did reach the controller
        assert gateway.process.poll() is None
    # Every controller still places new connections.
    for port in range(43000, 43010):
        assert lab.http_get(source_port=port).startswith("HTTP/1.0 200")
    for gateway in lab.gateways:
        log = (lab.workdir / f"{gateway.name}.log").read_text()
        assert "Traceback" not in log, log


def rule_count(lab, gateway) -> int:
    flows = lab.ovs.ofctl("dump-flows", gateway.bridge)
    return sum("priority=200" in line for line in flows.splitlines())


def test_connection_survives_a_move_to_the_other_gateway(lab):
    size = 8_000_000
    block = bytes(range(256)) * 256
    expected = hashlib.sha256((block * (size // len(block) + 1))[:size]).hexdigest()
    first, second = lab.gateways[0], lab.gateways[1]
    lab.route_vip(first)
    try:
        # 8 MB read 16 KiB at a time with 2 ms pauses: seconds in flight.
        download = lab.start_download(size, pause=0.002, chunk=16384)
        topology.wait_for(
            lambda: "priority=200" in lab.ovs.ofctl("dump-flows", first.bridge), 5, "first rule"
        )
        time.sleep(0.5)
        rules_before = rule_count(lab, second)
        lab.route_vip(second)
        out, _ = download.communicate(timeout=60)
        assert out.split() == [str(size), expected]
        # The second gateway really carried the rest: a mid-connection packet-in, a new rule.
        assert rule_count(lab, second) == rules_before + 1
    finally:
        lab.route_vip(*lab.gateways)
