"""The simulator's parts: the router, the population, the timeline, the resilience curve."""

from __future__ import annotations

import numpy as np

from fleetsim import population, resilience, scenarios
from fleetsim.ecmp import Ecmp
from ryu_app.core.flowkey import flow_hash, flow_key
from ryu_app.core.model import HASH_5TUPLE


def test_modulo_ecmp_moves_most_flows_and_resilient_only_the_leavers():
    hashes = np.random.default_rng(1).integers(0, 2**32, 20_000, dtype=np.uint64).astype(np.uint32)
    for mode, most in (("modulo", 0.5), ("resilient", 0.0)):
        router = Ecmp(list(range(8)), mode)
        before = router.gateways(hashes)
        router.remove(3)
        after = router.gateways(hashes)
        assert not np.any(after == 3)
        moved = np.mean(before != after)
        if mode == "resilient":
            assert np.all((before == after) | (before == 3))
        else:
            assert moved > most
        router.add(3)
        assert np.any(router.gateways(hashes) == 3)


def test_flows_are_hashed_with_the_projects_own_key_and_hash():
    flows = population.generate(200, 10.0, 65537, seed=2)
    for index in range(0, len(flows), 37):
        key = flow_key(flows.flow(index, syn=True), HASH_5TUPLE)
        assert flows.slot[index] == flow_hash(key) % 65537
    assert np.sum(flows.start < 0) == 200
    assert np.all(flows.end[flows.start < 0] > 0)  # open at time 0
    assert np.all(np.diff(flows.start) >= 0)


def test_a_failure_is_noticed_and_retired_by_every_running_gateway():
    event = scenarios.Event("f", (scenarios.Action(0.0, "fail", backend=0),))
    changes = scenarios.compile_event(event, [0, 1, 2], 40.0, seed=1)
    downs = [c for c in changes if c.kind == "health"]
    retires = [c for c in changes if c.kind == "retire"]
    assert sorted(c.gateway for c in downs) == [0, 1, 2]
    assert all(5.0 <= c.time <= 7.0 for c in downs)  # interval 2, fall 3, timeout 1
    assert all(abs(r.time - d.time - 7.0) < 1e-9 for r, d in zip(retires, downs, strict=True))


def test_a_restarted_gateway_notices_the_failure_again_after_it_is_back():
    event = scenarios.Event(
        "f",
        (
            scenarios.Action(0.0, "fail", backend=0),
            scenarios.Action(1.0, "gw_restart", 1, value=10.0),
        ),
    )
    changes = scenarios.compile_event(event, [0, 1], 60.0, seed=1)
    gateway_one = [c for c in changes if c.gateway == 1 and c.kind == "health"]
    assert len(gateway_one) == 1 and gateway_one[0].time > 11.0


def test_our_tables_change_as_the_papers_figure_12_says():
    remaining, everything = resilience.changed_share(65537, 10, repeats=2, seed=1)
    assert abs(remaining - resilience.PAPER[65537][1.0]) < 0.3
    assert everything > remaining + 0.9  # the failed 1 % of entries change too
