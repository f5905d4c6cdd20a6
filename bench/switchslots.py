"""Switch mode's placement function, as a prototype (issue 14): a slot taken from masked bits
of the packet, and a Maglev table of a power-of-two size indexed by it.

Why bits and not a hash: an Open vSwitch gateway can match masked bits with plain OpenFlow
wildcard rules (identical on every switch and every build), and its datapath then caches one
megaflow per slot instead of one per connection; OVS's own ``multipath``/``select`` hashes
depend on how OVS was built (lib/hash.h: CRC32 with SSE4.2 or on aarch64, Murmur otherwise).
Why a power of two: ``2**k`` slots are exactly the values of ``k`` bits, so every slot is one
rule.  Maglev's permutation needs ``skip`` coprime with the size: with ``2**k`` that is any odd
``skip``.  ``bench/switchmode_balance.py`` measures which bits balance real clients.

The design's choice, port bits 1..k into a ``2**k`` Maglev table, lives in ``ryu_app.core``
(``slots.port_slot``, ``maglev.slot_permutation``); this module keeps the other bit choices the
bench measures (``SlotBits``: with bit 0, with address bits) and builds its tables with the core.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from ryu_app.core.maglev import build_table
from ryu_app.core.maglev import slot_permutation as pow2_permutation  # noqa: F401 (the bench's name)
from ryu_app.core.model import PLACEMENT_PORT_BITS
from ryu_app.core.slots import changed_slots  # noqa: F401 (the bench's name)

MIN_BITS, MAX_BITS = 1, 16


@dataclass(frozen=True)
class SlotBits:
    """Which bits of a flow make its slot: ``port_bits`` bits of the source port starting at bit
    ``port_shift``, below ``ip_bits`` low bits of the source address.

    ``port_shift=1`` skips bit 0, which Linux (4.6 and later) keeps at 0 for the source ports
    of ``connect()`` (even ports for connect, odd for bind): a slot with bit 0 in it would leave
    half the table unused for Linux clients."""

    port_bits: int
    port_shift: int = 1
    ip_bits: int = 0

    @property
    def width(self) -> int:
        return self.port_bits + self.ip_bits

    def __post_init__(self):
        if not MIN_BITS <= self.width <= MAX_BITS:
            raise ValueError(f"slot width must be {MIN_BITS}..{MAX_BITS} bits, got {self.width}")
        if self.port_bits < 0 or self.ip_bits < 0 or self.port_shift < 0:
            raise ValueError("bit counts and shift must be >= 0")
        if self.port_shift + self.port_bits > 16:
            raise ValueError("port bits must fit in 16 bits")


def slot_of(src_ip: str | int, src_port: int, bits: SlotBits) -> int:
    """The slot of a flow: its chosen source-address bits above its chosen source-port bits."""
    address = int(ipaddress.ip_address(src_ip)) if isinstance(src_ip, str) else src_ip
    port = (src_port >> bits.port_shift) & ((1 << bits.port_bits) - 1)
    ip = address & ((1 << bits.ip_bits) - 1)
    return ip << bits.port_bits | port


def slot_match(slot: int, bits: SlotBits) -> dict[str, tuple[int, int]]:
    """The (value, mask) pairs an OpenFlow rule matches for one slot: ``tcp_src`` (or
    ``udp_src``) and, with address bits, ``ipv4_src``; the inverse of ``slot_of``."""
    port_mask = ((1 << bits.port_bits) - 1) << bits.port_shift
    fields = {"src_port": ((slot & ((1 << bits.port_bits) - 1)) << bits.port_shift, port_mask)}
    if bits.ip_bits:
        fields["src_ip"] = (slot >> bits.port_bits, (1 << bits.ip_bits) - 1)
    return fields


def build_pow2_table(backends: Iterable[tuple[str, int]], bits: int) -> tuple[str | None, ...]:
    """The owner of each of the ``2**bits`` slots (None when no backend has a weight > 0): the
    core's ``port-bits`` table (``ryu_app.core.maglev``, one implementation), by name."""
    if not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f"bits must be {MIN_BITS}..{MAX_BITS}, got {bits}")
    return build_table(backends, 1 << bits, PLACEMENT_PORT_BITS).owners()
