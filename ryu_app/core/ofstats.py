"""OpenFlow 1.3 flow statistics on the wire: the request that reads rules back from the switch
by cookie, and the reply, read part by part.  Part of the one encoder (``openflow`` holds the
rest, ``ofmeter`` the flood guard's messages; same style: the bytes os-ken writes, tested
against its serialiser and parser in ``tests/ryu_app/core/test_ofstats.py``).

Switch mode (docs/switch-mode.md, "What REST and metrics read") reads its pins and slot rules
this way.  A reply may be tens of megabytes in many parts (``OFPMPF_REPLY_MORE``), so the
parser is lazy: ``flow_stats`` yields each entry's fixed fields (cookie, priority, packets) and
where its match is; ``match_fields`` reads a match only when the caller wants it.

Layouts: OpenFlow 1.3.5 sections 7.2.2 (OXM), 7.3.5 (multipart header), 7.3.5.2 (individual
flow statistics request and reply).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import NamedTuple

from ryu_app.core import openflow as of
from ryu_app.core.ofmeter import HEADER, MULTIPART_HEAD, OFPT_MULTIPART_REPLY, multipart_request
from ryu_app.core.openflow import WireError

OFPMP_FLOW = 1
OFPMPF_REPLY_MORE = 1

# table_id, pad, out_port, out_group, pad, cookie, cookie_mask; then the match
_FLOW_STATS_REQUEST = struct.Struct("!B3xII4xQQ")
# length, table_id, pad, duration (s, ns), priority, idle and hard timeouts, flags, pad,
# cookie, packet count, byte count; then the match and the instructions
_FLOW_STATS = struct.Struct("!HBxIIHHHH4xQQQ")
_MATCH_HEAD = struct.Struct("!HH")  # type, length
_OXM = struct.Struct("!I")
MULTIPART_HEAD_SIZE = 16


def flow_stats_request(
    cookie: int, cookie_mask: int, match: bytes | None = None, xid: int = 0
) -> bytes:
    """Ask for the statistics of every rule (all tables, any output) whose cookie matches
    ``cookie`` under ``cookie_mask`` and whose match is at least as specific as ``match``
    (``openflow.match``; none: every rule).  ``xid`` tells its reply from others'."""
    body = _FLOW_STATS_REQUEST.pack(of.OFPTT_ALL, of.OFPP_ANY, of.OFPG_ANY, cookie, cookie_mask)
    body += of.match() if match is None else match
    return multipart_request(OFPMP_FLOW, body, xid)


class ReplyPart(NamedTuple):
    """A multipart reply's header: which request it answers, whether more parts follow."""

    xid: int
    kind: int  # OFPMP_*
    more: bool


def reply_part(message: bytes) -> ReplyPart:
    if len(message) < MULTIPART_HEAD_SIZE:
        raise WireError("bad-multipart", f"{len(message)} bytes is too short")
    _, msg_type, length, xid = HEADER.unpack_from(message)
    if msg_type != OFPT_MULTIPART_REPLY or length != len(message):
        raise WireError("bad-multipart", f"type {msg_type}, length {length} of {len(message)}")
    kind, flags = MULTIPART_HEAD.unpack_from(message, 8)
    return ReplyPart(xid, kind, bool(flags & OFPMPF_REPLY_MORE))


class FlowEntry(NamedTuple):
    """One rule of a flow statistics reply: its fixed fields, and where its match is."""

    cookie: int
    priority: int
    packets: int
    match_at: int  # offset of the rule's ``ofp_match`` in the message


def flow_stats(message: bytes) -> Iterator[FlowEntry]:
    """The rules of one part of a flow statistics reply, in order.  Raises ``WireError``
    (reason ``bad-flow-stats``) at the first entry that does not frame (the entries before it
    have been yielded: a caller that wants all or nothing keeps them aside until the end)."""
    offset, end = MULTIPART_HEAD_SIZE, len(message)
    size = _FLOW_STATS.size
    while offset < end:
        if end - offset < size + _MATCH_HEAD.size:
            raise WireError("bad-flow-stats", f"{end - offset} bytes left at {offset}")
        length, _table, _s, _ns, priority, *_, cookie, packets, _bytes = _FLOW_STATS.unpack_from(
            message, offset
        )
        match_type, match_len = _MATCH_HEAD.unpack_from(message, offset + size)
        padded_match = -(-match_len // 8) * 8
        if (
            length % 8
            or offset + length > end
            or match_type != of.OFPMT_OXM
            or match_len < _MATCH_HEAD.size
            or size + padded_match > length
        ):
            raise WireError(
                "bad-flow-stats", f"entry at {offset}: length {length}, match {match_len}"
            )
        yield FlowEntry(cookie, priority, packets, offset + size)
        offset += length


def match_fields(message: bytes, match_at: int) -> dict[int, tuple[bytes, bytes | None]]:
    """The basic-class OXM fields of the ``ofp_match`` at ``match_at`` (framed by
    ``flow_stats``): field number -> (value, mask or None).  Other classes (Nicira's, an
    experimenter's) are stepped over; a field that runs past the match raises ``WireError``."""
    _, match_len = _MATCH_HEAD.unpack_from(message, match_at)
    end = match_at + match_len
    fields = {}
    offset = match_at + _MATCH_HEAD.size
    while offset + 4 <= end:
        header = _OXM.unpack_from(message, offset)[0]
        length = header & 0xFF
        start, offset = offset + 4, offset + 4 + length
        if offset > end:
            raise WireError("bad-flow-stats", f"OXM {header:#x} runs past its match")
        if header >> 16 != of.OXM_BASIC:
            continue
        if header & 0x100:  # has a mask: value and mask, half each
            half = length // 2
            fields[header >> 9 & 0x7F] = (
                message[start : start + half],
                message[start + half : offset],
            )
        else:
            fields[header >> 9 & 0x7F] = (message[start:offset], None)
    return fields
