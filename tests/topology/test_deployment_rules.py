"""Rules of issue 11 in the deployment file: addresses and MACs a host can have, table sizes,
names without a trailing newline, listeners compared per machine, and the balance warning."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from ryu_app.core.model import MAX_TABLE_SIZE
from topology import deployment as dep
from topology.schema import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "topology" / "examples" / "default.yaml"
_EXAMPLE_DATA = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))


@pytest.fixture
def raw() -> dict:
    return copy.deepcopy(_EXAMPLE_DATA)


def paths_of(data) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        dep.parse(data)
    return [p.path for p in caught.value.problems]


def backends(count: int) -> list[dict]:
    return [
        {"name": f"b{i}", "tunnel_ip": f"192.168.100.{i + 101}", "mac": f"02:00:00:00:02:{i:02x}"}
        for i in range(count)
    ]


# ---- finding 8: what a host or a VIP can be ---------------------------------------------------


@pytest.mark.parametrize(
    ("where", "value", "path"),
    [
        (("vips", 0, "backends", 0, "tunnel_ip"), "127.0.0.1", "vips[0].backends[0].tunnel_ip"),
        (("vips", 0, "backends", 0, "tunnel_ip"), "0.0.0.0", "vips[0].backends[0].tunnel_ip"),
        (("gateways", 0, "tunnel_ip"), "127.0.0.1", "gateways[0].tunnel_ip"),
        (("vips", 0, "address"), "255.255.255.255", "vips[0].address"),
        (("vips", 0, "address"), "224.0.0.1", "vips[0].address"),
        (("vips", 0, "address"), "0.0.0.0", "vips[0].address"),
        (("vips", 0, "backends", 0, "mac"), "00:00:00:00:00:00", "vips[0].backends[0].mac"),
        (("gateways", 1, "mac"), "00:00:00:00:00:00", "gateways[1].mac"),
        (("gateways", 1, "addresses", 0), "10.0.1.255\n", "gateways[1].addresses[0]"),
        (("clients", 0, "address"), "127.0.0.1", "clients[0].address"),
        (("vips", 0, "name"), "web\n", "vips[0].name"),
        (("vips", 0, "backends", 0, "name"), "vm1\n", "vips[0].backends[0].name"),
        (("vips", 0, "backends", 0, "mac"), "02:00:00:00:01:01\n", "vips[0].backends[0].mac"),
    ],
)
def test_values_no_host_can_have_are_refused_naming_the_key(raw, where, value, path):
    node = raw
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    assert path in paths_of(raw)


def test_a_table_smaller_than_its_backends_is_refused(raw):
    raw["vips"][0].update(table_size=7, backends=backends(20))
    with pytest.raises(ConfigError) as caught:
        dep.parse(raw)
    (problem,) = [p for p in caught.value.problems if p.path == "vips[0].table_size"]
    assert "less than the number of backends (20)" in problem.reason


def test_a_table_as_large_as_its_backends_is_accepted(raw):
    raw["vips"][0].update(table_size=7, backends=backends(7))
    assert dep.parse(raw).vips[0].table_size == 7


@pytest.mark.parametrize("size", [16_777_259, MAX_TABLE_SIZE + 2])
def test_table_size_has_an_upper_bound(raw, size):
    raw["vips"][0]["table_size"] = size
    with pytest.raises(ConfigError) as caught:
        dep.parse(raw)
    assert [(p.path, p.reason) for p in caught.value.problems] == [
        ("vips[0].table_size", f"must be at most {MAX_TABLE_SIZE}, got {size}")
    ]


def test_the_largest_table_is_accepted(raw):
    raw["vips"][0]["table_size"] = MAX_TABLE_SIZE
    assert dep.parse(raw).vips[0].table_size == 655_373


# ---- the balance warning (lockstep check) -----------------------------------------------------


def test_a_table_under_100_times_its_backends_is_a_warning_not_a_problem(raw):
    raw["vips"][0].update(table_size=251, backends=backends(3))
    deployment = dep.parse(raw)  # valid
    (warning,) = dep.deployment_warnings(deployment)
    assert warning.path == "vips[0].table_size" and "100 x 3 backends = 300" in warning.reason
    raw["vips"][0]["table_size"] = 307
    assert dep.deployment_warnings(dep.parse(raw)) == []


def test_the_example_has_no_warning():
    assert dep.deployment_warnings(dep.load(EXAMPLE)) == []


# ---- listeners per machine (the notes' open end; issue 11) ------------------------------------


def test_the_same_listener_on_gateways_of_different_hosts_is_accepted(raw):
    for index, gateway in enumerate(raw["gateways"]):
        gateway.update(host=f"gw-host-{index}", openflow="127.0.0.1:6653", rest="0.0.0.0:8081")
    deployment = dep.parse(raw)
    assert [g.host for g in deployment.gateways] == ["gw-host-0", "gw-host-1"]
    assert dep.parse_text(dep.dump(deployment)) == deployment  # host survives a round trip


def test_the_same_listener_on_one_host_is_refused(raw):
    for gateway in raw["gateways"]:
        gateway.update(host="shared", openflow="127.0.0.1:6653")
    with pytest.raises(ConfigError) as caught:
        dep.parse(raw)
    assert [(p.path, p.reason) for p in caught.value.problems] == [
        (
            "gateways[1].openflow",
            "duplicate listen address '127.0.0.1:6653' (also gateways[0].openflow) "
            "on host 'shared'",
        )
    ]


def test_gateways_without_a_host_share_one_machine(raw):
    raw["gateways"][1]["openflow"] = "127.0.0.1:6653"
    assert paths_of(raw) == ["gateways[1].openflow"]
    raw["gateways"][1]["host"] = "elsewhere"  # now gw1 (no host) and gw2 differ
    assert dep.parse(raw).gateway("gw2").openflow == ("127.0.0.1", 6653)


@pytest.mark.parametrize(
    ("first", "second", "clash"),
    [
        ("0.0.0.0:8081", "10.0.0.5:8081", True),
        ("10.0.0.5:8081", "0.0.0.0:8081", True),
        ("[::]:8081", "127.0.0.1:8081", True),  # Linux binds :: for IPv4 too by default
        ("0.0.0.0:8081", "[::1]:8081", False),
        ("0.0.0.0:8081", "0.0.0.0:8082", False),
        ("10.0.0.5:8081", "10.0.0.6:8081", False),
    ],
)
def test_a_wildcard_listener_clashes_with_any_address_of_its_port(raw, first, second, clash):
    raw["gateways"][0]["rest"] = first
    raw["gateways"][1]["rest"] = second
    if clash:
        assert paths_of(raw) == ["gateways[1].rest"]
    else:
        dep.parse(raw)


def test_a_gateways_own_listeners_may_not_clash(raw):
    raw["gateways"][0].update(host="a", openflow="0.0.0.0:7000", rest="127.0.0.1:7000")
    raw["gateways"][1]["host"] = "b"
    assert paths_of(raw) == ["gateways[0].rest"]
