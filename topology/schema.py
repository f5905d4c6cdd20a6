"""A small declarative schema engine: fields with a type, a default and a check, declared once.

Every problem is collected with the key path where it was found (``vips[0].backends[2].weight``)
and the reason, so a user sees all of them at once.  Unknown keys are problems too.  The same
engine serves the command-line check, controller start-up and the REST API.

Collecting stops at ``MAX_PROBLEMS``: a hostile body of half a million bad items must cost a
bounded time and a bounded answer, and nobody reads the thousandth problem.  Values are quoted in
messages through ``shown``, which shortens them, for the same reason.

Each converter carries the JSON Schema (OpenAPI 3.0's dialect) of what it accepts as
``json_schema``, so the REST API's document is derived from the validator and cannot drift from
it; patterns are kept once, unanchored, matched with ``fullmatch`` here and written ``^(?:...)$``
in the document (in a JSON Schema pattern ``$`` is the end of the string; Python's ``re`` also
lets it match before a final newline, which is how ``"web\\n"`` once passed as a name).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

REQUIRED = object()  # marker: a field without a default
MAX_PROBLEMS = 100  # validation stops collecting here
SHOWN_LENGTH = 60  # characters of a value quoted in a message


@dataclass(frozen=True)
class Problem:
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}" if self.path else self.reason


class ConfigError(ValueError):
    """One or more problems in a configuration; ``problems`` lists them, at most MAX_PROBLEMS
    (``stopped`` says validation stopped there and there may be more)."""

    def __init__(self, problems: list[Problem]):
        problems = list(problems)
        self.problems = problems[:MAX_PROBLEMS]
        self.stopped = len(problems) >= MAX_PROBLEMS
        lines = [str(problem) for problem in self.problems]
        if self.stopped:
            lines.append(f"(validation stopped after {MAX_PROBLEMS} problems)")
        super().__init__("\n".join(lines))


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


def shorten(text: str, limit: int = SHOWN_LENGTH) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def shown(value: Any) -> str:
    """``repr(value)``, shortened: a message quotes what it refuses, not a megabyte of it."""
    if isinstance(value, (dict, list)):
        return kind(value)
    if isinstance(value, str) and len(value) > SHOWN_LENGTH:
        return repr(value[:SHOWN_LENGTH]) + "..."
    return shorten(repr(value))


def full(problems: list) -> bool:
    return len(problems) >= MAX_PROBLEMS


class Section:
    """A mapping with declared fields.  ``read`` returns a dict of converted values (defaults
    filled in), or None if any problem was found; problems are appended to ``problems``."""

    def __init__(self, fields: Mapping[str, Field]):
        self.fields = dict(fields)

    @property
    def json_schema(self) -> dict:
        """An object with these fields: required ones listed, defaults stated, nothing else."""
        properties = {}
        for key, spec in self.fields.items():
            prop = dict(schema_of(spec.convert))
            if isinstance(spec.convert, Section):
                prop["nullable"] = True  # read as {}: every default
            if spec.doc:
                known = prop.get("description")
                prop["description"] = f"{spec.doc}; {known}" if known else spec.doc
            if spec.default is not REQUIRED and isinstance(spec.default, (int, float, str)):
                prop["default"] = spec.default
            properties[key] = prop
        result = {"type": "object", "properties": properties, "additionalProperties": False}
        required = [key for key, spec in self.fields.items() if spec.default is REQUIRED]
        if required:
            result["required"] = required
        return result

    def read(self, data: Any, path: str, problems: list[Problem]) -> dict | None:
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            problems.append(Problem(path, f"must be a mapping, got {kind(data)}"))
            return None
        before = len(problems)
        result: dict[str, Any] = {}
        for key in data:
            if full(problems):
                return None
            if key not in self.fields:
                known = ", ".join(sorted(self.fields))
                where = join(path, shorten(str(key)))
                problems.append(Problem(where, f"unknown key (known: {known})"))
        for name, spec in self.fields.items():
            if full(problems):
                return None
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
    def __init__(self, item: Converter | Section, min_items: int = 0, max_items: int | None = None):
        self.item = item
        self.min_items = min_items
        self.max_items = max_items

    @property
    def json_schema(self) -> dict:
        result = {"type": "array", "items": schema_of(self.item), "nullable": True}
        if self.min_items:
            result["minItems"] = self.min_items
            del result["nullable"]  # null means an empty list, which is too short
        if self.max_items is not None:
            result["maxItems"] = self.max_items
        return result

    def read(self, data: Any, path: str, problems: list[Problem]) -> list | None:
        if data is None:
            data = []
        if not isinstance(data, list):
            problems.append(Problem(path, f"must be a list, got {kind(data)}"))
            return None
        if len(data) < self.min_items:
            problems.append(Problem(path, f"needs at least {self.min_items} item(s)"))
            return None
        if self.max_items is not None and len(data) > self.max_items:
            problems.append(Problem(path, f"has {len(data)} items, at most {self.max_items}"))
            return None
        before = len(problems)
        items = []
        for index, value in enumerate(data):
            if full(problems):
                return None
            items.append(convert(self.item, value, join(path, index), problems))
        return items if len(problems) == before else None


def schema_of(converter: Converter | Section | ListOf) -> dict:
    """The JSON Schema a converter declared (see the module docstring)."""
    try:
        return converter.json_schema
    except AttributeError:
        raise TypeError(f"{converter!r} declares no json_schema") from None


def described(schema: dict) -> Callable[[Converter], Converter]:
    """Decorator: attach the JSON Schema of what the converter accepts."""

    def attach(function: Converter) -> Converter:
        function.json_schema = schema
        return function

    return attach


def anchored(pattern: str) -> str:
    """A ``fullmatch`` pattern as a JSON Schema (ECMA-262) pattern."""
    return f"^(?:{pattern})$"


def kind(value: Any) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "nothing (null)"
    return names.get(type(value), type(value).__name__)


# ---- converters -------------------------------------------------------------------------------
# Each states what it accepts twice, once as code and once as JSON Schema (``described``);
# tests/ryu_app/test_openapi_schema.py holds the two to the same samples.

NAME_PATTERN = r"[A-Za-z][A-Za-z0-9_.-]{0,62}"
_NAME = re.compile(NAME_PATTERN)


@described(
    {
        "type": "string",
        "pattern": anchored(NAME_PATTERN),
        "minLength": 1,
        "maxLength": 63,
        "description": "a letter, then up to 62 letters, digits, '_', '.', '-'",
    }
)
def name(value: Any) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise Invalid(
            f"{shown(value)} is not a name (a letter, then up to 62 letters, digits, '_', '.', '-')"
        )
    return value


HOST_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,252}"
_HOST = re.compile(HOST_PATTERN)


@described({"type": "string", "pattern": anchored(HOST_PATTERN), "maxLength": 253})
def host_name(value: Any) -> str:
    """A machine's name (its hostname, say): only compared with other gateways' ``host``."""
    if not isinstance(value, str) or not _HOST.fullmatch(value):
        raise Invalid(
            f"{shown(value)} is not a host name (a letter or digit, then up to 252 letters, "
            "digits, '_', '.', '-')"
        )
    return value


def integer(low: int, high: int) -> Converter:
    @described({"type": "integer", "minimum": low, "maximum": high})
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(f"must be an integer, got {kind(value)} {shown(value)}")
        if not low <= value <= high:
            raise Invalid(f"must be {low}..{high}, got {shorten(str(value))}")
        return value

    return check


def number(low: float, high: float) -> Converter:
    @described({"type": "number", "minimum": low, "maximum": high})
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Invalid(f"must be a number, got {kind(value)} {shown(value)}")
        if not low <= value <= high:
            raise Invalid(f"must be {low}..{high}, got {shorten(str(value))}")
        return float(value)

    return check


def choice(*options: object) -> Converter:
    types = {"string" if isinstance(o, str) else "integer" for o in options}
    schema: dict = {"enum": list(options)}
    if len(types) == 1:
        schema["type"] = types.pop()

    @described(schema)
    def check(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, Hashable) or value not in options:
            raise Invalid(f"must be one of {', '.join(map(str, options))}; got {shown(value)}")
        return value

    return check


_PORT = re.compile(r"[0-9]{1,5}")


def endpoint(value: Any) -> tuple[str, int]:
    """'HOST:PORT' or '[V6]:PORT' -> (host, port): a listener's address, which may be a
    wildcard or loopback (``topology.addresses`` holds the addresses of hosts and services)."""
    if not isinstance(value, str):
        raise Invalid(f"must be 'ADDRESS:PORT', got {kind(value)} {shown(value)}")
    host, sep, port_text = value.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not _PORT.fullmatch(port_text) or not 1 <= int(port_text) <= 65535:
        raise Invalid(f"{shown(value)} is not 'ADDRESS:PORT' with a port 1..65535")
    try:
        if "%" in host:  # no '%zone': the address alone must say where
            raise ValueError(host)
        address = ipaddress.ip_address(host)
    except ValueError:
        raise Invalid(f"{shown(host)} is not an IPv4 or IPv6 address") from None
    if (address.packed[0] == 0xFF) if address.version == 6 else (address.packed[0] >= 224):
        raise Invalid(f"{address} cannot be listened on (multicast, broadcast or reserved)")
    return str(address), int(port_text)


def endpoint_text(host: str, port: int) -> str:
    """(host, port) -> 'HOST:PORT' or '[V6]:PORT': the inverse of ``endpoint``."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


