"""A Maglev table whose build failed is asked for again with exponential backoff, as long as
the VIP still wants it (GatewayCore.table_build_failed / table_built, driven by health_tick)."""

from __future__ import annotations

import dataclasses

import pytest

from ryu_app.core.buildretries import BUILD_RETRY_FIRST, BUILD_RETRY_MAX, build_retry_delay
from ryu_app.core.model import HealthCheck
from tests.ryu_app.core.rig import PROBED_VIP, GatewayRig

# Static backends: no probe answer is missed while the tests tick for minutes (a backend that
# went down would change the table the VIP wants).
VIP = dataclasses.replace(PROBED_VIP, health=HealthCheck(type="none"))


def test_the_delay_doubles_per_failure_up_to_the_maximum():
    delays = [build_retry_delay(n) for n in range(1, 12)]
    assert delays[:4] == [BUILD_RETRY_FIRST * f for f in (1, 2, 4, 8)]
    assert max(delays) == BUILD_RETRY_MAX and delays[-1] == BUILD_RETRY_MAX
    assert build_retry_delay(10_000) == BUILD_RETRY_MAX  # no overflow, however many


FAILURE = MemoryError("no room for the table (a test's failure)")


def probed_core(vips):
    """A connected core whose table requests the test handles itself."""
    return GatewayRig(vips=vips, build_tables=False).core


def weights_changed(core, now=0.0):
    """A weight change: the core asks for a new table of VIP web; returns that request."""
    heavier = dataclasses.replace(VIP.backends[0], weight=3)
    (request,) = core.set_vip(
        dataclasses.replace(VIP, backends=(heavier, *VIP.backends[1:])), now
    ).tables
    return request


def ticks(core, start, end, step=0.02, notices=None):
    """Health ticks from ``start`` to ``end``; the times at which a table was asked for (and
    the ticks' notices into ``notices``)."""
    asked = []
    now = start
    while now <= end:
        effects = core.health_tick(now)
        asked += [(round(now, 2), r) for r in effects.tables]
        if notices is not None:
            notices += effects.notices
        now += step
    return asked


def test_a_failed_build_is_asked_for_again_with_backoff_until_it_is_in():
    core = probed_core(vips=(VIP,))
    request = weights_changed(core)
    assert not core.balancer.vips["web"].table_current
    times = []
    now = 0.0
    for failure in range(1, 4):  # fails three times
        (error,) = core.table_build_failed(request, FAILURE, now).errors
        delay = build_retry_delay(failure)
        assert f"VIP web failed ({failure} time(s)): MemoryError(" in error
        assert error.endswith(f"asking again in {delay:g} s if the VIP still wants it")
        ((now, again),) = ticks(core, now, now + 10)[:1]
        assert again == request
        times.append(now)
    assert core.counters.table_build_failures == 3
    assert times[1] - times[0] == pytest.approx(2 * BUILD_RETRY_FIRST, abs=0.05)
    assert times[2] - times[1] == pytest.approx(4 * BUILD_RETRY_FIRST, abs=0.05)
    table = core.balancer.cache.build(request.spec)
    installed = core.table_built(request, table, now)  # the fourth try works
    assert installed.notices == ["VIP web: Maglev table rebuilt (3 backends)"]
    assert core.balancer.vips["web"].table_current
    assert ticks(core, now, now + 120) == []  # and nothing more is asked for
    # The count of failures starts again for the next failure of the same table.
    assert "(1 time(s))" in core.table_build_failed(request, FAILURE, now).errors[0]


def test_a_retry_the_vip_no_longer_wants_is_dropped():
    core = probed_core(vips=(VIP,))
    request = weights_changed(core)
    core.table_build_failed(request, FAILURE, 0.0)
    # The weights change back: the old table is wanted again (it is in the cache: swapped in
    # at once, nothing to build).
    assert core.set_vip(VIP, 0.1).tables == []
    notices = []
    assert ticks(core, 0.1, 5.0, notices=notices) == []
    assert notices == ["VIP web: retry of a failed build dropped"]


def test_a_retry_of_a_removed_vip_is_dropped():
    core = probed_core(vips=(VIP,))
    request = weights_changed(core)
    core.table_build_failed(request, FAILURE, 0.0)
    core.remove_vip("web", 0.1)
    assert ticks(core, 0.1, 5.0) == []


def test_a_newer_failure_of_the_same_vip_replaces_the_older_retry():
    core = probed_core(vips=(VIP,))
    first = weights_changed(core)
    core.table_build_failed(first, FAILURE, 0.0)
    lighter = dataclasses.replace(VIP.backends[0], weight=2)
    (second,) = core.set_vip(
        dataclasses.replace(VIP, backends=(lighter, *VIP.backends[1:])), 0.1
    ).tables
    core.table_build_failed(second, FAILURE, 0.2)
    assert [r for _, r in ticks(core, 0.2, 5.0)] == [second]
