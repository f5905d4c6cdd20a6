"""What a switch-mode gateway's bridge holds, read from ``ovs-ofctl dump-flows`` text: in switch
mode the switch places new flows by its slot rules and pins them by rules it learns itself, so
the controller's ``/v1/flows`` does not see them (docs/switch-mode.md, "Rules").  Pure parsing;
``world.World`` runs the command.

A rule's backend is the inner destination MAC it sets (each VM's ``vx0``), which the demo's
deployment file gives per backend: the text says it as ``set_field:MAC->eth_dst`` (a rule the
controller wrote) or ``load:0xMAC->NXM_OF_ETH_DST[]`` (a pin the switch learned).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from ryu_app.core.pipeline import PRIORITY_FLOW
from ryu_app.core.switchrules import PRIORITY_SLOT, PRIORITY_SYN_SLOT

PIN, SYN_SLOT, SLOT = PRIORITY_FLOW, PRIORITY_SYN_SLOT, PRIORITY_SLOT
_SET_MAC = re.compile(r"set_field:([0-9a-f]{2}(?::[0-9a-f]{2}){5})->eth_dst")
_LOAD_MAC = re.compile(r"load:(0x[0-9a-f]+)->NXM_OF_ETH_DST\[\]")
_MASKED = re.compile(r"^(0x[0-9a-f]+|\d+)(?:/(0x[0-9a-f]+))?$")


@dataclass(frozen=True)
class Rule:
    priority: int
    n_packets: int
    match: dict[str, str]  # field -> value as printed (a bare word such as ``tcp``: "")
    mac: str | None  # the eth_dst its actions set: the backend it sends to

    def port_matches(self, sport: int) -> bool:
        """Whether a flow from source port ``sport`` matches this rule's ``tp_src``
        (exact or masked, as a slot rule's)."""
        found = _MASKED.match(self.match.get("tp_src", ""))
        if not found:
            return False
        value = int(found.group(1), 0)
        mask = int(found.group(2), 16) if found.group(2) else 0xFFFF
        return sport & mask == value & mask


def parse(text: str) -> list[Rule]:
    """The rules of a ``dump-flows`` listing (its header line and blank lines skipped)."""
    rules = []
    for line in text.splitlines():
        head, _, actions = line.strip().partition(" actions=")
        if not actions or "priority=" not in head:
            continue
        match = {}
        for item in re.split(r"[ ,]+", head):
            key, _, value = item.partition("=")
            match[key] = value
        rules.append(
            Rule(
                priority=int(match.pop("priority")),
                n_packets=int(match.pop("n_packets", "0")),
                match={k: v for k, v in match.items() if k and k not in _STATS},
                mac=_mac(actions),
            )
        )
    return rules


_STATS = {"cookie", "duration", "table", "n_bytes", "idle_timeout", "hard_timeout", "idle_age",
          "hard_age", "fin_idle_timeout", "fin_hard_timeout", "send_flow_rem"}  # fmt: skip


def _mac(actions: str) -> str | None:
    """The first eth_dst the actions set (a slot rule's ``learn`` spec sets the same one)."""
    spots = [m for m in (_SET_MAC.search(actions), _LOAD_MAC.search(actions)) if m]
    if not spots:
        return None
    first = min(spots, key=lambda m: m.start())
    if first.re is _SET_MAC:
        return first.group(1)
    digits = f"{int(first.group(1), 16):012x}"
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def pins(rules: list[Rule], backends: dict[str, str]) -> list[dict]:
    """The per-flow pins (priority 200, learned or installed) as ``/v1/flows`` entries:
    ``src_ip``, ``src_port``, ``backend`` (by MAC: ``backends`` maps MAC -> name)."""
    return [
        {
            "src_ip": rule.match.get("nw_src"),
            "src_port": int(rule.match["tp_src"]) if rule.match.get("tp_src") else None,
            "backend": backends.get(rule.mac or "", rule.mac),
        }
        for rule in rules
        if rule.priority == PIN
    ]


def slot_owner(rules: list[Rule], sport: int, backends: dict[str, str]) -> str | None:
    """The backend the switch's slot rules give a new flow's non-SYN packet from ``sport``
    (the rule that also learns its pin); None if no slot rule takes it."""
    for rule in rules:
        if rule.priority == SLOT and rule.port_matches(sport):
            return backends.get(rule.mac or "", rule.mac)
    return None


def slot_targets(rules: list[Rule], backends: dict[str, str]) -> Counter:
    """Slot rules (SYN and other) per backend they send to."""
    return Counter(
        backends.get(r.mac or "", r.mac) for r in rules if r.priority in (SYN_SLOT, SLOT)
    )


def syns_placed(rules: list[Rule], backends: dict[str, str]) -> Counter:
    """Packets the SYN slot rules sent, per backend: the new connections this switch placed
    (a retransmitted SYN counts again)."""
    placed: Counter = Counter()
    for rule in rules:
        if rule.priority == SYN_SLOT:
            placed[backends.get(rule.mac or "", rule.mac)] += rule.n_packets
    return placed
