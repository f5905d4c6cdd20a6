"""A small declarative schema engine: fields with a type, a default and a check, declared once.

Every problem is collected with the key path where it was found (``vips[0].backends[2].weight``)
and the reason, so a user sees all of them at once.  Unknown keys are problems too.  The same
engine serves the command-line check, controller start-up and the REST API.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

REQUIRED = object()  # marker: a field without a default


@dataclass(frozen=True)
class Problem:
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}" if self.path else self.reason


class ConfigError(ValueError):
    """One or more problems in a configuration; ``problems`` lists every one."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


class Invalid(Exception):
    """Raised by a converter for a value that does not fit; the message is the reason."""


Converter = Callable[[Any], Any]


@dataclass(frozen=True)
class Field:
    convert: Converter
    default: Any = REQUIRED
    doc: str = ""


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


class Section:
    """A mapping with declared fields.  ``read`` returns a dict of converted values (defaults
    filled in), or None if any problem was found; problems are appended to ``problems``."""

    def __init__(self, fields: Mapping[str, Field]):
        self.fields = dict(fields)

    def read(self, data: Any, path: str, problems: list[Problem]) -> dict | None:
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            problems.append(Problem(path, f"must be a mapping, got {kind(data)}"))
            return None
        before = len(problems)
        result: dict[str, Any] = {}
        for key in data:
            if key not in self.fields:
                known = ", ".join(sorted(self.fields))
                problems.append(Problem(join(path, str(key)), f"unknown key (known: {known})"))
        for name, spec in self.fields.items():
            where = join(path, name)
            if name not in data:
                if spec.default is REQUIRED:
                    problems.append(Problem(where, "is required"))
                else:
                    result[name] = spec.default
                continue
            value = convert(spec.convert, data[name], where, problems)
            if value is not _FAILED:
                result[name] = value
        return result if len(problems) == before else None


_FAILED = object()


def convert(converter: Converter, value: Any, path: str, problems: list[Problem]) -> Any:
    """Run one converter; nested sections and lists report their own paths."""
    if isinstance(converter, (Section, ListOf)):
        out = converter.read(value, path, problems)
        return _FAILED if out is None else out
    try:
        return converter(value)
    except Invalid as error:
        problems.append(Problem(path, str(error)))
        return _FAILED


class ListOf:
    def __init__(self, item: Converter | Section, min_items: int = 0):
        self.item = item
        self.min_items = min_items

    def read(self, data: Any, path: str, problems: list[Problem]) -> list | None:
        if data is None:
            data = []
        if not isinstance(data, list):
            problems.append(Problem(path, f"must be a list, got {kind(data)}"))
            return None
        if len(data) < self.min_items:
            problems.append(Problem(path, f"needs at least {self.min_items} item(s)"))
            return None
        before = len(problems)
        items = [convert(self.item, value, join(path, i), problems) for i, value in enumerate(data)]
        return items if len(problems) == before else None


def kind(value: Any) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "nothing (null)"
    return names.get(type(value), type(value).__name__)


# ---- converters -------------------------------------------------------------------------------

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,62}$")
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def name(value: Any) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise Invalid(
            f"{value!r} is not a name (a letter, then up to 62 letters, digits, '_', '.', '-')"
        )
    return value


def integer(low: int, high: int) -> Converter:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(f"must be an integer, got {kind(value)} {value!r}")
        if not low <= value <= high:
            raise Invalid(f"must be {low}..{high}, got {value}")
        return value

    return check


def number(low: float, high: float) -> Converter:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Invalid(f"must be a number, got {kind(value)} {value!r}")
        if not low <= value <= high:
            raise Invalid(f"must be {low}..{high}, got {value}")
        return float(value)

    return check


def choice(*options: object) -> Converter:
    def check(value: Any) -> Any:
        if value not in options or isinstance(value, bool):
            raise Invalid(f"must be one of {', '.join(map(str, options))}; got {value!r}")
        return value

    return check


def ip_address(value: Any) -> str:
    try:
        if isinstance(value, bool) or not isinstance(value, str):
            raise ValueError
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise Invalid(f"{value!r} is not an IPv4 or IPv6 address") from None


def ipv4_address(value: Any) -> str:
    address = ip_address(value)
    if ipaddress.ip_address(address).version != 4:
        raise Invalid(f"{value!r} is not an IPv4 address")
    return address


def ip_network(value: Any) -> str:
    try:
        if not isinstance(value, str):
            raise ValueError
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError:
        raise Invalid(f"{value!r} is not a network such as 192.0.2.0/24 (host bits zero)") from None


def mac_address(value: Any) -> str:
    if not isinstance(value, str) or not _MAC.match(value.lower()):
        raise Invalid(f"{value!r} is not a MAC address such as 02:00:00:00:00:01")
    if int(value[:2], 16) & 1:
        raise Invalid(f"{value!r} is a multicast MAC address")
    return value.lower()


def endpoint(value: Any) -> tuple[str, int]:
    """'HOST:PORT' or '[V6]:PORT' -> (host, port)."""
    if not isinstance(value, str):
        raise Invalid(f"must be 'ADDRESS:PORT', got {kind(value)} {value!r}")
    host, sep, port_text = value.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise Invalid(f"{value!r} is not 'ADDRESS:PORT' with a port 1..65535")
    return ip_address(host), int(port_text)


def endpoint_text(host: str, port: int) -> str:
    """(host, port) -> 'HOST:PORT' or '[V6]:PORT': the inverse of ``endpoint``."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def datapath_id(value: Any) -> int:
    """An int, '0x1f', or '00:00:00:00:00:00:00:1f'."""
    if isinstance(value, bool):
        raise Invalid(f"{value!r} is not a datapath id")
    if isinstance(value, int):
        dpid = value
    elif isinstance(value, str):
        text = value.strip().lower().replace(":", "")
        text = text[2:] if text.startswith("0x") else text
        try:
            dpid = int(text, 16)
        except ValueError:
            raise Invalid(
                f"{value!r} is not a datapath id (int, '0x..' or 16 hex digits)"
            ) from None
    else:
        raise Invalid(f"{value!r} is not a datapath id")
    if not 0 < dpid < 2**64:
        raise Invalid(f"datapath id must be 1..2**64-1, got {dpid}")
    return dpid


def text(max_len: int = 255, pattern: str | None = None) -> Converter:
    compiled = re.compile(pattern) if pattern else None

    def check(value: Any) -> str:
        if not isinstance(value, str) or not value or len(value) > max_len:
            raise Invalid(f"must be a non-empty string of at most {max_len} characters")
        if compiled and not compiled.match(value):
            raise Invalid(f"{value!r} does not match {pattern}")
        return value

    return check


_URL_PATH = re.compile(r"^/[!-~]*$")


def url_path(value: Any) -> str:
    """A path for an HTTP request line: '/' then printable ASCII, no spaces."""
    if not isinstance(value, str) or not 1 <= len(value) <= 1024 or not _URL_PATH.match(value):
        raise Invalid(
            f"{value!r} is not a URL path ('/' then at most 1023 printable ASCII characters, "
            "no spaces; percent-encode anything else)"
        )
    return value


def optional(converter: Converter) -> Converter:
    def check(value: Any) -> Any:
        return None if value is None else converter(value)

    return check
