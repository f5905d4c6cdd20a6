"""The vectorized engine against the exact one (a real ``Balancer`` per gateway): on the same
seeded small fleet, every event's broken connections, reason by reason, are equal."""

from __future__ import annotations

import pytest

from fleetsim import engine, exact, population, scenarios
from fleetsim.outcome import MOVED_NOT_IN_TABLE, PREVIOUS_WRONG

GATEWAYS, BACKENDS, FLOWS, SEED = 4, 20, 3000, 3
SETTINGS = engine.Settings(GATEWAYS, BACKENDS, 65537, seed=SEED)
EVENTS = {event.name: event for event in scenarios.events(GATEWAYS, BACKENDS)}


@pytest.fixture(scope="module")
def flows():
    horizon = max(scenarios.horizon_of(event) for event in EVENTS.values())
    return population.generate(FLOWS, horizon, 65537, SEED)


@pytest.mark.parametrize("name", sorted(EVENTS))
def test_off_breaks_the_same_connections_for_the_same_reasons_in_both_engines(flows, name):
    vectorized = engine.run(flows, SETTINGS, "off", EVENTS[name])
    real = exact.run(flows, SETTINGS, "off", EVENTS[name])
    assert vectorized.by_reason == real.by_reason
    assert vectorized.moved_misses == real.moved_misses


DOUBLES = sorted(name for name, event in EVENTS.items() if event.double)


@pytest.mark.parametrize("mechanism", ["previous", "duplicate", "duplicate-no-vm-rule"])
@pytest.mark.parametrize("name", DOUBLES)
def test_second_chance_matches_the_real_balancer_in_the_double_changes(flows, mechanism, name):
    vectorized = engine.run(flows, SETTINGS, mechanism, EVENTS[name])
    real = exact.run(flows, SETTINGS, mechanism, EVENTS[name])
    assert vectorized.by_reason == real.by_reason


def test_a_drain_then_a_move_breaks_connections_today_and_not_with_duplicate(flows):
    event = EVENTS["drain + move 1 s"]
    today = engine.run(flows, SETTINGS, "off", event)
    assert today.by_reason.get(MOVED_NOT_IN_TABLE, 0) > 0
    assert engine.run(flows, SETTINGS, "duplicate", event).broken == 0


def test_previous_breaks_connections_begun_after_the_change(flows):
    result = engine.run(flows, SETTINGS, "previous", EVENTS["add + move 60 s"])
    assert result.by_reason.get(PREVIOUS_WRONG, 0) > 0
