"""A VIP's second chance (issue 16, ``core.secondchance``) in the deployment file and a REST
body: its modes and window, TCP only, a warning where switch-mode gateways would not apply it,
and the configuration digest."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from ryu_app.api.views import config_data
from topology import deployment as dep
from topology.schema import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "topology" / "examples" / "default.yaml"
_EXAMPLE_DATA = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))


@pytest.fixture
def raw() -> dict:
    data = copy.deepcopy(_EXAMPLE_DATA)
    data["vips"][0].update(second_chance="duplicate", second_chance_window=600)
    return data


def problems_of(data) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as caught:
        dep.parse(data)
    return [(p.path, p.reason) for p in caught.value.problems]


def test_off_is_the_default_and_a_mode_round_trips(raw):
    assert dep.parse(_EXAMPLE_DATA).vips[0].second_chance == "off"
    deployment = dep.parse(raw)
    vip = deployment.vips[0]
    assert (vip.second_chance, vip.second_chance_window) == ("duplicate", 600)
    assert dep.parse_text(dep.dump(deployment)) == deployment
    assert dep.parse_vip(dep.vip_to_data(vip)) == vip


def test_bad_values_name_the_key(raw):
    raw["vips"][0].update(second_chance="both", second_chance_window=0)
    found = dict(problems_of(raw))
    assert "vips[0].second_chance" in found and "duplicate" in found["vips[0].second_chance"]
    assert "vips[0].second_chance_window" in found


def test_second_chance_needs_tcp(raw):
    raw["vips"][0].update(protocol="udp")
    raw["vips"][0].setdefault("health", {})["port"] = 80
    assert (
        "vips[0].second_chance",
        "second chance tells a moved connection from a new one by"
        " the SYN flag: it needs protocol tcp",
    ) in problems_of(raw)


def test_second_chance_needs_the_5_tuple(raw):
    raw["vips"][0].update(hash="src-ip")
    (found,) = [reason for path, reason in problems_of(raw) if path == "vips[0].second_chance"]
    assert "needs hash 5-tuple" in found


def test_switch_mode_gateways_are_warned_about(raw):
    assert not [w for w in dep.deployment_warnings(dep.parse(raw)) if "second" in w.path]
    raw["gateways"][0]["vip_mode"] = "switch"
    raw["vips"][0].update(placement="port-bits", table_size=256)
    warnings = [w for w in dep.deployment_warnings(dep.parse(raw)) if "second" in w.path]
    assert [w.path for w in warnings] == ["vips[0].second_chance"]
    assert "do not apply second chance" in warnings[0].reason


def test_the_digest_leaves_it_out_at_its_default_and_counts_it_set(raw):
    off = dep.parse(_EXAMPLE_DATA).vips[0]
    assert "second_chance" not in config_data(off)
    assert config_data(dep.parse(raw).vips[0])["second_chance"] == "duplicate"
