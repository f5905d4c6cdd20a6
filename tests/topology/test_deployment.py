"""The deployment file: the shipped example, defaults, and every class of validation problem.

Each problem test asserts the exact key path and a fragment of the reason, so a change that
reports the right problem at the wrong place (or the wrong problem at the right place) fails.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest
import yaml

from ryu_app.core.model import Backend, HealthCheck
from topology import deployment as dep
from topology.graph import build_graph
from topology.network import Client, Router, Underlay
from topology.schema import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "topology" / "examples" / "default.yaml"


# ---- helpers -------------------------------------------------------------------------------------


@pytest.fixture
def raw() -> dict:
    """The example file as plain data, freshly copied for each test to mutate."""
    return copy.deepcopy(_EXAMPLE_DATA)


_EXAMPLE_DATA = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))


def problems_of(data) -> list[tuple[str, str]]:
    """(path, reason) of every problem ``parse`` reports; fails if it accepts the data."""
    with pytest.raises(ConfigError) as caught:
        dep.parse(data)
    return [(p.path, p.reason) for p in caught.value.problems]


def has(problems: list[tuple[str, str]], path: str, fragment: str) -> bool:
    return any(p == path and fragment in reason for p, reason in problems)


def assert_problem(problems: list[tuple[str, str]], path: str, fragment: str) -> None:
    assert has(problems, path, fragment), f"no problem at {path!r} with {fragment!r}: {problems}"


def backend(name: str, tunnel_ip: str, mac: str, **extra) -> dict:
    return {"name": name, "tunnel_ip": tunnel_ip, "mac": mac, **extra}


def minimal_vip(**extra) -> dict:
    return {"name": "svc", "address": "10.0.0.200", "port": 53, **extra}


# ---- the shipped example -------------------------------------------------------------------------


def test_example_loads_with_expected_values():
    deployment = dep.load(EXAMPLE)
    assert len(deployment.vips) == 1
    assert len(deployment.gateways) == 2
    assert len(deployment.clients) == 2

    web = deployment.vip("web")
    assert (web.address, web.port, web.protocol) == ("10.0.0.100", 80, "tcp")
    assert web.hash == "5-tuple"
    assert web.table_size == 65537
    assert web.idle_timeout == 60
    assert web.vni == 100
    assert web.ip_version == 4
    assert web.health == HealthCheck(
        type="http",
        port=None,
        path="/healthz",
        expect_status=200,
        interval=1.0,
        timeout=0.5,
        rise=2,
        fall=2,
    )
    assert [b.name for b in web.backends] == ["vm1", "vm2", "vm3", "vm4"]
    assert web.backend("vm3") == Backend("vm3", "192.168.100.13", "02:00:00:00:01:03", 1)
    assert web.backend("nope") is None
    assert all(b.weight == 1 for b in web.backends)

    gw1 = deployment.gateway("gw1")
    assert gw1.dpid == 1
    assert gw1.addresses == ("10.0.1.1",)
    assert gw1.tunnel_ip == "192.168.100.1"
    assert gw1.openflow == ("127.0.0.1", 6653)
    assert gw1.rest == ("127.0.0.1", 8081)
    assert gw1.uplink_port == "gw1-eth0"
    assert gw1.tunnel_port == "gw1-vxlan"
    assert gw1.mac == "02:00:00:00:00:01"
    assert gw1.state_file is None
    assert deployment.gateway("gw2").dpid == 2
    assert deployment.gateway("gw2").rest == ("127.0.0.1", 8082)

    assert deployment.clients == (Client("c1", "10.1.0.11"), Client("c2", "10.1.0.12"))
    assert deployment.router == Router(
        name="r1",
        client_subnet="10.1.0.0/24",
        uplink_subnet="10.0.1.0/24",
        address="192.168.100.254",
    )
    assert deployment.underlay == Underlay(subnet="192.168.100.0/24", mtu=1600)


def test_example_load_accepts_str_path_and_parse_text_matches():
    assert dep.load(str(EXAMPLE)) == dep.load(EXAMPLE)
    assert dep.parse_text(EXAMPLE.read_text(encoding="utf-8")) == dep.load(EXAMPLE)


def test_lookup_of_unknown_vip_or_gateway_names_the_known_ones():
    deployment = dep.load(EXAMPLE)
    with pytest.raises(KeyError, match="web"):
        deployment.vip("api")
    with pytest.raises(KeyError, match="gw1, gw2"):
        deployment.gateway("gw9")


def test_defaults_filled_in(raw):
    web = raw["vips"][0]
    for key in ("protocol", "hash", "table_size", "idle_timeout", "vni", "health"):
        del web[key]
    del web["backends"][0]["weight"]
    del raw["gateways"][0]["tunnel_port"]
    del raw["gateways"][0]["mac"]
    del raw["underlay"]["mtu"]
    raw["vips"].append(minimal_vip(protocol="udp", health={"port": 5353}))
    deployment = dep.parse(raw)

    web, svc = deployment.vips
    assert web.protocol == "tcp"
    assert web.hash == "5-tuple"
    assert web.table_size == 65537
    assert web.idle_timeout == 60
    assert web.vni == 100
    assert web.health == HealthCheck()
    assert web.health.type == "tcp"
    assert web.health.port is None
    assert web.health.path == "/"
    assert web.health.expect_status == 200
    assert web.health.interval == 2.0
    assert web.health.timeout == 1.0
    assert (web.health.rise, web.health.fall) == (3, 3)
    assert web.backends[0].weight == 1

    assert svc.protocol == "udp"
    assert svc.idle_timeout == 30
    assert svc.backends == ()

    gw1 = deployment.gateways[0]
    assert gw1.tunnel_port == "vxlan0"
    assert gw1.mac is None
    assert deployment.underlay.mtu == 1600


def test_udp_vip_keeps_an_explicit_idle_timeout(raw):
    raw["vips"].append(minimal_vip(protocol="udp", idle_timeout=120, health={"port": 5353}))
    assert dep.parse(raw).vips[1].idle_timeout == 120


def test_partial_health_section_gets_remaining_defaults(raw):
    raw["vips"][0]["health"] = {"type": "http", "path": "/up"}
    health = dep.parse(raw).vips[0].health
    assert health == HealthCheck(type="http", path="/up")


def test_optional_sections_may_be_left_out():
    data = {"gateways": copy.deepcopy(_EXAMPLE_DATA["gateways"])}
    deployment = dep.parse(data)
    assert deployment.vips == ()
    assert deployment.clients == ()
    assert deployment.router is None
    assert deployment.underlay is None


def test_values_are_normalised(raw):
    raw["vips"][0]["backends"][0]["mac"] = "02:AA:BB:CC:DD:EE"
    raw["gateways"][0]["dpid"] = "00:00:00:00:00:00:00:1f"
    raw["gateways"][1]["dpid"] = 42
    raw["vips"].append(minimal_vip(address="FD00:0::0064"))
    for index, gateway in enumerate(raw["gateways"]):
        gateway["addresses"].append(f"fd00:1::{index + 1}")
    deployment = dep.parse(raw)
    assert deployment.vips[0].backends[0].mac == "02:aa:bb:cc:dd:ee"
    assert deployment.gateways[0].dpid == 0x1F
    assert deployment.gateways[1].dpid == 42
    assert deployment.vips[1].address == "fd00::64"
    assert deployment.vips[1].ip_version == 6


def test_ipv6_endpoint(raw):
    raw["gateways"][0]["rest"] = "[::1]:8081"
    assert dep.parse(raw).gateways[0].rest == ("::1", 8081)


@pytest.mark.parametrize(
    ("path", "attribute", "value"),
    [
        ("deployment", "vips", ()),
        ("vip", "port", 81),
        ("backend", "weight", 5),
        ("health", "interval", 9.0),
        ("gateway", "dpid", 7),
        ("client", "address", "10.1.0.99"),
        ("router", "name", "other"),
        ("underlay", "mtu", 9000),
    ],
)
def test_dataclasses_are_frozen(path, attribute, value):
    deployment = dep.load(EXAMPLE)
    objects = {
        "deployment": deployment,
        "vip": deployment.vips[0],
        "backend": deployment.vips[0].backends[0],
        "health": deployment.vips[0].health,
        "gateway": deployment.gateways[0],
        "client": deployment.clients[0],
        "router": deployment.router,
        "underlay": deployment.underlay,
    }
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(objects[path], attribute, value)


def test_collections_in_the_model_are_tuples():
    deployment = dep.load(EXAMPLE)
    assert isinstance(deployment.vips, tuple)
    assert isinstance(deployment.gateways, tuple)
    assert isinstance(deployment.clients, tuple)
    assert isinstance(deployment.vips[0].backends, tuple)
    assert isinstance(deployment.gateways[0].addresses, tuple)


# ---- schema problems: one key at a time ----------------------------------------------------------


def test_unknown_top_level_key(raw):
    raw["colour"] = "blue"
    problems = problems_of(raw)
    assert_problem(problems, "colour", "unknown key")
    assert_problem(problems, "colour", "gateways")  # the known keys are listed


def test_unknown_key_in_vip(raw):
    raw["vips"][0]["weight"] = 3
    assert_problem(problems_of(raw), "vips[0].weight", "unknown key")


def test_unknown_key_in_backend(raw):
    raw["vips"][0]["backends"][2]["ip"] = "192.168.100.13"
    problems = problems_of(raw)
    assert_problem(problems, "vips[0].backends[2].ip", "unknown key")
    assert_problem(problems, "vips[0].backends[2].ip", "tunnel_ip")


def test_unknown_key_in_health(raw):
    raw["vips"][0]["health"]["retries"] = 3
    assert_problem(problems_of(raw), "vips[0].health.retries", "unknown key")


def test_unknown_key_in_gateway_router_underlay_client(raw):
    raw["gateways"][1]["vlan"] = 5
    raw["router"]["asn"] = 65000
    raw["underlay"]["vni"] = 1
    raw["clients"][0]["port"] = 1
    problems = problems_of(raw)
    assert_problem(problems, "gateways[1].vlan", "unknown key")
    assert_problem(problems, "router.asn", "unknown key")
    assert_problem(problems, "underlay.vni", "unknown key")
    assert_problem(problems, "clients[0].port", "unknown key")


def test_string_port(raw):
    raw["vips"][0]["port"] = "80"
    assert_problem(problems_of(raw), "vips[0].port", "must be an integer, got a string")


def test_bool_weight(raw):
    raw["vips"][0]["backends"][1]["weight"] = True
    assert_problem(problems_of(raw), "vips[0].backends[1].weight", "must be an integer")


def test_bool_port_in_health(raw):
    raw["vips"][0]["health"]["port"] = False
    assert_problem(problems_of(raw), "vips[0].health.port", "must be an integer")


def test_list_where_mapping_expected(raw):
    raw["vips"][0]["health"] = ["http"]
    assert_problem(problems_of(raw), "vips[0].health", "must be a mapping, got a list")


def test_backend_that_is_not_a_mapping(raw):
    raw["vips"][0]["backends"][0] = "vm1"
    assert_problem(problems_of(raw), "vips[0].backends[0]", "must be a mapping, got a string")


def test_mapping_where_list_expected(raw):
    raw["vips"][0]["backends"] = {"vm1": "192.168.100.11"}
    assert_problem(problems_of(raw), "vips[0].backends", "must be a list, got a mapping")


def test_addresses_must_be_a_list(raw):
    raw["gateways"][0]["addresses"] = "10.0.1.1"
    assert_problem(problems_of(raw), "gateways[0].addresses", "must be a list, got a string")


def test_whole_file_must_be_a_mapping():
    with pytest.raises(ConfigError) as caught:
        dep.parse_text("- just\n- a list\n")
    [problem] = caught.value.problems
    assert problem.path == ""
    assert "must be a mapping, got a list" in problem.reason


def test_empty_file_reports_missing_gateways():
    with pytest.raises(ConfigError) as caught:
        dep.parse_text("")
    assert [(p.path, p.reason) for p in caught.value.problems] == [("gateways", "is required")]


def test_empty_gateway_list(raw):
    raw["gateways"] = []
    assert_problem(problems_of(raw), "gateways", "needs at least 1")


def test_gateway_needs_at_least_one_address(raw):
    raw["gateways"][0]["addresses"] = []
    assert_problem(problems_of(raw), "gateways[0].addresses", "needs at least 1")


@pytest.mark.parametrize(
    ("section", "key", "path"),
    [
        ("vip", "name", "vips[0].name"),
        ("vip", "address", "vips[0].address"),
        ("vip", "port", "vips[0].port"),
        ("backend", "tunnel_ip", "vips[0].backends[0].tunnel_ip"),
        ("backend", "mac", "vips[0].backends[0].mac"),
        ("gateway", "dpid", "gateways[0].dpid"),
        ("gateway", "openflow", "gateways[0].openflow"),
        ("gateway", "rest", "gateways[0].rest"),
        ("gateway", "uplink_port", "gateways[0].uplink_port"),
        ("underlay", "subnet", "underlay.subnet"),
    ],
)
def test_missing_required_key(raw, section, key, path):
    target = {
        "vip": raw["vips"][0],
        "backend": raw["vips"][0]["backends"][0],
        "gateway": raw["gateways"][0],
        "underlay": raw["underlay"],
    }[section]
    del target[key]
    problems = problems_of(raw)
    assert (path, "is required") in problems


@pytest.mark.parametrize(
    ("where", "value", "path", "fragment"),
    [
        (("vips", 0, "port"), 0, "vips[0].port", "must be 1..65535, got 0"),
        (("vips", 0, "port"), 65536, "vips[0].port", "must be 1..65535, got 65536"),
        (("vips", 0, "vni"), 2**24, "vips[0].vni", "got 16777216"),
        (("vips", 0, "idle_timeout"), 0, "vips[0].idle_timeout", "must be 1..4095"),
        (("vips", 0, "idle_timeout"), 4096, "vips[0].idle_timeout", "must be 1..4095"),
        (("vips", 0, "backends", 0, "weight"), -1, "vips[0].backends[0].weight", "must be 0.."),
        (
            ("vips", 0, "backends", 0, "weight"),
            10_001,
            "vips[0].backends[0].weight",
            "must be 0..10000",
        ),
        (("vips", 0, "health", "rise"), 0, "vips[0].health.rise", "must be 1..100"),
        (("vips", 0, "health", "fall"), 101, "vips[0].health.fall", "must be 1..100"),
        (("vips", 0, "health", "interval"), 0.01, "vips[0].health.interval", "must be 0.05"),
        (("vips", 0, "health", "expect_status"), 99, "vips[0].health.expect_status", "100..599"),
        (("vips", 0, "health", "port"), 70000, "vips[0].health.port", "must be 1..65535"),
        (
            ("vips", 0, "health", "panic_threshold"),
            101,
            "vips[0].health.panic_threshold",
            "must be 0..100",
        ),
        (
            ("vips", 0, "health", "panic_threshold"),
            -1,
            "vips[0].health.panic_threshold",
            "must be 0..100",
        ),
        (("underlay", "mtu"), 1279, "underlay.mtu", "must be 1280..9000"),
        (("underlay", "mtu"), 9001, "underlay.mtu", "must be 1280..9000"),
    ],
)
def test_out_of_range_numbers(raw, where, value, path, fragment):
    target = raw
    for step in where[:-1]:
        target = target[step]
    target[where[-1]] = value
    assert_problem(problems_of(raw), path, fragment)


@pytest.mark.parametrize(
    ("where", "value", "path", "fragment"),
    [
        (("vips", 0, "protocol"), "sctp", "vips[0].protocol", "must be one of tcp, udp"),
        (("vips", 0, "hash"), "3-tuple", "vips[0].hash", "must be one of 5-tuple, src-ip"),
        (("vips", 0, "health", "type"), "icmp", "vips[0].health.type", "must be one of tcp, http"),
        (("vips", 0, "health", "path"), "healthz", "vips[0].health.path", "is not a URL path"),
        (("vips", 0, "health", "path"), "/h\u00e9alth", "vips[0].health.path", "is not a URL"),
        (("vips", 0, "health", "path"), "/a b", "vips[0].health.path", "no spaces"),
        (("vips", 0, "health", "path"), "/x\r\nX: y", "vips[0].health.path", "is not a URL"),
        (("vips", 0, "name"), "1web", "vips[0].name", "is not a name"),
        (("vips", 0, "name"), "web server", "vips[0].name", "is not a name"),
        (("gateways", 0, "uplink_port"), "x" * 16, "gateways[0].uplink_port", "at most 15"),
        (("gateways", 0, "uplink_port"), "", "gateways[0].uplink_port", "non-empty string"),
        (("router", "client_subnet"), "10.1.0.1/24", "router.client_subnet", "host bits zero"),
        (("underlay", "subnet"), "not-a-net", "underlay.subnet", "is not a network"),
        (("underlay", "subnet"), 24, "underlay.subnet", "is not a network"),
    ],
)
def test_bad_choices_names_and_text(raw, where, value, path, fragment):
    target = raw
    for step in where[:-1]:
        target = target[step]
    target[where[-1]] = value
    assert_problem(problems_of(raw), path, fragment)


@pytest.mark.parametrize("value", ["10.0.0.256", "10.0.0", "web.example.com", "010.0.0.1", 5, True])
def test_bad_ip_address(raw, value):
    raw["vips"][0]["address"] = value
    assert_problem(problems_of(raw), "vips[0].address", "is not an IPv4 or IPv6 address")


def test_bad_ip_in_backend_client_gateway_and_router(raw):
    raw["vips"][0]["backends"][3]["tunnel_ip"] = "192.168.100.300"
    raw["clients"][1]["address"] = "c2"
    raw["gateways"][1]["addresses"] = ["10.0.1.2", "nope"]
    raw["gateways"][0]["tunnel_ip"] = "::g"
    raw["router"]["address"] = "r1"
    problems = problems_of(raw)
    fragment = "is not an IPv4 or IPv6 address"
    assert_problem(problems, "vips[0].backends[3].tunnel_ip", fragment)
    assert_problem(problems, "clients[1].address", fragment)
    assert_problem(problems, "gateways[1].addresses[1]", fragment)
    assert_problem(problems, "gateways[0].tunnel_ip", fragment)
    assert_problem(problems, "router.address", fragment)


@pytest.mark.parametrize(
    "value", ["02:00:00:00:01", "02-00-00-00-01-01", "02:00:00:00:01:0g", "0200.0000.0101", 2]
)
def test_bad_mac(raw, value):
    raw["vips"][0]["backends"][0]["mac"] = value
    assert_problem(problems_of(raw), "vips[0].backends[0].mac", "is not a MAC address")


@pytest.mark.parametrize("value", ["01:00:5e:00:00:01", "ff:ff:ff:ff:ff:ff", "03:00:00:00:00:01"])
def test_multicast_mac(raw, value):
    raw["vips"][0]["backends"][0]["mac"] = value
    assert_problem(problems_of(raw), "vips[0].backends[0].mac", "multicast")


def test_multicast_gateway_mac(raw):
    raw["gateways"][0]["mac"] = "33:33:00:00:00:01"
    assert_problem(problems_of(raw), "gateways[0].mac", "multicast")


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("127.0.0.1", "is not 'ADDRESS:PORT'"),
        ("127.0.0.1:0", "port 1..65535"),
        ("127.0.0.1:65536", "port 1..65535"),
        ("127.0.0.1:http", "is not 'ADDRESS:PORT'"),
        ("localhost:6653", "is not an IPv4 or IPv6 address"),
        (6653, "must be 'ADDRESS:PORT'"),
    ],
)
def test_bad_endpoint(raw, value, fragment):
    raw["gateways"][0]["openflow"] = value
    assert_problem(problems_of(raw), "gateways[0].openflow", fragment)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (0, "must be 1..2**64-1"),
        (2**64, "must be 1..2**64-1"),
        (-1, "must be 1..2**64-1"),
        ("0xzz", "is not a datapath id"),
        ("gw1", "is not a datapath id"),
        (True, "is not a datapath id"),
        (1.5, "is not a datapath id"),
        ("00:00:00:00:00:00:00:00", "must be 1..2**64-1"),
    ],
)
def test_bad_dpid(raw, value, fragment):
    raw["gateways"][0]["dpid"] = value
    assert_problem(problems_of(raw), "gateways[0].dpid", fragment)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (65536, "must be prime, got 65536"),
        (4099 * 3, "must be prime"),
        (5, "must be at least 7, got 5"),
        (2, "must be at least 7"),
        ("65537", "must be an integer"),
        (65537.0, "must be an integer"),
        (True, "must be an integer"),
    ],
)
def test_bad_table_size(raw, value, fragment):
    raw["vips"][0]["table_size"] = value
    assert_problem(problems_of(raw), "vips[0].table_size", fragment)


@pytest.mark.parametrize("value", [7, 251, 4099])
def test_small_prime_table_sizes_are_accepted(raw, value):
    raw["vips"][0]["table_size"] = value
    assert dep.parse(raw).vips[0].table_size == value


def test_unsupported_version_is_reported_not_a_crash(raw):
    """BUG: schema.choice joins its options with ', '.join, which raises TypeError for the int
    option of ``version`` -- so ``version: 2`` crashes instead of being reported."""
    raw["version"] = 2
    assert_problem(problems_of(raw), "version", "must be one of 1")


# ---- several problems at once -------------------------------------------------------------------


def test_all_schema_problems_reported_at_once(raw):
    raw["colour"] = "blue"
    raw["vips"][0]["port"] = "80"
    raw["vips"][0]["backends"][1]["weight"] = True
    raw["vips"][0]["backends"][2]["mac"] = "01:00:00:00:00:01"
    del raw["vips"][0]["backends"][3]["tunnel_ip"]
    raw["gateways"][0]["dpid"] = 0
    raw["gateways"][1]["openflow"] = "127.0.0.1"
    raw["underlay"]["mtu"] = 100
    problems = problems_of(raw)
    assert_problem(problems, "colour", "unknown key")
    assert_problem(problems, "vips[0].port", "must be an integer")
    assert_problem(problems, "vips[0].backends[1].weight", "must be an integer")
    assert_problem(problems, "vips[0].backends[2].mac", "multicast")
    assert_problem(problems, "vips[0].backends[3].tunnel_ip", "is required")
    assert_problem(problems, "gateways[0].dpid", "must be 1..2**64-1")
    assert_problem(problems, "gateways[1].openflow", "is not 'ADDRESS:PORT'")
    assert_problem(problems, "underlay.mtu", "must be 1280..9000")
    assert len(problems) == 8


def test_all_cross_field_problems_reported_at_once(raw):
    web = raw["vips"][0]
    raw["vips"].append(copy.deepcopy(web))  # same name, address, port and protocol
    raw["gateways"][1]["dpid"] = 1
    raw["gateways"][1]["tunnel_ip"] = "192.168.100.1"
    raw["clients"][1]["address"] = "10.2.0.12"
    web["health"]["timeout"] = 5.0
    web["backends"][3]["tunnel_ip"] = "172.16.0.14"
    problems = problems_of(raw)
    assert_problem(problems, "vips[1].name", "duplicate VIP name 'web' (also vips[0].name)")
    assert_problem(problems, "vips[1].address", "duplicate VIP address, port and protocol")
    assert_problem(problems, "gateways[1].dpid", "duplicate datapath id 1")
    assert_problem(problems, "gateways[1].tunnel_ip", "duplicate tunnel_ip '192.168.100.1'")
    assert_problem(problems, "clients[1].address", "not in the router's client subnet")
    assert_problem(problems, "vips[0].health", "timeout (5.0) must not exceed interval (1.0)")
    assert_problem(problems, "vips[0].backends[3].tunnel_ip", "cannot be reached")
    assert_problem(problems, "vips[1].backends[3]", "differs from vips[0].backends[3]")


# ---- cross-field rules ---------------------------------------------------------------------------


def test_duplicate_vip_names(raw):
    raw["vips"].append(minimal_vip(name="web"))
    problems = problems_of(raw)
    assert problems == [("vips[1].name", "duplicate VIP name 'web' (also vips[0].name)")]


def test_duplicate_vip_address_port_protocol(raw):
    raw["vips"].append(minimal_vip(address="10.0.0.100", port=80))
    problems = problems_of(raw)
    assert_problem(problems, "vips[1].address", "duplicate VIP address, port and protocol")
    assert_problem(problems, "vips[1].address", "also vips[0].address")
    assert len(problems) == 1


def test_duplicate_vip_address_is_compared_after_normalising(raw):
    raw["vips"] = [
        minimal_vip(name="a", address="fd00::1", port=80),
        minimal_vip(name="b", address="FD00:0:0::01", port=80),
    ]
    assert_problem(problems_of(raw), "vips[1].address", "duplicate VIP address")


def test_same_address_and_port_with_other_protocol_or_port_is_fine(raw):
    raw["vips"].append(
        minimal_vip(
            name="web-udp", address="10.0.0.100", port=80, protocol="udp", health={"port": 80}
        )
    )
    raw["vips"].append(minimal_vip(name="web-alt", address="10.0.0.100", port=8080))
    assert len(dep.parse(raw).vips) == 3


def test_duplicate_backend_names_in_a_vip(raw):
    raw["vips"][0]["backends"][2]["name"] = "vm1"
    problems = problems_of(raw)
    assert_problem(problems, "vips[0].backends[2].name", "duplicate backend 'vm1' (also #0)")


def test_duplicate_tunnel_ip_in_a_vip(raw):
    raw["vips"][0]["backends"][3]["tunnel_ip"] = "192.168.100.12"
    problems = problems_of(raw)
    assert_problem(
        problems, "vips[0].backends[3].tunnel_ip", "192.168.100.12 is already backend 'vm2'"
    )


def test_same_backend_name_across_vips_with_different_tunnel_ip(raw):
    raw["vips"].append(
        minimal_vip(backends=[backend("vm1", "192.168.100.99", "02:00:00:00:01:01")])
    )
    problems = problems_of(raw)
    assert problems == [
        (
            "vips[1].backends[0]",
            "backend 'vm1' differs from vips[0].backends[0] "
            "(same name must mean the same tunnel_ip and mac)",
        )
    ]


def test_same_backend_name_across_vips_with_different_mac(raw):
    raw["vips"].append(
        minimal_vip(backends=[backend("vm2", "192.168.100.12", "02:00:00:00:09:09")])
    )
    assert_problem(problems_of(raw), "vips[1].backends[0]", "differs from vips[0].backends[1]")


def test_same_tunnel_ip_under_another_name_in_another_vip(raw):
    raw["vips"].append(
        minimal_vip(backends=[backend("vm9", "192.168.100.11", "02:00:00:00:01:09")])
    )
    assert_problem(problems_of(raw), "vips[1].backends[0].tunnel_ip", "belongs to backend 'vm1'")


def test_vm_shared_by_two_vips_identically_is_fine(raw):
    raw["vips"].append(
        minimal_vip(
            backends=[
                backend("vm1", "192.168.100.11", "02:00:00:00:01:01", weight=3),
                backend("vm4", "192.168.100.14", "02:00:00:00:01:04"),
            ]
        )
    )
    deployment = dep.parse(raw)
    assert [b.name for b in deployment.vips[1].backends] == ["vm1", "vm4"]
    assert deployment.vips[1].backends[0].weight == 3


def test_duplicate_gateway_names(raw):
    raw["gateways"][1]["name"] = "gw1"
    assert_problem(problems_of(raw), "gateways[1].name", "duplicate name 'gw1'")


def test_duplicate_gateway_dpids_in_different_spellings(raw):
    raw["gateways"][1]["dpid"] = "00:00:00:00:00:00:00:01"
    assert problems_of(raw) == [
        ("gateways[1].dpid", "duplicate datapath id 1 (also gateways[0].dpid)")
    ]


def test_duplicate_gateway_tunnel_ips(raw):
    raw["gateways"][1]["tunnel_ip"] = "192.168.100.1"
    problems = problems_of(raw)
    assert_problem(problems, "gateways[1].tunnel_ip", "duplicate tunnel_ip '192.168.100.1'")
    assert_problem(problems, "gateways[1].tunnel_ip", "also gateways[0].tunnel_ip")


def test_duplicate_openflow_listen_addresses(raw):
    raw["gateways"][1]["openflow"] = "127.0.0.1:6653"
    assert problems_of(raw) == [
        (
            "gateways[1].openflow",
            "duplicate listen address '127.0.0.1:6653' (also gateways[0].openflow)",
        )
    ]


def test_duplicate_rest_listen_addresses(raw):
    raw["gateways"][1]["rest"] = "127.0.0.1:8081"
    assert problems_of(raw) == [
        ("gateways[1].rest", "duplicate listen address '127.0.0.1:8081' (also gateways[0].rest)")
    ]


def test_duplicate_ipv6_listen_addresses(raw):
    raw["gateways"][0]["rest"] = "[::1]:8081"
    raw["gateways"][1]["rest"] = "[0:0::1]:8081"
    assert problems_of(raw) == [
        ("gateways[1].rest", "duplicate listen address '[::1]:8081' (also gateways[0].rest)")
    ]


def test_rest_listen_address_clashing_with_an_openflow_one(raw):
    """BUG: openflow and rest endpoints are checked for uniqueness separately, so gw2's REST API
    may be configured on the very host:port where gw1's controller listens for OpenFlow (both
    would bind 127.0.0.1:6653), and the file is accepted."""
    raw["gateways"][1]["rest"] = "127.0.0.1:6653"
    assert_problem(problems_of(raw), "gateways[1].rest", "duplicate listen address")


def test_duplicate_gateway_addresses(raw):
    raw["gateways"][1]["addresses"] = ["10.0.1.2", "10.0.1.1"]
    assert problems_of(raw) == [
        ("gateways[1].addresses[1]", "duplicate address '10.0.1.1' (also gateways[0].addresses[0])")
    ]


def test_client_address_equal_to_gateway_address(raw):
    raw["clients"] = [{"name": "c1", "address": "10.0.1.2"}]
    raw["router"]["client_subnet"] = "10.0.1.0/24"
    problems = problems_of(raw)
    assert_problem(problems, "clients[0].address", "duplicate address '10.0.1.2'")
    assert_problem(problems, "clients[0].address", "also gateways[1].addresses[0]")


def test_name_shared_by_gateway_and_client(raw):
    raw["clients"][0]["name"] = "gw1"
    assert problems_of(raw) == [("clients[0].name", "duplicate name 'gw1' (also gateways[0].name)")]


def test_name_shared_by_router_and_client(raw):
    raw["router"]["name"] = "c2"
    assert_problem(problems_of(raw), "router.name", "duplicate name 'c2' (also clients[1].name)")


def has_duplicate_name(problems: list[tuple[str, str]], name: str, paths: set[str]) -> bool:
    """A duplicate-name problem for ``name``, reported at either of the clashing keys."""
    return any(path in paths and f"duplicate name {name!r}" in reason for path, reason in problems)


@pytest.mark.parametrize(
    ("section", "index", "other_path"),
    [
        ("gateways", 0, "gateways[0].name"),
        ("clients", 0, "clients[0].name"),
        ("router", None, "router.name"),
    ],
)
def test_name_shared_by_a_vm_and_another_node(raw, section, index, other_path):
    """BUG: the duplicate name is found, but deployment_problems then runs the reachability
    check anyway; graph.build_graph merges the VM into the gateway/client/router node and
    raises KeyError('vips') (model.py line 66) instead of a ConfigError."""
    target = raw[section] if index is None else raw[section][index]
    target["name"] = "vm1"
    problems = problems_of(raw)
    assert has_duplicate_name(problems, "vm1", {"vips[0].backends[0].name", other_path}), problems


@pytest.mark.parametrize("clash", ["gw1", "vm1", "c1", "r1"])
def test_vip_name_may_equal_another_node_name(raw, clash):
    """VIPs have their own namespace (graph node 'vip:NAME'), so a VIP may be named like a
    gateway, a VM, a client or the router, and the other node keeps its kind."""
    raw["vips"][0]["name"] = clash
    graph = build_graph(dep.parse(raw))
    assert graph.nodes[f"vip:{clash}"]["kind"] == "vip"
    assert graph.nodes[clash]["kind"] in {"gateway", "vm", "client", "router"}


def test_vm_outside_the_underlay_names_the_gateways(raw):
    raw["vips"][0]["backends"][1]["tunnel_ip"] = "10.9.9.9"
    assert problems_of(raw) == [
        (
            "vips[0].backends[1].tunnel_ip",
            "VM vm2 (10.9.9.9) cannot be reached from gateway(s) gw1, gw2 "
            "over the underlay 192.168.100.0/24",
        )
    ]


def test_tunnel_endpoints_are_ipv4(raw):
    # The underlay is IPv4: OVS's per-flow tunnel destination is tun_ipv4_dst.
    raw["vips"][0]["backends"][0]["tunnel_ip"] = "fd00::11"
    raw["gateways"][0]["tunnel_ip"] = "fd00::1"
    problems = problems_of(raw)
    assert_problem(problems, "vips[0].backends[0].tunnel_ip", "is not an IPv4 address")
    assert_problem(problems, "gateways[0].tunnel_ip", "is not an IPv4 address")


def test_gateway_tunnel_ip_outside_the_underlay(raw):
    raw["gateways"][1]["tunnel_ip"] = "10.9.9.2"
    problems = problems_of(raw)
    assert_problem(
        problems, "gateways[1].tunnel_ip", "10.9.9.2 is not in the underlay subnet 192.168.100.0/24"
    )
    # Every VM is then cut off from gw2, and only from gw2.
    for index, vm in enumerate(["vm1", "vm2", "vm3", "vm4"]):
        assert_problem(
            problems,
            f"vips[0].backends[{index}].tunnel_ip",
            f"VM {vm} (192.168.100.1{index + 1}) cannot be reached from gateway(s) gw2 over",
        )
    assert len(problems) == 5


def test_no_underlay_section_means_no_reachability_check(raw):
    del raw["underlay"]
    del raw["router"]["address"]
    raw["vips"][0]["backends"][0]["tunnel_ip"] = "10.9.9.9"
    assert dep.parse(raw).vips[0].backends[0].tunnel_ip == "10.9.9.9"


def test_client_outside_the_router_client_subnet(raw):
    raw["clients"][1]["address"] = "10.1.1.12"
    assert problems_of(raw) == [
        ("clients[1].address", "10.1.1.12 is not in the router's client subnet 10.1.0.0/24")
    ]


def test_gateway_without_an_address_in_the_uplink_subnet(raw):
    raw["gateways"][0]["addresses"] = ["10.0.2.1"]
    assert problems_of(raw) == [
        ("gateways[0].addresses", "no address in the router's uplink subnet 10.0.1.0/24")
    ]


def test_gateway_with_one_of_several_addresses_in_the_uplink_subnet_is_fine(raw):
    raw["gateways"][0]["addresses"] = ["10.0.2.1", "10.0.1.1"]
    assert dep.parse(raw).gateways[0].addresses == ("10.0.2.1", "10.0.1.1")


def test_router_address_outside_the_underlay(raw):
    raw["router"]["address"] = "10.0.1.254"
    assert problems_of(raw) == [
        ("router.address", "10.0.1.254 is not in the underlay subnet 192.168.100.0/24")
    ]


def test_health_timeout_greater_than_interval(raw):
    raw["vips"][0]["health"]["timeout"] = 1.5
    assert problems_of(raw) == [("vips[0].health", "timeout (1.5) must not exceed interval (1.0)")]


def test_health_timeout_equal_to_interval_is_fine(raw):
    raw["vips"][0]["health"]["timeout"] = 1.0
    assert dep.parse(raw).vips[0].health.timeout == 1.0


def test_default_timeout_against_a_short_interval(raw):
    raw["vips"][0]["health"] = {"interval": 0.5}  # default timeout 1.0 > 0.5
    assert_problem(problems_of(raw), "vips[0].health", "timeout (1.0) must not exceed")


def test_http_health_on_a_udp_vip(raw):
    raw["vips"][0]["protocol"] = "udp"
    raw["vips"][0]["health"]["port"] = 8080
    assert problems_of(raw) == [("vips[0].health.type", "http checks need a tcp VIP")]


def test_tcp_health_on_a_udp_vip_needs_the_tcp_port_to_check(raw):
    raw["vips"][0]["protocol"] = "udp"
    raw["vips"][0]["health"]["type"] = "tcp"
    assert problems_of(raw) == [
        ("vips[0].health.port", "a udp VIP needs the TCP port its checks connect to")
    ]
    raw["vips"][0]["health"]["port"] = 8080
    assert dep.parse(raw).vips[0].protocol == "udp"


def test_a_udp_vip_of_static_backends_needs_no_check_port(raw):
    raw["vips"][0]["protocol"] = "udp"
    raw["vips"][0]["health"] = {"type": "none"}
    assert dep.parse(raw).vips[0].health.type == "none"


def test_every_gateway_needs_an_address_of_each_vips_ip_version(raw):
    raw["vips"].append(minimal_vip(address="fd00::100", port=80))
    raw["gateways"][1]["addresses"].append("fd00:1::2")
    assert problems_of(raw) == [
        (
            "gateways[0].addresses",
            "no IPv6 address for VIP 'svc' (health probes are sent from one)",
        )
    ]


# ---- reading files -------------------------------------------------------------------------------


def test_load_from_a_file(tmp_path):
    path = tmp_path / "deploy.yaml"
    path.write_text(EXAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    assert dep.load(path) == dep.load(EXAMPLE)


def test_invalid_yaml_gives_the_line_number(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("version: 1\ngateways:\n  - name: gw1\n   dpid: 1\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        dep.load(path)
    [problem] = caught.value.problems
    assert problem.path == ""
    assert f"{path} is not valid YAML" in problem.reason
    assert "line 4" in problem.reason


def test_invalid_yaml_in_flow_style_gives_the_line_number():
    with pytest.raises(ConfigError) as caught:
        dep.parse_text("version: 1\n\n\nvips: [\n  {name: web\n", origin="inline")
    [problem] = caught.value.problems
    assert problem.reason.startswith("inline is not valid YAML at line ")
    line = int(problem.reason.split("at line ")[1].split(",")[0])
    assert line >= 5


def test_unreadable_file(tmp_path):
    path = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError) as caught:
        dep.load(path)
    [problem] = caught.value.problems
    assert problem.path == ""
    assert problem.reason == f"cannot read {path}: No such file or directory"


def test_directory_instead_of_a_file(tmp_path):
    with pytest.raises(ConfigError) as caught:
        dep.load(tmp_path)
    [problem] = caught.value.problems
    assert problem.reason.startswith(f"cannot read {tmp_path}: ")


def test_non_utf8_file(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("vips: []\n# caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ConfigError) as caught:
        dep.load(path)
    assert [(p.path, p.reason) for p in caught.value.problems] == [
        ("", f"{path} is not UTF-8 text")
    ]


def test_config_error_message_lists_every_problem(raw):
    raw["vips"][0]["port"] = "80"
    raw["underlay"]["mtu"] = 1
    with pytest.raises(ConfigError) as caught:
        dep.parse(raw)
    lines = str(caught.value).splitlines()
    assert len(lines) == 2
    assert any(line.startswith("vips[0].port: must be an integer") for line in lines)
    assert any(line.startswith("underlay.mtu: must be 1280..9000") for line in lines)
    assert isinstance(caught.value, ValueError)


# ---- parse_vip and parse_backend (the REST API's entry points) -----------------------------------


def test_parse_vip_accepts_a_vip_and_fills_defaults():
    vip = dep.parse_vip(
        {
            "name": "dns",
            "address": "10.0.0.53",
            "port": 53,
            "protocol": "udp",
            "health": {"port": 53},
            "backends": [backend("vm1", "192.168.100.11", "02:00:00:00:01:01")],
        }
    )
    assert vip.idle_timeout == 30
    assert vip.health == HealthCheck(port=53)
    assert vip.table_size == 65537
    assert vip.backends == (Backend("vm1", "192.168.100.11", "02:00:00:00:01:01", 1),)


def test_parse_vip_equals_the_vip_in_the_file():
    assert dep.parse_vip(copy.deepcopy(_EXAMPLE_DATA["vips"][0])) == dep.load(EXAMPLE).vips[0]


@pytest.mark.parametrize("prefix", ["", "vip", "vips[3]"])
def test_parse_vip_schema_errors_use_the_prefix(prefix):
    def at(key: str) -> str:
        return f"{prefix}.{key}" if prefix else key

    data = {
        "name": "web",
        "address": "10.0.0.300",
        "port": "80",
        "colour": "red",
        "health": {"type": "http", "retries": 2},
        "backends": [
            backend("vm1", "192.168.100.11", "01:00:00:00:00:01", weight=True),
        ],
    }
    with pytest.raises(ConfigError) as caught:
        dep.parse_vip(data, prefix)
    problems = [(p.path, p.reason) for p in caught.value.problems]
    assert_problem(problems, at("address"), "is not an IPv4 or IPv6 address")
    assert_problem(problems, at("port"), "must be an integer, got a string")
    assert_problem(problems, at("colour"), "unknown key")
    assert_problem(problems, at("health.retries"), "unknown key")
    assert_problem(problems, at("backends[0].mac"), "multicast")
    assert_problem(problems, at("backends[0].weight"), "must be an integer")
    assert len(problems) == 6


@pytest.mark.parametrize("prefix", ["", "vip"])
def test_parse_vip_cross_field_errors_use_the_prefix(prefix):
    def at(key: str) -> str:
        return f"{prefix}.{key}" if prefix else key

    data = {
        "name": "dns",
        "address": "10.0.0.53",
        "port": 53,
        "protocol": "udp",
        "health": {"type": "http", "port": 53, "interval": 1, "timeout": 2},
        "backends": [
            backend("vm1", "192.168.100.11", "02:00:00:00:01:01"),
            backend("vm1", "192.168.100.12", "02:00:00:00:01:02"),
            backend("vm3", "192.168.100.11", "02:00:00:00:01:03"),
        ],
    }
    with pytest.raises(ConfigError) as caught:
        dep.parse_vip(data, prefix)
    problems = [(p.path, p.reason) for p in caught.value.problems]
    assert_problem(problems, at("health"), "timeout (2.0) must not exceed interval (1.0)")
    assert_problem(problems, at("health.type"), "http checks need a tcp VIP")
    assert_problem(problems, at("backends[1].name"), "duplicate backend 'vm1' (also #0)")
    assert_problem(problems, at("backends[2].tunnel_ip"), "192.168.100.11 is already backend")
    assert len(problems) == 4


def test_parse_vip_missing_keys_and_wrong_shape():
    with pytest.raises(ConfigError) as caught:
        dep.parse_vip({}, "vip")
    assert sorted((p.path, p.reason) for p in caught.value.problems) == [
        ("vip.address", "is required"),
        ("vip.name", "is required"),
        ("vip.port", "is required"),
    ]
    with pytest.raises(ConfigError) as caught:
        dep.parse_vip(["web"], "vip")
    assert [(p.path, p.reason) for p in caught.value.problems] == [
        ("vip", "must be a mapping, got a list")
    ]


def test_parse_vip_bad_table_size():
    with pytest.raises(ConfigError) as caught:
        dep.parse_vip({"name": "a", "address": "10.0.0.1", "port": 1, "table_size": 100}, "v")
    assert_problem(
        [(p.path, p.reason) for p in caught.value.problems], "v.table_size", "must be prime"
    )


def test_parse_backend_accepts_and_defaults_weight():
    assert dep.parse_backend(backend("vm9", "10.9.9.9", "02:00:00:00:00:09")) == Backend(
        "vm9", "10.9.9.9", "02:00:00:00:00:09", 1
    )


@pytest.mark.parametrize("prefix", ["", "backend", "vips[0].backends[2]"])
def test_parse_backend_errors_use_the_prefix(prefix):
    def at(key: str) -> str:
        return f"{prefix}.{key}" if prefix else key

    data = {"name": "9vm", "tunnel_ip": "300.1.1.1", "mac": "ff:ff:ff:ff:ff:ff", "weight": "2"}
    data["extra"] = 1
    with pytest.raises(ConfigError) as caught:
        dep.parse_backend(data, prefix)
    problems = [(p.path, p.reason) for p in caught.value.problems]
    assert_problem(problems, at("name"), "is not a name")
    assert_problem(problems, at("tunnel_ip"), "is not an IPv4 or IPv6 address")
    assert_problem(problems, at("mac"), "multicast")
    assert_problem(problems, at("weight"), "must be an integer, got a string")
    assert_problem(problems, at("extra"), "unknown key")
    assert len(problems) == 5


def test_parse_backend_missing_keys_and_range():
    with pytest.raises(ConfigError) as caught:
        dep.parse_backend({"name": "vm1", "weight": 10_001}, "b")
    problems = sorted((p.path, p.reason) for p in caught.value.problems)
    assert problems == [
        ("b.mac", "is required"),
        ("b.tunnel_ip", "is required"),
        ("b.weight", "must be 0..10000, got 10001"),
    ]


def test_a_gateway_and_a_vm_cannot_share_a_tunnel_endpoint(raw):
    raw["gateways"][1]["tunnel_ip"] = raw["vips"][0]["backends"][0]["tunnel_ip"]
    assert_problem(problems_of(raw), "vips[0].backends[0].tunnel_ip", "duplicate tunnel_ip")


def test_a_vm_in_two_vips_counts_once(raw):
    web = raw["vips"][0]
    raw["vips"].append({**minimal_vip(name="api", port=443), "backends": web["backends"][:2]})
    assert dep.parse(raw).vip("api").backends == dep.parse(raw).vip("web").backends[:2]
