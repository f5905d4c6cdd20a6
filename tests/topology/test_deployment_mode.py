"""A VIP's mode (issue 14, docs/switch-mode.md) in the deployment file and a REST body: switch
mode needs the port-bits placement, TCP and IPv4, with the problems under ``vips[i].mode``."""

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
    data["vips"][0].update(placement="port-bits", table_size=256, mode="switch")
    return data


def problems_of(data) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as caught:
        dep.parse(data)
    return [(p.path, p.reason) for p in caught.value.problems]


def test_controller_is_the_default():
    assert dep.parse(_EXAMPLE_DATA).vips[0].mode == "controller"


def test_a_switch_vip_is_accepted_and_round_trips(raw):
    deployment = dep.parse(raw)
    vip = deployment.vips[0]
    assert vip.mode == "switch"
    assert dep.parse_text(dep.dump(deployment)) == deployment
    assert dep.parse_vip(dep.vip_to_data(vip)) == vip


def test_switch_mode_needs_port_bits(raw):
    raw["vips"][0].update(placement="hash", table_size=None)
    assert problems_of(raw) == [
        (
            "vips[0].mode",
            "switch mode places by source-port bits: set placement: port-bits on every gateway",
        )
    ]


def test_switch_mode_needs_tcp(raw):
    raw["vips"][0].update(placement="hash", table_size=None, protocol="udp")
    raw["vips"][0].setdefault("health", {})["port"] = 80
    mode_problems = [reason for path, reason in problems_of(raw) if path == "vips[0].mode"]
    assert len(mode_problems) == 2
    assert "TCP flows only" in mode_problems[1]


def test_an_unknown_mode_is_refused(raw):
    raw["vips"][0]["mode"] = "both"
    assert [path for path, _ in problems_of(raw)] == ["vips[0].mode"]


def test_a_rest_body_goes_through_the_same_rules(raw):
    body = {**raw["vips"][0], "placement": "hash", "table_size": None}
    with pytest.raises(ConfigError) as caught:
        dep.parse_vip(body, "vips[0]")
    assert [p.path for p in caught.value.problems] == ["vips[0].mode"]
    assert dep.parse_vip(raw["vips"][0]).mode == "switch"


def test_the_pin_limit_defaults_per_backend_and_is_refused_out_of_range_under_its_key(raw):
    assert dep.parse(raw).vips[0].max_pins_per_backend == 100_000
    raw["vips"][0]["max_pins_per_backend"] = 0  # no bound: plain learn, OVS before 2.12
    assert dep.parse(raw).vips[0].max_pins_per_backend == 0
    for wrong in (-1, 2**32, "many"):
        raw["vips"][0]["max_pins_per_backend"] = wrong
        assert [path for path, _ in problems_of(raw)] == ["vips[0].max_pins_per_backend"]


def test_the_pin_limit_is_left_out_of_the_digest_as_mode_is(raw):
    vip = dep.parse(raw).vips[0]
    bounded = dep.parse_vip(
        {**dep.vip_to_data(vip), "max_pins_per_backend": 5, "mode": "controller"}
    )
    assert config_data(bounded) == config_data(vip)


def test_a_gateways_vip_mode_is_accepted_and_round_trips(raw):
    raw["gateways"][1]["vip_mode"] = "switch"
    raw["vips"][0]["mode"] = "controller"
    deployment = dep.parse(raw)
    assert [g.vip_mode for g in deployment.gateways[:2]] == [None, "switch"]
    assert dep.parse_text(dep.dump(deployment)) == deployment


def test_a_switch_override_names_the_gateways_key_and_each_vip_that_cannot(raw):
    raw["gateways"][0]["vip_mode"] = "switch"
    raw["vips"][0].update(mode="controller", placement="hash", table_size=None)
    (problem,) = problems_of(raw)
    assert problem[0] == "gateways[0].vip_mode"
    assert problem[1].startswith(f"VIP {raw['vips'][0]['name']!r}: switch mode places by")


def test_an_unknown_override_is_refused(raw):
    raw["gateways"][0]["vip_mode"] = "both"
    assert [path for path, _ in problems_of(raw)] == ["gateways[0].vip_mode"]
