"""The schema engine's converters: whole-string matches, semantic address and MAC rules, short
messages, and validation that stops collecting at MAX_PROBLEMS."""

from __future__ import annotations

import time

import pytest

from topology import addresses, schema
from topology.deployment import MAX_BACKENDS, parse_vip
from topology.schema import MAX_PROBLEMS, ConfigError, Invalid

# ---- whole strings (issue 11, finding 5: `$` matched before a final newline) --------------------


@pytest.mark.parametrize(
    ("converter", "good"),
    [
        (schema.name, "web"),
        (schema.host_name, "gw1.example.com"),
        (addresses.mac_address, "02:00:00:00:01:01"),
        (schema.url_path, "/healthz"),
        (addresses.ip_address, "10.0.0.1"),
        (addresses.unicast_address, "fd00::1"),
        (addresses.unicast_ipv4, "192.168.100.11"),
        (schema.datapath_id, "0x1f"),
        (schema.text(15, r"[a-z]+"), "eth"),
    ],
    ids=lambda v: getattr(v, "__name__", str(v)),
)
def test_a_trailing_newline_or_space_is_refused(converter, good):
    converter(good)  # the value itself is fine
    for bad in (good + "\n", good + " ", " " + good, good + "\n\n", "\n" + good):
        with pytest.raises(Invalid):
            converter(bad)


@pytest.mark.parametrize(
    "bad",
    ["127.0.0.1:٦٦٥٣", "127.0.0.1:6653\n", "127.0.0.1:+6653", "127.0.0.1:²", "[fe80::1%eth0]:80"],
)
def test_listener_ports_and_hosts_are_plain(bad):
    """``str.isdigit`` took '²' (then ``int`` raised ValueError, not Invalid) and Arabic digits."""
    with pytest.raises(Invalid):
        schema.endpoint(bad)


def test_datapath_ids_take_no_underscores_or_signs():
    for bad in ("1_0", "-1", "+1", "0x", "00:00:00:00:00:00:00:1f:", "1f\n"):
        with pytest.raises(Invalid):
            schema.datapath_id(bad)
    assert schema.datapath_id("00:00:00:00:00:00:00:1F") == 31


# ---- semantic checks (finding 8) -------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "0.0.0.0/8"),
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("224.0.0.1", "multicast"),
        ("239.1.1.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "broadcast"),
        ("::", "unspecified"),
        ("0:0::0", "unspecified"),
        ("::1", "loopback"),
        ("0:0:0:0:0:0:0:1", "loopback"),
        ("::0.0.0.1", "loopback"),
        ("ff02::1", "multicast"),
    ],
)
def test_addresses_that_are_not_unicast_are_refused_with_the_reason(address, reason):
    with pytest.raises(Invalid, match=reason):
        addresses.unicast_address(address)


@pytest.mark.parametrize(
    "address", ["10.0.0.1", "1.0.0.0", "223.255.255.255", "169.254.1.1", "fe80::1", "fd00::1"]
)
def test_unicast_addresses_including_link_local_are_accepted(address):
    assert addresses.unicast_address(address) == address


def test_tunnel_ips_are_unicast_ipv4():
    assert addresses.unicast_ipv4("10.20.0.11") == "10.20.0.11"
    for bad in ("127.0.0.1", "0.0.0.0", "fd00::1", "224.0.0.5"):
        with pytest.raises(Invalid):
            addresses.unicast_ipv4(bad)


@pytest.mark.parametrize(
    ("mac", "reason"),
    [
        ("00:00:00:00:00:00", "all-zero"),
        ("01:00:5e:00:00:01", "multicast"),
        ("ff:ff:ff:ff:ff:ff", "multicast"),
        ("02:00:00:00:00:0", "not a MAC"),
        ("02-00-00-00-00-01", "not a MAC"),
    ],
)
def test_macs_that_are_zero_or_group_addresses_are_refused(mac, reason):
    with pytest.raises(Invalid, match=reason):
        addresses.mac_address(mac)


def test_macs_are_lowercased():
    assert addresses.mac_address("02:AB:00:00:00:01") == "02:ab:00:00:00:01"


def test_listeners_may_be_wildcard_or_loopback_but_not_multicast_or_broadcast():
    assert schema.endpoint("0.0.0.0:6653") == ("0.0.0.0", 6653)
    assert schema.endpoint("[::]:8081") == ("::", 8081)
    assert schema.endpoint("127.0.0.1:6653") == ("127.0.0.1", 6653)
    for bad in ("224.0.0.1:6653", "255.255.255.255:80", "[ff02::1]:80"):
        with pytest.raises(Invalid, match="cannot be listened on"):
            schema.endpoint(bad)


# ---- bounded problems and messages (finding 4) ------------------------------------------------


def test_validation_stops_collecting_after_max_problems_and_is_quick():
    """A body of half a million bad items once took 1.6 s and made a 60 MB answer."""
    names = schema.Section({"names": schema.Field(schema.ListOf(schema.name))})
    started = time.perf_counter()
    problems: list = []
    assert names.read({"names": [1] * 500_000}, "", problems) is None
    error = ConfigError(problems)
    assert time.perf_counter() - started < 0.5
    assert len(error.problems) == MAX_PROBLEMS and error.stopped
    assert "validation stopped after" in str(error)


def test_a_vip_has_at_most_max_backends():
    backends = [1] * (MAX_BACKENDS + 1)
    with pytest.raises(ConfigError) as caught:
        parse_vip({"name": "web", "address": "10.0.0.1", "port": 80, "backends": backends})
    assert [(p.path, p.reason) for p in caught.value.problems] == [
        ("backends", f"has {MAX_BACKENDS + 1} items, at most {MAX_BACKENDS}")
    ]


def test_many_bad_items_within_the_item_limit_stop_at_max_problems_too():
    backends = [{"name": "x", "tunnel_ip": "nope", "mac": "nope"}] * 1000
    with pytest.raises(ConfigError) as caught:
        parse_vip({"name": "web", "address": "10.0.0.1", "port": 80, "backends": backends})
    assert len(caught.value.problems) == MAX_PROBLEMS and caught.value.stopped


def test_many_unknown_keys_stop_at_max_problems():
    data = {f"key{i}": i for i in range(100_000)}
    with pytest.raises(ConfigError) as caught:
        parse_vip(data)
    assert len(caught.value.problems) == MAX_PROBLEMS


def test_messages_quote_a_shortened_value():
    huge = "x" * 1_000_000
    for converter in (schema.name, addresses.mac_address, addresses.ip_address, schema.url_path):
        with pytest.raises(Invalid) as caught:
            converter(huge)
        assert len(str(caught.value)) < 300
    with pytest.raises(ConfigError) as caught:
        parse_vip({huge: 1, "name": "web", "address": "10.0.0.1", "port": 80})
    assert all(len(p.path) < 100 for p in caught.value.problems)


def test_a_complete_error_says_nothing_of_stopping():
    with pytest.raises(ConfigError) as caught:
        parse_vip({"name": "web"})
    assert not caught.value.stopped and "stopped" not in str(caught.value)