_DPID = re.compile(r"(?:0x)?[0-9a-f]{1,16}|[0-9a-f]{2}(?::[0-9a-f]{2}){7}")


def datapath_id(value: Any) -> int:
    """An int, '0x1f', '1f', or '00:00:00:00:00:00:00:1f'."""
    if isinstance(value, bool):
        raise Invalid(f"{value!r} is not a datapath id")
    if isinstance(value, int):
        dpid = value
    elif isinstance(value, str) and value.isascii() and _DPID.fullmatch(value.lower()):
        text = value.lower().replace(":", "")
        dpid = int(text[2:] if text.startswith("0x") else text, 16)
    else:
        raise Invalid(f"{shown(value)} is not a datapath id (int, '0x..' or 16 hex digits)")
    if not 0 < dpid < 2**64:
        raise Invalid(f"datapath id must be 1..2**64-1, got {dpid}")
    return dpid


def text(max_len: int = 255, pattern: str | None = None) -> Converter:
    compiled = re.compile(pattern) if pattern else None
    schema: dict = {"type": "string", "minLength": 1, "maxLength": max_len}
    if pattern:
        schema["pattern"] = anchored(pattern)

    @described(schema)
    def check(value: Any) -> str:
        if not isinstance(value, str) or not value or len(value) > max_len:
            raise Invalid(f"must be a non-empty string of at most {max_len} characters")
        if compiled and not compiled.fullmatch(value):
            raise Invalid(f"{shown(value)} does not match {pattern}")
        return value

    return check


URL_PATH_PATTERN = r"/[!-~]*"
_URL_PATH = re.compile(URL_PATH_PATTERN)


@described(
    {
        "type": "string",
        "pattern": anchored(URL_PATH_PATTERN),
        "minLength": 1,
        "maxLength": 1024,
        "description": "'/' then printable ASCII, no spaces (percent-encode anything else)",
    }
)
def url_path(value: Any) -> str:
    """A path for an HTTP request line: '/' then printable ASCII, no spaces."""
    if not isinstance(value, str) or not 1 <= len(value) <= 1024 or not _URL_PATH.fullmatch(value):
        raise Invalid(
            f"{shown(value)} is not a URL path ('/' then at most 1023 printable ASCII characters, "
            "no spaces; percent-encode anything else)"
        )
    return value


def optional(converter: Converter) -> Converter:
    @described({**schema_of(converter), "nullable": True})
    def check(value: Any) -> Any:
        return None if value is None else converter(value)

    return check
