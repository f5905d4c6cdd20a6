"""What a gateway's switch holds of its switch-mode VIPs' slot rules, and the flow-mods that make
it follow each VIP's table (docs/switch-mode.md, "Health changes, drain and restart").

``GatewayCore`` asks ``SlotRules.follow`` after anything that may have swapped a VIP's Maglev
table in (a built table, a health verdict whose table was cached, a changed VIP): the first
time the whole table is written (``switchrules.vip_slot_rules``), after that only the slots
whose owner, or owner's target (its id, MAC or tunnel endpoint), changed.  A VIP whose rules'
shape changed (address, port, table size, VNI, idle timeout, pin limit) loses its old rules
first.  A VIP that left switch mode, or went, loses them all (``remove``); its packets fall
back to its punt.  Pins are never touched here: a down backend's go with
``pipeline.delete_backend_flows`` at the end of its grace, a draining one's stay.

Pure: it keeps only what it wrote, and is told to forget it when the switch forgets
(``forget``: a reconnection or a pipeline replaced by ``delete_own_flows``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

from ryu_app.core.model import MODE_SWITCH, Vip
from ryu_app.core.pipeline import Ports
from ryu_app.core.switchrules import (
    Target,
    remove_slot_rules,
    slot_rules,
    targets_of,
    vip_slot_rules,
)


class Written(NamedTuple):
    """A VIP's slot rules as in the switch: the VIP they were built from, each slot's owner,
    the owners' targets."""

    vip: Vip
    owners: tuple[str | None, ...]
    targets: dict[str, Target]


def rules_shape(vip: Vip) -> tuple:
    """What every slot rule of a VIP depends on besides its owner: a change rewrites all."""
    limit = vip.max_pins_per_backend
    return vip.address, vip.port, vip.protocol, vip.table_size, vip.vni, vip.idle_timeout, limit


def moved_slots(before: Written, owners: Sequence[str | None], targets: Mapping) -> list[int]:
    """Slots whose rules differ from ``before``: another owner, or the same one elsewhere."""
    return [
        slot
        for slot, (old, new) in enumerate(zip(before.owners, owners, strict=True))
        if old != new or (new is not None and before.targets.get(new) != targets[new])
    ]


def _known_owners(
    owners: tuple[str | None, ...], targets: dict[str, Target], before: Written | None
) -> tuple[str | None, ...]:
    """``owners`` as they can be written.  The table in use may still name a backend the VIP
    no longer has (it is kept until the new one is built): its slots keep the rules they have
    (its last target is kept in ``targets``), or, when none were written, get none yet (the
    VIP's punt takes their packets until the new table comes)."""
    known = before.targets if before is not None else {}
    for owner in set(owners) - set(targets) - {None}:
        if owner in known:
            targets[owner] = known[owner]
    return tuple(owner if owner in targets else None for owner in owners)


class SlotRules:
    """The slot rules written to one switch, per VIP name."""

    def __init__(self):
        self._written: dict[str, Written] = {}

    def __contains__(self, name: str) -> bool:
        return name in self._written

    def forget(self) -> None:
        """The switch holds none of them any more (all our rules were deleted)."""
        self._written.clear()

    def follow(
        self, vip: Vip, owners: Sequence[str | None], backend_ids: Mapping[str, int], ports: Ports
    ) -> list[bytes]:
        """The flow-mods that make the switch place ``vip``'s new flows by ``owners`` (its
        table in use, ``MaglevTable.owners``) if it is in switch mode, or not at all if not.
        A table of another size than the VIP's is an older one, kept while the VIP's is built:
        the switch keeps what it has until then."""
        if vip.mode != MODE_SWITCH:
            return self.remove(vip.name, ports)
        owners = tuple(owners)
        if len(owners) != vip.table_size:
            return []
        targets = targets_of(vip, backend_ids)
        before = self._written.get(vip.name)
        messages = []
        if before is not None and rules_shape(before.vip) != rules_shape(vip):
            messages += self.remove(vip.name, ports)
            before = None
        owners = _known_owners(owners, targets, before)
        if before is None:
            messages += vip_slot_rules(vip, owners, targets, ports)
        else:
            for slot in moved_slots(before, owners, targets):
                owner = owners[slot]
                if owner is None:
                    messages += remove_slot_rules(vip, slot, ports.uplink)
                else:
                    messages += slot_rules(vip, slot, targets[owner], ports)
        self._written[vip.name] = Written(vip, owners, targets)
        return messages

    def remove(self, name: str, ports: Ports | None) -> list[bytes]:
        """Delete every slot rule of VIP ``name`` (none written: nothing); with no ports, the
        switch has no rules of ours to delete."""
        written = self._written.pop(name, None)
        if written is None or ports is None:
            return []
        return [
            message
            for slot, owner in enumerate(written.owners)
            if owner is not None
            for message in remove_slot_rules(written.vip, slot, ports.uplink)
        ]
