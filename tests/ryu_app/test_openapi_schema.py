"""The document says what the validator enforces: each field's JSON Schema (as served) and its
converter accept and refuse the same samples, and values drawn from a field's pattern pass its
converter.  The one documented difference: ``table_size`` must also be prime (a 400)."""

from __future__ import annotations

import jsonschema_rs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ryu_app.core.model import is_prime
from topology import addresses, schema
from topology.deployment import BACKEND_FIELDS, HEALTH_FIELDS, VIP_FIELDS
from topology.schema import ListOf, Section, convert

STRINGS = [
    *("web", "a", "A" + "b" * 62, "A" + "b" * 63, "web\n", " web", "we b", "1web", "", "_x"),
    *("web.1-2_3", "wéb", "web\x00"),
    *("02:00:00:00:00:01", "02:AB:00:00:00:01", "00:00:00:00:00:00", "01:00:5e:00:00:01"),
    *("ff:ff:ff:ff:ff:ff", "02:00:00:00:00:01\n", "02:00:00:00:00:1", "0a:00:00:00:00:01"),
    *("03:00:00:00:00:01", "0E:00:00:00:00:00", "00:00:00:00:00:01", "02-00-00-00-00-01"),
    *("10.0.0.1", "1.0.0.0", "223.255.255.255", "224.0.0.1", "239.255.255.255", "240.0.0.1"),
    *("255.255.255.255", "0.0.0.0", "0.1.2.3", "127.0.0.1", "126.255.255.255", "128.0.0.1"),
    *("169.254.0.1", "10.0.0.1\n", "01.2.3.4", "1.2.3", "1.2.3.4.5", "256.1.1.1", "١.2.3.4"),
    *("::", "::1", "0::1", "0:0:0:0:0:0:0:1", "0000::0001", "::0.0.0.1", "::0.0.0.0", "::2"),
    *("::10", "1::", "fe80::1", "fd00::1", "FD00::1", "ff02::1", "FF02::1", "ff::1", "ff0::1"),
    *("fff::1", "ff00::", "::ffff:127.0.0.1", "2001:db8::1", "fe80::1%eth0", "1::2::3", "::1\n"),
    *("0:0::0:1", "::0:0:1", "0::0.0.0.0", "::0.0.1.0", "::100"),
    *("/", "/healthz", "/a b", "/é", "healthz", "/" + "a" * 1023, "/" + "a" * 1024, "/x\n"),
    *("tcp", "udp", "http", "TCP", "5-tuple", "src-ip", "6", "80"),
]
NUMBERS = [
    *(0, 1, -1, 6, 7, 11, 99, 100, 101, 599, 600, 4095, 4096, 65535, 65536, 10_000, 10_001),
    *(2**24 - 1, 2**24, 65537, 655_373, 655_379, 10**30, 0.05, 0.04, 0.01, 0.009, 3600),
    *(3600.5, 1.5, 2.0, 7.0),
]
OTHERS = [None, True, False, [], {}, [1], {"a": 1}]
SAMPLES = [*STRINGS, *NUMBERS, *OTHERS]


def json_schema(openapi_schema: dict) -> dict:
    """OpenAPI 3.0's ``nullable`` spelled as draft 4 JSON Schema (what a client validates)."""
    result = {k: v for k, v in openapi_schema.items() if k not in ("nullable", "example")}
    for key in ("items", "not"):
        if key in result:
            result[key] = json_schema(result[key])
    if "anyOf" in result:
        result["anyOf"] = [json_schema(s) for s in result["anyOf"]]
    if "properties" in result:
        result["properties"] = {k: json_schema(v) for k, v in result["properties"].items()}
    if openapi_schema.get("nullable"):
        return {"anyOf": [result, {"type": "null"}]}
    return result


def accepts(converter, value) -> bool:
    problems: list = []
    convert(converter, value, "", problems)
    return not problems


def leaf_fields() -> list:
    sections = (("vip", VIP_FIELDS), ("backend", BACKEND_FIELDS), ("health", HEALTH_FIELDS))
    return [
        pytest.param(field.convert, section.json_schema["properties"][key], id=f"{label}.{key}")
        for label, section in sections
        for key, field in section.fields.items()
        if not isinstance(field.convert, (Section, ListOf))
    ]


def documented_difference(converter, value) -> bool:
    """table_size: JSON Schema cannot say 'prime'."""
    return (
        converter is VIP_FIELDS.fields["table_size"].convert
        and isinstance(value, int)
        and not isinstance(value, bool)
        and not is_prime(value)
    )


@pytest.mark.parametrize(("converter", "prop"), leaf_fields())
def test_each_fields_schema_and_converter_agree_on_every_sample(converter, prop):
    validator = jsonschema_rs.Draft4Validator(json_schema(prop), validate_formats=True)
    disagree = [
        value
        for value in SAMPLES
        if not documented_difference(converter, value)
        and accepts(converter, value) != validator.is_valid(value)
    ]
    assert disagree == []


def test_table_size_refuses_what_its_schema_cannot_say():
    prop = VIP_FIELDS.json_schema["properties"]["table_size"]
    validator = jsonschema_rs.Draft4Validator(json_schema(prop))
    convert = VIP_FIELDS.fields["table_size"].convert
    assert validator.is_valid(65535) and not accepts(convert, 65535)  # neither prime nor 2**k
    assert "prime" in prop["description"] and "power of two" in prop["description"]


def test_a_whole_vip_agrees_too():
    validator = jsonschema_rs.Draft4Validator(
        json_schema(VIP_FIELDS.json_schema), validate_formats=True
    )
    good = {
        "name": "web",
        "address": "10.0.0.1",
        "port": 80,
        "health": None,
        "backends": [{"name": "vm1", "tunnel_ip": "10.20.0.11", "mac": "02:00:00:00:01:01"}],
    }
    assert validator.is_valid(good) and accepts(VIP_FIELDS, good)
    for change in (
        {"backends": None},
        {"health": {"interval": 2}},
        {"colour": 1},
        {"backends": [{"name": "vm1"}]},
        {"backends": [{"name": "vm1", "tunnel_ip": "127.0.0.1", "mac": "02:00:00:00:01:01"}]},
    ):
        body = {**good, **change}
        assert validator.is_valid(body) == accepts(VIP_FIELDS, body), change


@pytest.mark.parametrize(
    "converter",
    [schema.name, schema.host_name, addresses.mac_address, schema.url_path, addresses.unicast_ipv4],
    ids=lambda c: c.__name__,
)
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_values_drawn_from_a_pattern_pass_its_converter(converter, data):
    value = data.draw(st.from_regex(converter.json_schema["pattern"]))
    schema_length = converter.json_schema.get("maxLength", len(value))
    if len(value) <= schema_length and "\n" not in value:
        converter(value)
