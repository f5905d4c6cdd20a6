"""``serving``: which backends new flows are hashed over (panic included), and the grace of a
backend that left service (``retirement.Retirements``, with a real ``Balancer``)."""

from __future__ import annotations

import dataclasses

import pytest

from ryu_app.core.balancer import Balancer
from ryu_app.core.model import Backend, HealthCheck, Vip
from ryu_app.core.retirement import Retirements
from ryu_app.core.serving import (
    RETIRE_GRACE_MAX,
    in_panic,
    retire_grace,
    serving,
    serving_backends,
)


def backends(*weights: int) -> tuple[Backend, ...]:
    return tuple(
        Backend(f"vm{i}", f"192.168.100.{10 + i}", f"02:00:00:00:01:{i:02x}", weight)
        for i, weight in enumerate(weights, 1)
    )


def vip(*weights: int, threshold: int = 50, check: str = "tcp") -> Vip:
    health = HealthCheck(type=check, panic_threshold=threshold)
    return Vip("web", "10.0.0.100", 80, health=health, table_size=251, backends=backends(*weights))


@pytest.mark.parametrize(
    ("healthy", "configured", "threshold", "panic"),
    [
        (2, 4, 50, False),  # exactly half: not under it
        (1, 4, 50, True),
        (0, 4, 50, True),
        (0, 4, 0, False),  # 0: never
        (3, 4, 100, True),  # 100: unless all are healthy
        (4, 4, 100, False),
        (0, 0, 50, False),  # nothing to serve
        (66, 100, 67, True),
    ],
)
def test_in_panic_is_under_the_threshold_share(healthy, configured, threshold, panic):
    assert in_panic(healthy, configured, threshold) is panic


def test_the_serving_set_is_the_healthy_backends_of_weight_above_zero():
    assert serving(vip(1, 2, 0, 1), {"vm1", "vm2", "vm3"}) == (
        (("vm1", 1), ("vm2", 2)),
        False,
    )


def test_in_panic_the_serving_set_is_every_backend_of_weight_above_zero():
    """Whatever each gateway's healthy set, in panic they all get the same set: the
    configuration's (so the same Maglev table, without talking to each other)."""
    config = vip(1, 2, 0, 1)
    a = serving(config, {"vm3"})  # the drained one is healthy: it does not count
    b = serving(config, set())
    assert a == b == ((("vm1", 1), ("vm2", 2), ("vm4", 1)), True)
    assert serving_backends([("vm1", 1), ("vm2", 1)], {"vm1"}, 50).panic is False


def test_static_backends_never_panic():
    static = vip(1, 1, 1, check="none")
    balancer = Balancer()
    balancer.rebuild_now(balancer.set_vip(static))
    assert not balancer.vips["web"].panic and balancer.vips["web"].serving == {"vm1", "vm2", "vm3"}


def test_retire_grace_is_the_soonest_a_down_backend_can_be_up_again_capped():
    assert retire_grace(HealthCheck()) == 3 * 2.0 + 1.0
    assert retire_grace(HealthCheck(interval=0.5, timeout=0.2, rise=2)) == pytest.approx(1.2)
    assert retire_grace(HealthCheck(interval=60.0, timeout=5.0)) == RETIRE_GRACE_MAX


# ---- retirements ------------------------------------------------------------------------------


def setup(*weights, threshold=0):
    balancer = Balancer()
    balancer.rebuild_now(balancer.set_vip(vip(*weights, threshold=threshold)))
    return balancer, balancer.vips["web"], Retirements()


def leave(balancer, retirements, name, now, healthy=False):
    state = balancer.vips["web"]
    before = state.out_of_service()
    balancer.rebuild_now(balancer.set_health("web", name, healthy))
    return retirements.follow(state, before, now)


def test_a_backend_out_of_service_is_retired_when_its_grace_ends():
    balancer, state, retirements = setup(1, 1, 1)
    grace = retire_grace(state.vip.health)
    old_id = state.backend_ids["vm1"]
    assert not leave(balancer, retirements, "vm1", 10.0)  # nothing to log yet
    assert len(retirements) == 1
    assert retirements.retire_due(balancer, 10.0 + grace - 0.01) == []
    assert retirements.retire_due(balancer, 10.0 + grace) == [("web", "vm1", old_id)]
    assert state.backend_ids["vm1"] != old_id and balancer.backend_of(old_id) is None
    assert retirements.retire_due(balancer, 100.0) == [] and len(retirements) == 0


def test_back_within_the_grace_cancels_it_and_says_so():
    balancer, state, retirements = setup(1, 1, 1)
    old_id = state.backend_ids["vm1"]
    leave(balancer, retirements, "vm1", 10.0)
    back = leave(balancer, retirements, "vm1", 12.0, healthy=True)
    assert back.notices == [
        "backend vm1 of VIP web is back within its 7 s grace: its flows kept their rules"
    ]
    assert retirements.retire_due(balancer, 100.0) == [] and state.backend_ids["vm1"] == old_id


def test_leaving_service_again_restarts_the_grace():
    balancer, state, retirements = setup(1, 1, 1)
    leave(balancer, retirements, "vm1", 10.0)
    leave(balancer, retirements, "vm1", 12.0, healthy=True)
    leave(balancer, retirements, "vm1", 13.0)
    assert retirements.retire_due(balancer, 17.5) == []  # the first grace's end: skipped
    assert [r[1] for r in retirements.retire_due(balancer, 20.0)] == ["vm1"]


def test_a_backend_changed_or_removed_meanwhile_is_not_retired_and_not_called_back():
    balancer, state, retirements = setup(1, 1, 1)
    leave(balancer, retirements, "vm1", 10.0)
    leave(balancer, retirements, "vm2", 10.0)
    before = state.out_of_service()
    moved = dataclasses.replace(state.vip.backends[0], tunnel_ip="192.168.100.99")
    changed = dataclasses.replace(state.vip, backends=(moved, state.vip.backends[2]))
    balancer.rebuild_now(balancer.set_vip(changed))  # vm1 moved (a new backend), vm2 removed
    # Their old rules went with the change (``GatewayCore.set_vip``): nothing "kept" them.
    assert not retirements.follow(balancer.vips["web"], before, 11.0)
    assert retirements.retire_due(balancer, 100.0) == []


def test_panic_keeps_everyone_in_service():
    """(Its WARNINGs are the gateway's: test_gateway_overload.py.)"""
    balancer, state, retirements = setup(1, 1, 1, threshold=50)
    leave(balancer, retirements, "vm1", 1.0)
    started = leave(balancer, retirements, "vm2", 2.0)
    assert state.panic and started.warnings == []
    # vm1 is served again (in panic): its grace is cancelled, but it is still DOWN, so
    # nothing says it is back.
    assert started.notices == []
    assert retirements.retire_due(balancer, 100.0) == []
    leave(balancer, retirements, "vm2", 101.0, healthy=True)
    assert not state.panic
    assert [r[1] for r in retirements.retire_due(balancer, 108.0)] == ["vm1"]


def test_forget_vip_drops_its_retirements():
    balancer, _, retirements = setup(1, 1, 1)
    leave(balancer, retirements, "vm1", 1.0)
    retirements.forget_vip("web")
    assert len(retirements) == 0 and retirements.retire_due(balancer, 100.0) == []
