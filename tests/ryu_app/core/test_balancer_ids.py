"""Backend ids that outlive the controller: saved, restored, and counted when they change (the
per-flow rules a restarted controller finds in its switch carry them as cookies)."""

from __future__ import annotations

import dataclasses

from ryu_app.core.balancer import Balancer, SavedId, SavedIds
from tests.ryu_app.core.test_balancer import backends, down_and_retired, make_vip


def ids_of(balancer: Balancer, vip: str = "web") -> dict[str, int]:
    return dict(balancer.vips[vip].backend_ids)


def started(vips, saved: SavedIds | None = None) -> Balancer:
    """A controller's balancer at start: the state file's ids, then the VIPs."""
    balancer = Balancer()
    if saved is not None:
        balancer.restore_ids(saved)
    for vip in vips:
        balancer.rebuild_now(balancer.set_vip(vip))
    return balancer


def test_a_restarted_balancer_gives_every_backend_its_saved_id_not_config_order():
    """The first run retired vm2 (a new id) and had a second VIP: a fresh start would number
    from 1 in config order; restored, every id is the saved one and new ids come after."""
    first = started([make_vip(), make_vip("api", port=81, count=2)])
    down_and_retired(first, "web", "vm2")
    saved = first.saved_ids()
    assert ids_of(first)["vm2"] == saved.next_id - 1 == 7
    again = started([make_vip(), make_vip("api", port=81, count=2)], saved)
    assert ids_of(again) == ids_of(first) and ids_of(again, "api") == ids_of(first, "api")
    assert ids_of(started([make_vip()]))["vm2"] == 2  # what it would be without them
    assert again.backend_of(7)[1].name == "vm2"
    grown = dataclasses.replace(make_vip(), backends=backends(5))
    again.set_vip(grown)
    assert ids_of(again)["vm5"] == saved.next_id  # a new backend: the next id, never a saved one
    assert again.release_unclaimed_ids() == []


def test_a_backend_whose_tunnel_or_mac_changed_meanwhile_gets_a_new_id():
    saved = started([make_vip()]).saved_ids()
    changed = make_vip(
        backends=tuple(
            dataclasses.replace(b, tunnel_ip="192.168.200.1")
            if b.name == "vm1"
            else dataclasses.replace(b, mac="02:00:00:00:09:09")
            if b.name == "vm2"
            else b
            for b in backends(4)
        )
    )
    again = started([changed], saved)
    assert ids_of(again) == {"vm1": 5, "vm2": 6, "vm3": 3, "vm4": 4}
    # The rules of ids 1 and 2 (the old tunnel, the old MAC) are nobody's: released once.
    assert again.release_unclaimed_ids() == [1, 2]
    assert again.release_unclaimed_ids() == []


def test_saved_ids_are_not_given_to_another_backend_before_theirs_is_set_or_released():
    saved = SavedIds(
        {
            "gone": {"x": SavedId(1, "192.168.100.99", "02:00:00:00:09:01")},
            "web": {"vm1": SavedId(2, "192.168.100.11", "02:00:00:00:01:01")},
        },
        next_id=1,  # (a file written after the ids wrapped)
    )
    api = make_vip("api", port=81, backends=backends(1))  # a VIP new since: set first
    again = started([api, make_vip(count=2)], saved)
    assert ids_of(again, "api") == {"vm1": 3}  # not 1 (the gone VIP's) nor 2 (web's vm1's)
    assert ids_of(again) == {"vm1": 2, "vm2": 4}
    assert again.release_unclaimed_ids() == [1]


def test_a_file_giving_one_id_twice_gives_it_to_one_backend_only():
    twice = SavedIds(
        {
            "web": {
                "vm1": SavedId(1, "192.168.100.11", "02:00:00:00:01:01"),
                "vm2": SavedId(1, "192.168.100.12", "02:00:00:00:01:02"),
            }
        },
        next_id=5,
    )
    again = started([make_vip(count=2)], twice)
    assert ids_of(again) == {"vm1": 1, "vm2": 5}


def test_the_ids_version_moves_exactly_when_an_id_is_given_or_taken():
    balancer = started([make_vip()])
    version = balancer.ids_version
    balancer.set_vip(make_vip(backends=backends(4, weight=2)))  # weights: same ids
    balancer.rebuild_now(balancer.set_health("web", "vm3", False))
    assert balancer.ids_version == version
    down_and_retired(balancer, "web", "vm2")  # a retirement: no REST call
    assert balancer.ids_version == version + 1
    balancer.set_vip(make_vip(count=5))
    assert balancer.ids_version == version + 2
    balancer.remove_vip("web")
    assert balancer.ids_version == version + 3
    assert balancer.saved_ids() == SavedIds({}, balancer.saved_ids().next_id)
