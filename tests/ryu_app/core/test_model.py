"""The domain model: the facts about a VIP computed in one place (its service key, whether it is
probed, its detection bound) and the rules of one value (table sizes, check timings)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from ryu_app.core.flowkey import flow_from_fields
from ryu_app.core.model import (
    MAX_TABLE_SIZE,
    PROTO_TCP,
    PROTO_UDP,
    Backend,
    HealthCheck,
    ServiceKey,
    Vip,
    is_prime,
    policy_problem,
    service_key,
    table_size_problem,
)

ROOT = Path(__file__).resolve().parents[3]
WEB = Vip(
    "web", "10.0.0.100", 80, backends=(Backend("vm1", "192.168.100.11", "02:00:00:00:01:01"),)
)


def test_the_model_module_imports_nothing_of_lockstep_and_no_framework():
    """Run in a fresh interpreter: importing the model loads no other module of ours."""
    code = (
        "import sys, ryu_app.core.model; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('ryu_app', 'topology', 'os_ken', 'ryu', 'webob', 'yaml', 'networkx')))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "['ryu_app', 'ryu_app.core', 'ryu_app.core.model']"


def test_service_key_of_a_probed_tcp_vip():
    assert service_key(WEB) == ServiceKey(bytes([10, 0, 0, 100]), 80, PROTO_TCP, 80)


def test_service_key_takes_the_checks_own_port_and_none_for_static_backends():
    checked = dataclasses.replace(WEB, health=HealthCheck(port=8080))
    assert service_key(checked).check_port == 8080
    static = dataclasses.replace(WEB, health=HealthCheck(type="none", port=8080))
    assert service_key(static).check_port is None
    assert not static.probed and WEB.probed


def test_service_key_of_an_ipv6_udp_vip():
    dns = Vip("dns", "fd00:100::53", 53, protocol="udp", health=HealthCheck(port=53))
    assert service_key(dns) == ServiceKey(
        bytes.fromhex("fd000100000000000000000000000053"), 53, PROTO_UDP, 53
    )


def test_the_service_key_changes_exactly_when_the_vips_rules_must():
    """Same rules for any spelling of the address and for backend or timing changes; new
    rules for another address, port, protocol or check port."""
    same = [
        dataclasses.replace(WEB, backends=()),
        dataclasses.replace(WEB, health=HealthCheck(interval=5.0, path="/up")),
        dataclasses.replace(WEB, table_size=251, hash="src-ip", idle_timeout=10),
    ]
    assert {service_key(vip) for vip in same} == {service_key(WEB)}
    six = Vip("six", "fd00::0064", 80)
    assert service_key(six) == service_key(dataclasses.replace(six, address="fd00::64"))
    other = [
        dataclasses.replace(WEB, address="10.0.0.101"),
        dataclasses.replace(WEB, port=81),
        dataclasses.replace(WEB, protocol="udp", health=HealthCheck(port=80)),
        dataclasses.replace(WEB, health=HealthCheck(port=8080)),
        dataclasses.replace(WEB, health=HealthCheck(type="none")),
    ]
    assert len({service_key(vip) for vip in [WEB, *other]}) == 1 + len(other)


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_a_packet_to_the_vip_carries_its_destination(proto):
    vip = Vip("v", "10.0.0.100", 53, protocol=proto, health=HealthCheck(port=53))
    flow = flow_from_fields("10.1.0.11", 40000, "10.0.0.100", 53, proto)
    assert (flow.dst, flow.dst_port, flow.proto) == service_key(vip).destination


def test_worst_detection_time():
    assert HealthCheck(interval=2.0, timeout=1.0, fall=3).worst_detection_time == 7.0
    assert HealthCheck(interval=5, timeout=2, fall=2).worst_detection_time == 12


def test_primality():
    primes = [n for n in range(60) if is_prime(n)]
    assert primes == [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59]
    assert is_prime(65537) and is_prime(655373) and not is_prime(65535)


@pytest.mark.parametrize(
    ("size", "fragment"),
    [
        (65537, None),
        (7, None),
        (MAX_TABLE_SIZE, None),
        (65536, "must be prime"),
        (5, "at least 7"),
        (MAX_TABLE_SIZE + 2, "at most"),
        (65537.0, "integer"),
        (True, "integer"),
    ],
)
def test_table_size_problem(size, fragment):
    problem = table_size_problem(size)
    assert problem is None if fragment is None else fragment in problem


def test_the_default_check_has_valid_timings():
    check = HealthCheck()
    assert policy_problem(check.interval, check.timeout, check.rise, check.fall) is None
    assert "timeout" in policy_problem(1.0, 2.0, 3, 3)
