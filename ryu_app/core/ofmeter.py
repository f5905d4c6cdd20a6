"""OpenFlow 1.3 meters and errors on the wire: the flood guard's messages, and what the switch
says back.  Part of the one encoder (``openflow`` holds the rest; this module adds what the
flood guard needs, in the same style: bytes os-ken would write, property-tested against its
serialiser and parsers in ``tests/ryu_app/core/test_ofmeter.py``).

- ``meter_features_request`` / ``parse_meter_features``: does the switch have meters that
  drop packets at a rate in packets per second (asked at every connection; Open vSwitch's
  userspace datapath has had them since 2.7, its kernel datapath since 2.10 on Linux 4.15);
- ``meter_mod``: add, modify or delete a meter with one drop band (``OFPMC_*``);
- a rule's packets go through a meter first with ``openflow.flow_mod(..., meter_id=N)``;
- ``meter_stats_request`` / ``parse_meter_stats``: per meter, the packets its band dropped;
- ``parse_error``: an ``OFPT_ERROR``'s type, code and the header of the message it refuses.

Layouts: OpenFlow 1.3.5 sections 7.2.4 (``OFPIT_METER``), 7.3.4.4 (meter-mod, drop band),
7.3.5.12-14 (meter statistics, configuration, features), 7.4.4 (error message).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from ryu_app.core.openflow import OFP_VERSION, OFPT_MULTIPART_REQUEST, WireError

OFPT_ERROR = 1
OFPT_MULTIPART_REPLY = 19
OFPT_METER_MOD = 29

OFPMP_METER = 9
OFPMP_METER_FEATURES = 11

OFPMC_ADD, OFPMC_MODIFY, OFPMC_DELETE = 0, 1, 2
OFPMF_KBPS, OFPMF_PKTPS, OFPMF_BURST, OFPMF_STATS = 1, 2, 4, 8
OFPMBT_DROP = 1
OFPM_ALL = 0xFFFFFFFF  # every meter (a delete, a statistics request)
OFPM_MAX = 0xFFFF0000  # the last meter id a controller may use

HEADER = struct.Struct("!BBHI")  # version, type, length, xid
MULTIPART_HEAD = struct.Struct("!HH4x")  # type, flags, pad
_METER_MOD = struct.Struct("!HHI")  # command, flags, meter id
_DROP_BAND = struct.Struct("!HHII4x")  # type, length, rate, burst size, pad
_METER_FEATURES = struct.Struct("!IIIBB2x")  # max_meter, band_types, capabilities, bands, colors
_METER_STATS = struct.Struct("!IH6xIQQII")  # id, length, pad, flows, packets, bytes, duration
_BAND_STATS = struct.Struct("!QQ")  # packets, bytes
_ERROR = struct.Struct("!HH")  # type, code


def meter_features_request() -> bytes:
    return multipart_request(OFPMP_METER_FEATURES, b"")


def meter_stats_request(meter_id: int = OFPM_ALL) -> bytes:
    return multipart_request(OFPMP_METER, struct.pack("!I4x", meter_id))


def multipart_request(kind: int, body: bytes, xid: int = 0) -> bytes:
    """An OpenFlow 1.3 multipart request of ``kind`` (``OFPMP_*``) with ``body``."""
    length = 16 + len(body)
    head = HEADER.pack(OFP_VERSION, OFPT_MULTIPART_REQUEST, length, xid)
    return head + MULTIPART_HEAD.pack(kind, 0) + body


def meter_mod(
    command: int, meter_id: int, rate: int = 0, burst: int = 0, stats: bool = True
) -> bytes:
    """A meter of ``rate`` packets per second (``burst`` packets above it allowed at once, if
    any) whose one band drops the excess, with statistics if ``stats``; ``OFPMC_DELETE``
    needs no band."""
    flags = OFPMF_PKTPS | (OFPMF_STATS if stats else 0) | (OFPMF_BURST if burst else 0)
    band = b"" if command == OFPMC_DELETE else _DROP_BAND.pack(OFPMBT_DROP, 16, rate, burst)
    body = _METER_MOD.pack(command, flags, meter_id) + band
    return HEADER.pack(OFP_VERSION, OFPT_METER_MOD, 8 + len(body), 0) + body


class MeterFeatures(NamedTuple):
    max_meter: int
    band_types: int  # bitmap of 1 << OFPMBT_*
    capabilities: int  # bitmap of OFPMF_*
    max_bands: int

    @property
    def can_guard(self) -> bool:
        """Whether the flood guard can run on this switch: meters that drop by packet rate."""
        return (
            self.max_meter > 0
            and bool(self.band_types & 1 << OFPMBT_DROP)
            and bool(self.capabilities & OFPMF_PKTPS)
            and self.max_bands > 0
        )


def multipart_kind(message: bytes) -> int:
    """The statistics type of a MULTIPART_REPLY (``OFPMP_*``)."""
    if len(message) < 16:
        raise WireError("bad-multipart", f"{len(message)} bytes is too short")
    return MULTIPART_HEAD.unpack_from(message, 8)[0]


def refused_multipart_kind(error: SwitchError) -> int | None:
    """The statistics type of the multipart request an error refuses, if it refuses one."""
    if error.refused_type != OFPT_MULTIPART_REQUEST or len(error.refused) < 16:
        return None
    return multipart_kind(error.refused)


def parse_meter_features(message: bytes) -> MeterFeatures:
    if len(message) < 16 + _METER_FEATURES.size:
        raise WireError("bad-meter-features", f"{len(message)} bytes is too short")
    max_meter, band_types, capabilities, max_bands, _ = _METER_FEATURES.unpack_from(message, 16)
    return MeterFeatures(max_meter, band_types, capabilities, max_bands)


def parse_meter_stats(message: bytes) -> dict[int, int]:
    """Meter id -> packets its bands dropped (the sum over its bands), of one reply part."""
    dropped = {}
    offset = 16
    while offset + _METER_STATS.size <= len(message):
        meter_id, length, *_ = _METER_STATS.unpack_from(message, offset)
        if length < _METER_STATS.size or offset + length > len(message):
            raise WireError("bad-meter-stats", f"meter {meter_id}: length {length}")
        bands = range(offset + _METER_STATS.size, offset + length, _BAND_STATS.size)
        dropped[meter_id] = sum(_BAND_STATS.unpack_from(message, at)[0] for at in bands)
        offset += length
    return dropped


class SwitchError(NamedTuple):
    type: int
    code: int
    refused_type: int | None  # the OFPT_* of the message it refuses, if it quotes one
    refused: bytes  # what it quotes of that message (at least its first 64 bytes)


def parse_error(message: bytes) -> SwitchError:
    if len(message) < 12:
        raise WireError("bad-error", f"{len(message)} bytes is too short")
    kind, code = _ERROR.unpack_from(message, 8)
    refused = message[12:]
    return SwitchError(kind, code, refused[1] if len(refused) >= 8 else None, refused)
