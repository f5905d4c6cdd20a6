"""SlotRules (issue 14): what a switch holds of a switch-mode VIP's slot rules and the least
that makes it follow the VIP's table, its backends' targets and its rules' shape."""

from __future__ import annotations

import dataclasses

from ryu_app.core import openflow as of
from ryu_app.core.maglev import build_table
from ryu_app.core.pipeline import Ports
from ryu_app.core.slotsync import SlotRules
from tests.ryu_app.core.rig import BACKENDS, VIP
from tests.ryu_app.fake_oftable import FakeOFTable, decode

SLOTS = 256
PORTS = Ports(1, 2)
SWITCH_VIP = dataclasses.replace(VIP, placement="port-bits", table_size=SLOTS, mode="switch")
IDS = {"vm1": 1, "vm2": 2, "vm3": 3}
OWNERS = build_table([(b.name, 1) for b in BACKENDS], SLOTS, "port-bits").owners()


def commands(messages) -> list[int]:
    return [decode(m).command for m in messages]


def test_written_once_then_nothing_while_nothing_changes():
    rules = SlotRules()
    first = rules.follow(SWITCH_VIP, OWNERS, IDS, PORTS)
    assert len(first) == 2 * SLOTS and "web" in rules
    assert rules.follow(SWITCH_VIP, OWNERS, IDS, PORTS) == []


def test_a_backend_with_a_new_target_gets_its_slots_rewritten_only():
    rules = SlotRules()
    rules.follow(SWITCH_VIP, OWNERS, IDS, PORTS)
    moved = dataclasses.replace(BACKENDS[0], mac="02:00:00:00:09:09")
    vip = dataclasses.replace(SWITCH_VIP, backends=(moved, *BACKENDS[1:]))
    messages = rules.follow(vip, OWNERS, {**IDS, "vm1": 7}, PORTS)
    assert len(messages) == 2 * OWNERS.count("vm1")
    assert set(commands(messages)) == {of.OFPFC_ADD}


def test_a_new_shape_deletes_every_rule_then_writes_them_again():
    rules = SlotRules()
    rules.follow(SWITCH_VIP, OWNERS, IDS, PORTS)
    messages = rules.follow(dataclasses.replace(SWITCH_VIP, vni=200), OWNERS, IDS, PORTS)
    assert commands(messages) == [of.OFPFC_DELETE_STRICT] * 2 * SLOTS + [of.OFPFC_ADD] * 2 * SLOTS


def test_a_table_of_another_size_is_waited_out_and_controller_mode_removes_all():
    rules, table = SlotRules(), FakeOFTable()
    table.apply(rules.follow(SWITCH_VIP, OWNERS, IDS, PORTS))
    assert len(table.rules) == 2 * SLOTS
    bigger = dataclasses.replace(SWITCH_VIP, table_size=2 * SLOTS)
    assert rules.follow(bigger, OWNERS, IDS, PORTS) == []  # its own table is being built
    controller = dataclasses.replace(SWITCH_VIP, mode="controller")
    table.apply(rules.follow(controller, OWNERS, IDS, PORTS))
    assert table.rules == [] and "web" not in rules
    assert rules.follow(controller, OWNERS, IDS, PORTS) == []


def test_a_removed_backend_keeps_its_slots_until_the_new_table_comes():
    """A backend taken out of the VIP while its table is being rebuilt: the table in use
    still names it, so its slots keep their rules (nothing rewritten, no error) until the new
    table moves them; written afresh (after a reconnect), its slots get no rule yet."""
    rules, table = SlotRules(), FakeOFTable()
    table.apply(rules.follow(SWITCH_VIP, OWNERS, IDS, PORTS))
    without = dataclasses.replace(SWITCH_VIP, backends=BACKENDS[1:])
    ids = {"vm2": 2, "vm3": 3}
    assert rules.follow(without, OWNERS, ids, PORTS) == []
    new_owners = build_table([(b.name, 1) for b in BACKENDS[1:]], SLOTS, "port-bits").owners()
    moved = sum(1 for old, new in zip(OWNERS, new_owners, strict=True) if old != new)
    messages = rules.follow(without, new_owners, ids, PORTS)
    assert len(messages) == 2 * moved and moved >= OWNERS.count("vm1")
    table.apply(messages)
    assert len(table.rules) == 2 * SLOTS
    assert not [rule for rule in table.rules if rule.cookie & 0xFFFFFFFF == IDS["vm1"]]
    fresh = SlotRules()
    assert len(fresh.follow(without, OWNERS, ids, PORTS)) == 2 * (SLOTS - OWNERS.count("vm1"))
