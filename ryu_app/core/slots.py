"""Which table slot a new flow indexes: a VIP's placement (docs/switch-mode.md).

- ``hash``: the flow key's hash (``flowkey.flow_hash``) modulo a prime table, every release's
  behaviour.
- ``port-bits``: bits 1..k of the TCP source port, indexing a Maglev table of ``2**k`` slots
  (``maglev.slot_permutation``).  A switch matches exactly these bits with one wildcard rule
  per slot (``slot_match``), identically on every switch and every Open vSwitch build, so a
  gateway that places flows in its switch and one that places them here agree flow by flow.
  Bit 0 is skipped because Linux (4.6 and later) gives ``connect()`` even source ports: with it
  half the slots would stay empty for Linux clients (bench/switchmode_balance.py).

Pure and dependency-free apart from ``flowkey``: the balancer, ``GET /v1/lookup`` and
``lockstep lookup`` all index their tables through ``placement_index``.
"""

from __future__ import annotations

from collections.abc import Sequence

from ryu_app.core.flowkey import Flow, flow_hash, hash_key
from ryu_app.core.model import PLACEMENT_PORT_BITS

# The lowest source-port bit a slot uses (bit 0 skipped, see above).
PORT_SHIFT = 1


def port_slot(src_port: int, table_size: int) -> int:
    """The slot of a source port in a ``port-bits`` table of ``table_size = 2**k`` slots:
    its bits 1..k."""
    return (src_port >> PORT_SHIFT) & (table_size - 1)


def slot_match(slot: int, table_size: int) -> tuple[int, int]:
    """(value, mask) of the ``tcp_src`` match that selects exactly the flows of ``slot``: the
    inverse of ``port_slot``, what a switch's slot rule matches."""
    return slot << PORT_SHIFT, (table_size - 1) << PORT_SHIFT


def slot_bits_text(table_size: int) -> str:
    """The slot's bits as a switch match reads: ``tcp_src & 0x1ffe`` for 4096 slots."""
    return f"tcp_src & {slot_match(0, table_size)[1]:#x}"


def placement_index(flow: Flow, hash_mode: str, placement: str, table_size: int) -> int:
    """What a VIP's table is indexed with for this flow (``MaglevTable.lookup`` takes it
    modulo the table's size): the source-port slot for ``port-bits``, else the hash of the
    flow's key under ``hash_mode``."""
    if placement == PLACEMENT_PORT_BITS:
        return port_slot(flow.src_port, table_size)
    return flow_hash(hash_key(flow, hash_mode))


def changed_slots(before: Sequence[str | None], after: Sequence[str | None]) -> list[int]:
    """The slots whose owner differs between two tables (``MaglevTable.owners``): the
    only slot rules a health or weight change rewrites in a switch."""
    return [slot for slot, (old, new) in enumerate(zip(before, after, strict=True)) if old != new]
