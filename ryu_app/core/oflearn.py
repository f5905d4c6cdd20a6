"""Nicira's ``learn`` action on the wire (``NXAST_LEARN``): the action by which a switch-mode
gateway's switch installs a flow's pin itself (docs/switch-mode.md, "Rules").

Kept apart from ``openflow`` (the one encoder for everything else) because only switch mode
needs it.  Each builder produces exactly the bytes os-ken's ``NXActionLearn`` and its
``NXFlowSpecMatch`` / ``NXFlowSpecLoad`` / ``NXFlowSpecOutput`` serialise for the same action
(``tests/ryu_app/core/test_oflearn.py`` compares them).

A learn action is its parameters (timeouts, priority, cookie, flags, table) and a list of flow
specs, each ``header, source, destination``:

- ``match_field(dst, src)``: the learned rule matches ``dst`` against this packet's ``src``
  (``NXM_OF_IP_SRC[]`` in ovs-ofctl's words);
- ``match_value(dst, value)``: ... against a constant (``eth_type=0x800``);
- ``load_value(value, dst)``: the learned rule sets ``dst`` (``load:0x...->NXM_OF_ETH_DST[]``);
- ``output_field(src)``: the learned rule outputs to the port that ``src`` holds *now*
  (``output:NXM_NX_REG1[]``).

Fields are named as os-ken names them (``in_port_nxm``, ``reg1``, ...): in a flow spec a field
is its 4-byte NXM/OXM header and a bit offset.  Layout: Open vSwitch's ``nx_action_learn`` and
``NX_LEARN_*`` (``include/openflow/nicira-ext.h``, ``lib/learn.c``).
"""

from __future__ import annotations

import struct

from ryu_app.core.openflow import NX_EXPERIMENTER, OFP_DEFAULT_PRIORITY, OFPAT_EXPERIMENTER

NXAST_LEARN = 16
NXAST_LEARN2 = 45  # NXAST_LEARN, then limit (u32), result_dst_ofs (u16), 2 pad (OVS >= 2.12)
MAX_LEARN_LIMIT = 2**32 - 1
# flags of the learn action (not of the learned rule's flow-mod)
NX_LEARN_F_SEND_FLOW_REM = 1
NX_LEARN_F_DELETE_LEARNED = 2
# a flow spec's header: source type (bit 13), destination type (bits 11-12), n_bits
_SRC_FIELD, _SRC_IMMEDIATE = 0, 1
_DST_MATCH, _DST_LOAD, _DST_OUTPUT = 0, 1, 2

NXM_0, NXM_1 = 0x0000, 0x0001
# name (os-ken's) -> (NXM class, field number, bytes): the fields a pin's spec names.
LEARN_FIELDS = {
    "in_port_nxm": (NXM_0, 0, 2),
    "eth_dst_nxm": (NXM_0, 1, 6),
    "eth_src_nxm": (NXM_0, 2, 6),
    "eth_type_nxm": (NXM_0, 3, 2),
    "ip_proto_nxm": (NXM_0, 6, 1),
    "ipv4_src_nxm": (NXM_0, 7, 4),
    "ipv4_dst_nxm": (NXM_0, 8, 4),
    "tcp_src_nxm": (NXM_0, 9, 2),
    "tcp_dst_nxm": (NXM_0, 10, 2),
    "udp_src_nxm": (NXM_0, 11, 2),
    "udp_dst_nxm": (NXM_0, 12, 2),
    "reg0": (NXM_1, 0, 4),
    "reg1": (NXM_1, 1, 4),
    "tunnel_id_nxm": (NXM_1, 16, 8),
    "ipv6_src_nxm": (NXM_1, 19, 16),
    "ipv6_dst_nxm": (NXM_1, 20, 16),
    "tun_ipv4_dst": (NXM_1, 32, 4),
}

# idle, hard, priority, cookie, flags, table, 1 pad, fin idle, fin hard
_LEARN = struct.Struct("!HHHQHBxHH")
_EXPERIMENTER_HEAD = struct.Struct("!HHIH")  # type, length, experimenter, subtype
_LEARN2 = struct.Struct("!IHxx")  # limit, result_dst_ofs (0: no NX_LEARN_F_WRITE_RESULT), pad


