"""End to end on a real Open vSwitch: TCP through the gateways, the tunnel and DSR."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.integration import topo as topology
from tests.integration.topo import CLIENT, VIP, VIP_PORT


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    built = topology.build(tmp_path_factory.mktemp("lab"), gateways=2, vms=3)
    try:
        yield built
    finally:
        topology.teardown(built)


def predicted(lab, rows: list[tuple[int]]) -> list[str]:
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
