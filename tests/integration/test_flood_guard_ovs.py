"""The flood guard on a real Open vSwitch (userspace datapath): the switch says it has meters,
the controller installs them on the VIP punt and the probe answers, and a SYN flood from random
sources is cut down in the switch while every VM stays healthy and a client still connects."""

from __future__ import annotations

import re
import signal
import subprocess
import time

import pytest

from ryu_app.core.floodguard import GATEWAY_METER, PROBE_METER
from tests.integration import topo as topology
from tests.integration.topo import VIP, VIP_PORT


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with topology.running(tmp_path_factory.mktemp("lab"), gateways=1, vms=3) as built:
        built.route_vip(built.gateways[0])
        yield built


def status(lab) -> dict:
    code, body = lab.api(lab.gateways[0], "GET", "/v1/status")
    assert code == 200, body
    return body


def test_the_switch_gets_the_guards_meters_and_rules_that_use_them(lab):
    gateway = lab.gateways[0]
    assert status(lab)["flood_guard"]["mode"] == "switch"
    meters = lab.ovs.ofctl("dump-meters", gateway.bridge)
    rates = dict(re.findall(r"meter=(\d+) pktps .*?rate=(\d+)", meters, re.S))
    assert rates == {str(GATEWAY_METER): "3000", str(PROBE_METER): "200"}, meters
    flows = lab.ovs.ofctl("dump-flows", gateway.bridge)
    punt = [line for line in flows.splitlines() if "priority=100" in line]
    answers = [line for line in flows.splitlines() if "priority=150" in line]
    assert punt and all(f"meter:{GATEWAY_METER}" in line for line in punt), flows
    assert answers and all(f"meter:{PROBE_METER}" in line for line in answers), flows


def test_a_flood_is_dropped_in_the_switch_and_no_vm_is_blamed(lab):
    gateway = lab.gateways[0]
    everyone = {vm.name for vm in lab.vms}
    before = status(lab)["flood_guard"]["dropped_in_switch"]
    flood = subprocess.Popen(
        ["ip", "netns", "exec", lab.client_ns, "hping3", "-q", "-S", "--flood",
         "--rand-source", "-p", str(VIP_PORT), VIP],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    seen, connected = [], 0
    try:
        end = time.monotonic() + 6.0
        while time.monotonic() < end:
            seen.append(lab.healthy(gateway))
            connected += lab.connect_many(30000 + len(seen) * 10, 1, mode="connect") == {
                30000 + len(seen) * 10: "ok"
            }
            time.sleep(0.3)
    finally:
        flood.send_signal(signal.SIGINT)
        flood.wait(timeout=10)
    time.sleep(1.5)  # the next meter statistics poll
    after = status(lab)["flood_guard"]
    assert after["dropped_in_switch"] - before > 10_000, after
    assert after["probe_answers_dropped"] == 0, after
    assert all(healthy == everyone for healthy in seen), seen
    assert connected >= len(seen) * 0.8, (connected, len(seen))
