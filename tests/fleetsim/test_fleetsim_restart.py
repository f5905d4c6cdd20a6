"""A gateway restart that loses its table history (today) against one that keeps it (the state
file, the lead's change): the vectorized model on a fleet small enough to check by hand (2
gateways, 3 backends, a 251-slot table, two chosen connections), and the event menu.

The real ``Balancer`` loses its history with its controller, so the exact engine refuses the
"history kept" events; the engines' equality for the lost case is in test_fleetsim_engines.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from fleetsim import engine, exact, scenarios
from fleetsim.fleet import Fleet
from fleetsim.outcome import MOVED_NOT_IN_TABLE
from fleetsim.population import Population

SIZE = 251
SETTINGS = engine.Settings(gateways=2, backends=3, table_size=SIZE)
DRAIN_RESTART = next(
    e for e in scenarios.events(2, 3) if e.name == "drain + gateway restart"
)  # backend 0 drained at 0 s; gateway 0 out at 1 s, back at 11 s
KEPT = scenarios.history_variants([DRAIN_RESTART], ("kept",))[0]


def tables_before_and_after_the_drain() -> tuple[np.ndarray, np.ndarray]:
    fleet = Fleet(3, 1, 2, SIZE)
    fleet.refresh(0, 0.0)
    before = fleet.tables[0]
    fleet.weights[0] = 0
    fleet.refresh(0, 0.0)
    return before, fleet.tables[0]


def two_connections() -> Population:
    """Both open from -1 s to 100 s, router hash 0 (gateway 0 while it is live, gateway 1 while
    it is not): ``drained`` on a slot of backend 0, ``untouched`` on a slot the drain kept on
    backend 1."""
    before, after = tables_before_and_after_the_drain()
    drained = int(np.nonzero(before == 0)[0][0])
    untouched = int(np.nonzero((before == 1) & (after == 1))[0][0])
    two = np.zeros(2, np.uint32)
    return Population(
        src=two,
        src_port=two.astype(np.uint16),
        slot=np.array([drained, untouched], np.int32),
        router_hash=two,
        start=np.array([-1.0, -1.0]),
        end=np.array([100.0, 100.0]),
    )


def test_a_restart_that_keeps_history_adds_the_table_it_stopped_with():
    fleet = Fleet(3, 1, 2, SIZE)
    fleet.refresh(0, 0.0)
    before = fleet.tables[0]
    fleet.weights[0] = 0
    fleet.refresh(0, 0.0)
    drained = fleet.tables[0]
    fleet.restart(0, 11.0, keep_history=True)
    assert [(e.table is drained, e.table is before, e.at) for e in fleet.history[0]] == [
        (True, False, 11.0),  # the table in use when it stopped, as replaced at the restart
        (False, True, 0.0),  # the one the drain replaced, at its own time
    ]
    assert fleet.tables[0] is drained  # every backend healthy; weight 0 is configuration
    fleet.restart(0, 12.0)
    assert fleet.history[0] == [] and fleet.tables[0] is drained


def test_the_drained_vms_connection_survives_the_restart_only_if_the_history_is_kept():
    flows = two_connections()
    lost = engine.run(flows, SETTINGS, "duplicate", DRAIN_RESTART)
    # 1 s: both move to gateway 1, whose history (the table before the drain) saves the
    # drained one; 11 s: both move back to gateway 0, restarted without entries or history:
    # its table no longer names backend 0.
    assert lost.by_reason == {MOVED_NOT_IN_TABLE: 1}
    kept = engine.run(flows, SETTINGS, "duplicate", KEPT)
    assert kept.by_reason == {}
    assert kept.costs.duplicated_flows == 1
    # ``off`` uses no history: the drained connection breaks at the first move either way.
    assert engine.run(flows, SETTINGS, "off", KEPT).by_reason == {MOVED_NOT_IN_TABLE: 1}
    assert engine.run(flows, SETTINGS, "previous", KEPT).by_reason == {}


def test_each_restart_event_comes_with_and_without_its_history():
    menu = scenarios.history_variants(scenarios.events(4, 20), ("lost", "kept"))
    names = [event.name for event in menu]
    for name in ("failure", "drain", "add"):
        at = names.index(f"{name} + gateway restart")
        assert names[at + 1] == f"{name} + gateway restart, history kept"
        assert menu[at + 1].keeps_history and not menu[at].keeps_history
    assert "drain + move 1 s, history kept" not in names
    assert len(menu) == len(scenarios.events(4, 20)) + 4  # the 4 events with a restart


def test_the_exact_engine_refuses_a_restart_that_keeps_history():
    with pytest.raises(NotImplementedError):
        exact.run(two_connections(), SETTINGS, "duplicate", KEPT)