def field_bits(name: str) -> int:
    """A learn field's width in bits (a spec's default ``n_bits``: the whole field)."""
    return LEARN_FIELDS[name][2] * 8


def _subfield(name: str, ofs: int) -> bytes:
    """A field in a flow spec: its NXM header (unmasked, length = field size), bit offset."""
    nxm_class, number, size = LEARN_FIELDS[name]
    return struct.pack("!HBBH", nxm_class, number << 1, size, ofs)


def _spec_header(src_type: int, dst_type: int, n_bits: int) -> bytes:
    return struct.pack("!H", src_type << 13 | dst_type << 11 | n_bits)


def _immediate(value: int, n_bits: int) -> bytes:
    """A constant in a flow spec: ``n_bits`` rounded up to 16-bit units, big-endian."""
    return value.to_bytes((n_bits + 15) // 16 * 2, "big")


def match_field(dst: str, src: str | None = None, n_bits: int | None = None) -> bytes:
    """The learned rule matches ``dst`` with the value ``src`` (default: ``dst`` itself) has in
    the packet being learned from."""
    n_bits = field_bits(dst) if n_bits is None else n_bits
    head = _spec_header(_SRC_FIELD, _DST_MATCH, n_bits)
    return head + _subfield(src or dst, 0) + _subfield(dst, 0)


def match_value(dst: str, value: int, n_bits: int | None = None) -> bytes:
    """The learned rule matches ``dst`` against the constant ``value``."""
    n_bits = field_bits(dst) if n_bits is None else n_bits
    head = _spec_header(_SRC_IMMEDIATE, _DST_MATCH, n_bits)
    return head + _immediate(value, n_bits) + _subfield(dst, 0)


def load_value(value: int, dst: str, n_bits: int | None = None) -> bytes:
    """The learned rule's action: set ``dst`` to the constant ``value``."""
    n_bits = field_bits(dst) if n_bits is None else n_bits
    head = _spec_header(_SRC_IMMEDIATE, _DST_LOAD, n_bits)
    return head + _immediate(value, n_bits) + _subfield(dst, 0)


def output_field(src: str, n_bits: int | None = None) -> bytes:
    """The learned rule's action: output to the port ``src`` holds when the rule is learned."""
    n_bits = field_bits(src) if n_bits is None else n_bits
    return _spec_header(_SRC_FIELD, _DST_OUTPUT, n_bits) + _subfield(src, 0)


def learn(
    specs: list[bytes],
    table_id: int = 0,
    idle_timeout: int = 0,
    hard_timeout: int = 0,
    priority: int = OFP_DEFAULT_PRIORITY,
    cookie: int = 0,
    flags: int = 0,
    fin_idle_timeout: int = 0,
    fin_hard_timeout: int = 0,
    limit: int = 0,
) -> bytes:
    """The learn action (os-ken's ``NXActionLearn`` defaults): the experimenter header, its
    parameters, the concatenated ``specs``, zero-padded to a multiple of 8 bytes.

    ``limit`` > 0: Open vSwitch's ``NXAST_LEARN2`` (``struct nx_action_learn2``, OVS >= 2.12,
    lib/ofp-actions.c), which learns no rule while the table holds ``limit`` rules with the
    learned rule's cookie (``ofproto_flow_mod_learn``: counted by cookie, not per action);
    the packet's other actions still run.  No result written (``NX_LEARN_F_WRITE_RESULT``)."""
    if not 0 <= limit <= MAX_LEARN_LIMIT:
        raise ValueError(f"learn limit {limit} is not in 0..{MAX_LEARN_LIMIT}")
    body = _LEARN.pack(
        idle_timeout, hard_timeout, priority, cookie, flags, table_id,
        fin_idle_timeout, fin_hard_timeout,
    )  # fmt: skip
    if limit:
        body += _LEARN2.pack(limit, 0)
    body += b"".join(specs)
    subtype = NXAST_LEARN2 if limit else NXAST_LEARN
    length = -(-(_EXPERIMENTER_HEAD.size + len(body)) // 8) * 8
    head = _EXPERIMENTER_HEAD.pack(OFPAT_EXPERIMENTER, length, NX_EXPERIMENTER, subtype)
    action = head + body
    return action + bytes(length - len(action))
