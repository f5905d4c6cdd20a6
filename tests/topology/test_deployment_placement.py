"""A VIP's placement (issue 14, docs/switch-mode.md) in the deployment file and a REST body: the
one validator's rules for port-bits, its table size, and the round trip."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from ryu_app.core.model import DEFAULT_TABLE_SIZE
from topology import deployment as dep
from topology.schema import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "topology" / "examples" / "default.yaml"
_EXAMPLE_DATA = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))


@pytest.fixture
def raw() -> dict:
    data = copy.deepcopy(_EXAMPLE_DATA)
    data["vips"][0].update(placement="port-bits", table_size=4096)
    return data


def problems_of(data) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as caught:
        dep.parse(data)
    return [(p.path, p.reason) for p in caught.value.problems]


def backends(count: int) -> list[dict]:
    return [
        {"name": f"b{i}", "tunnel_ip": f"192.168.{100 + i // 200}.{i % 200 + 20}", "mac": mac(i)}
        for i in range(count)
    ]


def mac(i: int) -> str:
    return f"02:00:00:00:{i // 256:02x}:{i % 256:02x}"


def test_hash_is_the_default_and_the_example_is_unchanged():
    vip = dep.parse(_EXAMPLE_DATA).vips[0]
    assert vip.placement == "hash" and vip.table_size == DEFAULT_TABLE_SIZE


def test_a_port_bits_vip_is_accepted_and_round_trips(raw):
    deployment = dep.parse(raw)
    vip = deployment.vips[0]
    assert vip.placement == "port-bits" and vip.table_size == 4096
    assert dep.parse_text(dep.dump(deployment)) == deployment
    assert dep.parse_vip(dep.vip_to_data(vip)) == vip


@pytest.mark.parametrize(
    "count, size", [(0, 256), (1, 256), (4, 256), (8, 256), (9, 512), (100, 4096), (200, 4096)]
)
def test_a_port_bits_table_size_left_out_is_32_slots_per_backend_in_256_to_4096(raw, count, size):
    """k = clamp(ceil(log2(backends)) + 5, 8, 12): docs/switch-mode.md's rule, fixed at parse
    time and kept in the VIP (the state file and the digest then hold it)."""
    vip = raw["vips"][0]
    del vip["table_size"]
    vip["backends"] = backends(count)
    raw.pop("underlay", None)  # 200 VMs need no reachable underlay for this rule
    assert dep.parse(raw).vips[0].table_size == size


def test_a_hash_table_size_left_out_is_still_the_default(raw):
    raw["vips"][0].update(placement="hash")
    del raw["vips"][0]["table_size"]
    assert dep.parse(raw).vips[0].table_size == DEFAULT_TABLE_SIZE


@pytest.mark.parametrize("size", [65537, 4099, 128, 8192, 1000])
def test_port_bits_needs_a_power_of_two_from_256_to_4096(raw, size):
    raw["vips"][0]["table_size"] = size
    ((path, reason),) = problems_of(raw)
    assert path == "vips[0].table_size"
    if size in (65537, 4099, 128, 8192):
        assert "power of two 2**8..2**12 (256..4096) with placement port-bits" in reason
    else:
        assert reason == (
            "must be prime, got 1000 (e.g. 251, 4099, 65537, 655373); "
            "with placement port-bits, a power of two 256..4096"
        )


def test_hash_refuses_a_power_of_two(raw):
    raw["vips"][0]["placement"] = "hash"
    assert problems_of(raw) == [
        ("vips[0].table_size", "must be prime, got 4096 (e.g. 251, 4099, 65537, 655373)")
    ]


def test_port_bits_refuses_udp(raw):
    raw["vips"][0].update(protocol="udp", health={"type": "tcp", "port": 80})
    assert problems_of(raw) == [
        ("vips[0].placement", "port-bits places by TCP source port: it needs protocol tcp")
    ]


def test_port_bits_refuses_client_affinity(raw):
    raw["vips"][0]["hash"] = "src-ip"
    assert problems_of(raw) == [
        ("vips[0].placement", "port-bits places by source port: it needs hash 5-tuple")
    ]


def test_port_bits_is_ipv4_only(raw):
    raw["vips"][0]["address"] = "fd00::100"
    raw["gateways"][0]["addresses"].append("fd00:1::1")
    raw["gateways"][1]["addresses"].append("fd00:1::2")
    paths = problems_of(raw)
    assert ("vips[0].placement", "port-bits is IPv4-only in this release") in paths


def test_port_bits_needs_16_slots_per_backend(raw):
    raw["vips"][0].update(table_size=256, backends=backends(17))
    raw.pop("underlay", None)
    assert problems_of(raw) == [
        (
            "vips[0].table_size",
            "256 slots for 17 backends: port-bits needs 16 x backends = 272 or more "
            "(at most 4096, so 256 backends)",
        )
    ]


def test_under_32_slots_per_backend_is_a_warning(raw):
    raw["vips"][0].update(table_size=256, backends=backends(9))
    raw.pop("underlay", None)
    (warning,) = dep.deployment_warnings(dep.parse(raw))
    assert warning.path == "vips[0].table_size" and "32 x 9 backends = 288" in warning.reason
    raw["vips"][0]["table_size"] = 512
    assert dep.deployment_warnings(dep.parse(raw)) == []


def test_a_rest_body_gets_the_same_rules():
    body = {"name": "a", "address": "10.0.0.1", "port": 53, "protocol": "udp"}
    body.update(placement="port-bits", health={"port": 80})
    with pytest.raises(ConfigError) as caught:
        dep.parse_vip(body, "v")
    assert [p.path for p in caught.value.problems] == ["v.placement"]
    with pytest.raises(ConfigError):
        dep.parse_vip({**body, "placement": "round-robin"}, "v")
