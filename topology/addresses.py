"""Converters for the addresses of hosts and services, and MACs (see ``topology.schema``).

Unicast means an address a host or a service can have: not unspecified (0.0.0.0, ::), not
loopback (127.0.0.0/8, ::1), not multicast (224.0.0.0/4, ff00::/8), not the rest of IPv4's
240.0.0.0/4 with the broadcast 255.255.255.255 and not 0.0.0.0/8 ("this network").  Link-local
and private ranges are unicast and allowed: a deployment may use them.  Listeners are not held
to this (a wildcard or loopback listener is normal; ``schema.endpoint``).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from typing import Any

from topology.schema import Invalid, anchored, described, shown

_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9][0-9]|[0-9])"
IPV4_PATTERN = rf"{_OCTET}(?:\.{_OCTET}){{3}}"  # what ipaddress accepts: no leading zeros
IPV4_UNICAST_PATTERN = (
    rf"(?!127\.)(?:22[0-3]|2[01][0-9]|1[0-9]{{2}}|[1-9][0-9]|[1-9])(?:\.{_OCTET}){{3}}"
)
# IPv6 has too many spellings for one pattern of its shape; format ipv6 says the shape, and this
# refuses every spelling of :: and ::1 (zeros and colons, then at most a last 1 or 0.0.0.1) and
# multicast (a first group ffXX).
IPV6_UNICAST_PATTERN = r"^(?![0:]*(?:0{0,3}1|0\.0\.0\.[01])?$)(?![fF]{2}[0-9a-fA-F]{2}:)"

_IPV4_SCHEMA = {"type": "string", "format": "ipv4", "pattern": anchored(IPV4_PATTERN)}
_IPV6_SCHEMA = {"type": "string", "format": "ipv6"}
_IPV4_UNICAST_SCHEMA = {
    "type": "string",
    "format": "ipv4",
    "pattern": anchored(IPV4_UNICAST_PATTERN),
    "description": "IPv4 unicast: 1.0.0.0-223.255.255.255 except 127.0.0.0/8",
}
_IPV6_UNICAST_SCHEMA = {
    "type": "string",
    "format": "ipv6",
    "pattern": IPV6_UNICAST_PATTERN,
    "description": "IPv6 unicast: not ::, ::1 or ff00::/8",
}


def _parsed(value: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An address written plainly (no '%zone'), else ValueError."""
    if isinstance(value, bool) or not isinstance(value, str) or "%" in value:
        raise ValueError(value)
    return ipaddress.ip_address(value)


@described({"anyOf": [_IPV4_SCHEMA, _IPV6_SCHEMA], "description": "an IPv4 or IPv6 address"})
def ip_address(value: Any) -> str:
    try:
        return str(_parsed(value))
    except ValueError:
        raise Invalid(f"{shown(value)} is not an IPv4 or IPv6 address") from None


def unicast_problem(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why ``address`` cannot be a host's or a service's own address, or None if it can.

    Spelled out from the first octet or group rather than with ``ipaddress``'s ``is_*``, whose
    meaning for IPv4-mapped IPv6 addresses changed in Python 3.13: the document's patterns must
    say exactly this on every version."""
    first = address.packed[0]
    if address.version == 6:
        if not any(address.packed):
            return "is the unspecified address"
        if address == ipaddress.IPv6Address("::1"):
            return "is a loopback address"
        return "is a multicast address" if first == 0xFF else None
    if address == ipaddress.IPv4Address("0.0.0.0"):
        return "is the unspecified address"
    if address == ipaddress.IPv4Address("255.255.255.255"):
        return "is the broadcast address"
    if first == 0:
        return "is in 0.0.0.0/8 ('this network', never a host's address)"
    if first == 127:
        return "is a loopback address"
    if 224 <= first < 240:
        return "is a multicast address"
    return "is in 240.0.0.0/4 (reserved)" if first >= 240 else None


def _unicast(value: Any, version: int | None) -> str:
    """The address's text if it is a unicast one (of ``version`` if given).  A text seen
    before is answered from a cache: at 1,000 VIPs over the same 100 VMs each tunnel
    endpoint is checked 1,000 times (~1 s of a 1,000 x 100 file's load)."""
    if type(value) is str:
        return _unicast_text(value, version)
    return _unicast_checked(value, version)


@functools.lru_cache(maxsize=1 << 16)
def _unicast_text(value: str, version: int | None) -> str:
    """``_unicast_checked``, remembered (a text that fails raises each time: not cached)."""
    return _unicast_checked(value, version)


def _unicast_checked(value: Any, version: int | None) -> str:
    address_text = ip_address(value) if version is None else ipv4_address(value)
    problem = unicast_problem(ipaddress.ip_address(address_text))
    if problem:
        raise Invalid(f"{address_text} {problem}; a unicast address is needed here")
    return address_text


@described(
    {
        "anyOf": [_IPV4_UNICAST_SCHEMA, _IPV6_UNICAST_SCHEMA],
        "description": "a unicast IPv4 or IPv6 address: not unspecified, loopback, multicast, "
        "broadcast, 0.0.0.0/8 or 240.0.0.0/4",
    }
)
def unicast_address(value: Any) -> str:
    return _unicast(value, None)


@described(_IPV4_SCHEMA)
def ipv4_address(value: Any) -> str:
    address = ip_address(value)
    if ipaddress.ip_address(address).version != 4:
        raise Invalid(f"{shown(value)} is not an IPv4 address")
    return address


@described(_IPV4_UNICAST_SCHEMA)
def unicast_ipv4(value: Any) -> str:
    return _unicast(value, 4)


def ip_network(value: Any) -> str:
    try:
        if not isinstance(value, str) or "%" in value:
            raise ValueError
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError:
        raise Invalid(
            f"{shown(value)} is not a network such as 192.0.2.0/24 (host bits zero)"
        ) from None


_MAC = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}")
# Unicast (the group bit, the low bit of the first octet, clear) and not all zeros.
MAC_PATTERN = r"(?!00(?::00){5}$)[0-9A-Fa-f][02468ACEace](?::[0-9A-Fa-f]{2}){5}"


@described(
    {
        "type": "string",
        "pattern": anchored(MAC_PATTERN),
        "description": "a unicast MAC address such as 02:00:00:00:00:01 (not multicast, not "
        "all zeros)",
    }
)
def mac_address(value: Any) -> str:
    if not isinstance(value, str) or not value.isascii() or not _MAC.fullmatch(value.lower()):
        raise Invalid(f"{shown(value)} is not a MAC address such as 02:00:00:00:00:01")
    mac = value.lower()
    if int(mac[:2], 16) & 1:
        raise Invalid(f"{mac} is a multicast MAC address")
    if mac == "00:00:00:00:00:00":
        raise Invalid(f"{mac} is the all-zero MAC address")
    return mac
