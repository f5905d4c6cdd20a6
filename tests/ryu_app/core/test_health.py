"""Tests for ryu_app.core.health: the per-(VIP, backend) health state machine."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ryu_app.core.health import DOWN, UP, HealthPolicy, HealthState, Transition
from ryu_app.core.model import HealthCheck, policy_problem

# --------------------------------------------------------------------------------------------
# HealthPolicy validation
# --------------------------------------------------------------------------------------------


def test_default_policy_is_the_default_checks_timing():
    policy, check = HealthPolicy(), HealthCheck()
    assert (policy.interval, policy.timeout, policy.rise, policy.fall) == (2.0, 1.0, 3, 3)
    assert (policy.interval, policy.timeout, policy.rise, policy.fall) == (
        check.interval,
        check.timeout,
        check.rise,
        check.fall,
    )
    assert policy_problem(2.0, 1.0, 3, 3) is None


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"interval": 0}, "interval"),
        ({"interval": -1.0}, "interval"),
        ({"interval": True}, "interval"),
        ({"interval": "2"}, "interval"),
        ({"interval": None}, "interval"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": -0.5}, "timeout"),
        ({"timeout": False}, "timeout"),
        ({"timeout": "1"}, "timeout"),
        ({"interval": 1.0, "timeout": 1.5}, "timeout"),  # timeout > interval
        ({"rise": 0}, "rise"),
        ({"rise": -1}, "rise"),
        ({"rise": 2.0}, "rise"),
        ({"rise": "3"}, "rise"),
        ({"rise": True}, "rise"),
        ({"rise": 101}, "rise"),
        ({"fall": 0}, "fall"),
        ({"fall": 1.5}, "fall"),
        ({"fall": None}, "fall"),
        ({"fall": False}, "fall"),
        ({"fall": 101}, "fall"),
    ],
)
def test_invalid_policy_is_rejected(kwargs, field):
    with pytest.raises(ValueError) as info:
        HealthPolicy(**kwargs)
    assert field in str(info.value)
    values = {"interval": 2.0, "timeout": 1.0, "rise": 3, "fall": 3, **kwargs}
    assert policy_problem(**values) == str(info.value)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"interval": 1, "timeout": 1},  # timeout == interval is allowed; ints are seconds too
        {"interval": 0.1, "timeout": 0.05},
        {"rise": 1, "fall": 1},
        {"rise": 100, "fall": 100},
    ],
)
def test_valid_policy_edges(kwargs):
    policy = HealthPolicy(**kwargs)
    for name, value in kwargs.items():
        assert getattr(policy, name) == value


# --------------------------------------------------------------------------------------------
# Initial state
# --------------------------------------------------------------------------------------------


def test_starts_up_by_default():
    state = HealthState(HealthPolicy(), now=10.0)
    assert state.state == UP
    assert state.is_up is True
    assert state.changed_at == 10.0
    assert state.last_result is None
    assert state.last_result_at is None
    assert state.probe_started_at is None


def test_starts_down_when_asked():
    state = HealthState(HealthPolicy(), now=10.0, initial=DOWN)
    assert state.state == DOWN
    assert state.is_up is False


@pytest.mark.parametrize("initial", ["UP", "unknown", "", None, True])
def test_invalid_initial_state(initial):
    with pytest.raises(ValueError, match="initial"):
        HealthState(HealthPolicy(), now=0.0, initial=initial)


# --------------------------------------------------------------------------------------------
# Counting with hysteresis
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fall", [1, 2, 3, 5])
def test_goes_down_after_exactly_fall_consecutive_failures(fall):
    state = HealthState(HealthPolicy(interval=2.0, timeout=1.0, fall=fall), now=0.0)
    for index in range(fall - 1):
        assert state.record(False, float(index)) is None
        assert state.state == UP
    transition = state.record(False, 100.0, "connection refused")
    assert transition == Transition(DOWN, 100.0, "connection refused")
    assert state.state == DOWN
    assert state.changed_at == 100.0
    # Further failures change nothing.
    for index in range(fall + 2):
        assert state.record(False, 101.0 + index) is None
        assert state.state == DOWN


@pytest.mark.parametrize("rise", [1, 2, 3, 5])
def test_comes_up_after_exactly_rise_consecutive_successes(rise):
    state = HealthState(HealthPolicy(rise=rise), now=0.0, initial=DOWN)
    for index in range(rise - 1):
        assert state.record(True, float(index)) is None
        assert state.state == DOWN
    transition = state.record(True, 50.0)
    assert transition == Transition(UP, 50.0, "probe succeeded")
    assert state.state == UP
    assert state.changed_at == 50.0
    for index in range(rise + 2):
        assert state.record(True, 51.0 + index) is None
        assert state.state == UP


def test_a_success_resets_the_failure_streak():
    state = HealthState(HealthPolicy(fall=3), now=0.0)
    assert state.record(False, 1.0) is None
    assert state.record(False, 2.0) is None
    assert state.record(True, 3.0) is None  # streak reset
    assert state.record(False, 4.0) is None
    assert state.record(False, 5.0) is None
    assert state.state == UP  # only 2 in a row
    transition = state.record(False, 6.0)
    assert transition is not None
    assert transition.state == DOWN
    assert transition.at == 6.0


def test_a_failure_resets_the_success_streak():
    state = HealthState(HealthPolicy(rise=2), now=0.0, initial=DOWN)
    assert state.record(True, 1.0) is None
    assert state.record(False, 2.0) is None  # streak reset
    assert state.record(True, 3.0) is None
    assert state.state == DOWN
    assert state.record(True, 4.0) == Transition(UP, 4.0, "probe succeeded")


def test_streak_starts_over_after_a_transition():
    state = HealthState(HealthPolicy(rise=2, fall=2), now=0.0)
    assert state.record(False, 1.0) is None
    assert state.record(False, 2.0) == Transition(DOWN, 2.0, "probe failed")
    assert state.record(True, 3.0) is None  # 1 of 2: the old streak does not carry over
    assert state.record(True, 4.0) == Transition(UP, 4.0, "probe succeeded")
    assert state.record(False, 5.0) is None
    assert state.state == UP


def test_transition_reason_defaults_and_detail():
    state = HealthState(HealthPolicy(rise=1, fall=1), now=0.0)
    assert state.record(False, 1.0) == Transition(DOWN, 1.0, "probe failed")
    assert state.record(True, 2.0, "HTTP 200") == Transition(UP, 2.0, "HTTP 200")
    assert state.record(False, 3.0, "timed out") == Transition(DOWN, 3.0, "timed out")
    assert state.record(True, 4.0) == Transition(UP, 4.0, "probe succeeded")


def test_record_keeps_the_last_result():
    state = HealthState(HealthPolicy(), now=0.0)
    state.record(False, 1.5, "refused")
    assert (state.last_result, state.last_result_at, state.last_detail) == (False, 1.5, "refused")
    state.record(True, 2.5)
    assert (state.last_result, state.last_result_at, state.last_detail) == (True, 2.5, "")


@given(st.lists(st.booleans(), max_size=60), st.integers(1, 5), st.integers(1, 5), st.booleans())
def test_state_matches_a_run_length_model(results, rise, fall, start_up):
    """Transitions happen exactly when the results since the last transition end with
    ``rise`` successes (while DOWN) or ``fall`` failures (while UP) in a row."""
    state = HealthState(
        HealthPolicy(rise=rise, fall=fall), now=0.0, initial=UP if start_up else DOWN
    )
    up = start_up
    streak = 0
    for step, ok in enumerate(results):
        transition = state.record(ok, float(step))
        if ok == up:
            streak = 0
            assert transition is None
            continue
        streak += 1
        if streak == (rise if ok else fall):
            up, streak = ok, 0
            assert transition is not None
            assert transition.state == (UP if ok else DOWN)
            assert transition.at == float(step)
        else:
            assert transition is None
        assert state.is_up is up


# --------------------------------------------------------------------------------------------
# Probe timeouts
# --------------------------------------------------------------------------------------------


def test_success_later_than_timeout_counts_as_failure():
    state = HealthState(HealthPolicy(interval=2.0, timeout=1.0, fall=1), now=0.0)
    assert state.start_probe(10.0) == 11.0
    transition = state.record(True, 11.5)
    assert state.last_result is False
    assert transition is not None
    assert transition.state == DOWN
    assert transition.at == 11.5
    assert "timeout" in transition.reason
    assert state.probe_started_at is None


def test_success_exactly_at_timeout_is_a_success():
    state = HealthState(HealthPolicy(interval=2.0, timeout=1.0, fall=1), now=0.0)
    state.start_probe(10.0)
    assert state.record(True, 11.0) is None
    assert state.last_result is True
    assert state.state == UP


def test_late_successes_keep_a_down_backend_down():
    state = HealthState(HealthPolicy(interval=2.0, timeout=1.0, rise=1), now=0.0, initial=DOWN)
    state.start_probe(0.0)
    assert state.record(True, 1.25) is None
    assert state.state == DOWN
    state.start_probe(2.0)
    assert state.record(True, 2.5) == Transition(UP, 2.5, "probe succeeded")


def test_late_failure_is_still_a_failure():
    state = HealthState(HealthPolicy(fall=1), now=0.0)
    state.start_probe(0.0)
    assert state.record(False, 5.0, "refused") == Transition(DOWN, 5.0, "refused")


# --------------------------------------------------------------------------------------------
# Scheduling
# --------------------------------------------------------------------------------------------


def test_start_probe_gives_the_deadline_and_plans_the_next_probe():
    state = HealthState(HealthPolicy(interval=2.0, timeout=1.0), now=100.0)
    assert state.next_probe_at == 100.0  # phase 0: first probe at once
    assert state.start_probe(100.0) == 101.0
    assert state.probe_started_at == 100.0  # in flight: the prober starts no other
    assert state.next_probe_at == 102.0
    state.record(True, 100.5)
    assert state.probe_started_at is None
    assert state.next_probe_at == 102.0


def test_next_probe_is_planned_from_the_previous_plan_not_from_now():
    state = HealthState(HealthPolicy(interval=2.0, timeout=1.0), now=0.0)
    assert state.next_probe_at == 0.0
    state.start_probe(0.5)  # the loop woke up late
    assert state.next_probe_at == 2.0  # not 2.5
    state.record(True, 0.75)
    state.start_probe(2.75)
    assert state.next_probe_at == 4.0
    state.record(True, 3.0)
    # Over many rounds the schedule stays on the 2 s grid despite 0.25..0.75 s of lateness.
    for round_number in range(3, 50):
        planned = state.next_probe_at
        assert planned == 2.0 * (round_number - 1)
        late = 0.25 * (round_number % 4)
        state.start_probe(planned + late)
        state.record(True, planned + late + 0.1)
    assert state.next_probe_at == 98.0


def test_a_loop_late_by_more_than_an_interval_catches_up_with_one_probe():
    state = HealthState(HealthPolicy(interval=2.0, timeout=1.0), now=0.0)
    state.start_probe(0.0)
    state.record(True, 0.5)
    state.start_probe(9.0)  # planned at 2.0; 4, 6 and 8 were missed as well
    assert state.next_probe_at == 9.0  # max(planned + interval, now)
    state.record(True, 9.5)
    state.start_probe(9.5)
    assert state.next_probe_at == 11.0  # back on a grid: one probe made up for the missed ones
    state.record(True, 10.0)
    assert state.next_probe_at == 11.0


@pytest.mark.parametrize(
    ("phase", "first"),
    [(0.0, 10.0), (0.25, 10.5), (0.5, 11.0), (1.0, 12.0), (-3.0, 10.0), (7.0, 12.0)],
)
def test_phase_spreads_the_first_probe(phase, first):
    state = HealthState(HealthPolicy(interval=2.0, timeout=1.0), now=10.0, phase=phase)
    assert state.next_probe_at == first


@given(st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=2, max_size=20))
def test_phases_keep_each_backend_on_its_own_grid(phases):
    policy = HealthPolicy(interval=4.0, timeout=1.0)
    states = [HealthState(policy, now=0.0, phase=phase) for phase in phases]
    for state, phase in zip(states, phases, strict=True):
        assert 0.0 <= state.next_probe_at <= policy.interval
        assert state.next_probe_at == pytest.approx(policy.interval * phase)
        first = state.next_probe_at
        state.start_probe(first)
        state.record(True, first + 0.5)
        assert state.next_probe_at == pytest.approx(first + policy.interval)


# --------------------------------------------------------------------------------------------
# A simulated timeline: how long until a dead backend is marked DOWN
# --------------------------------------------------------------------------------------------


def simulate_death(
    policy: HealthPolicy,
    death: float,
    phase: float,
    latency_share: float,
    start: float = 0.0,
) -> Transition:
    """Drive one HealthState like the prober does, starting each probe at its planned time.
    The backend answers a probe after ``latency`` while it is alive; from ``death`` on it never
    answers and the prober reports a failure at the probe's deadline."""
    latency = policy.timeout * latency_share
    state = HealthState(policy, now=start, phase=phase)
    now = start
    for _ in range(100_000):
        now = max(now, state.next_probe_at)
        deadline = state.start_probe(now)
        if now + latency < death:
            now += latency
            transition = state.record(True, now)
            assert transition is None  # an UP backend that answers stays UP
        else:
            now = deadline
            transition = state.record(False, now, "timeout")
            if transition is not None:
                assert transition.state == DOWN
                return transition
    raise AssertionError("the backend was never marked down")


@pytest.mark.parametrize("fall", [1, 2, 3])
@pytest.mark.parametrize("death", [0.0, 10.0, 10.5, 11.0, 11.999, 12.0, 13.0])
def test_dead_backend_is_marked_down_within_worst_detection_time(fall, death):
    policy = HealthPolicy(interval=2.0, timeout=1.0, fall=fall)
    transition = simulate_death(policy, death, phase=0.0, latency_share=0.1)
    assert transition.at <= death + policy.interval * policy.fall + policy.timeout
    assert transition.at <= death + HealthCheck(interval=2.0, fall=fall).worst_detection_time
    # And not impossibly early: fall probe deadlines must pass after the death.
    assert transition.at >= death + (fall - 1) * policy.interval


def test_worst_case_is_reached_right_after_a_successful_probe():
    policy = HealthPolicy(interval=2.0, timeout=1.0, fall=3)
    # Probes start at 0, 2, 4, ...; answers take 0.1 s.  The backend dies just after the
    # probe at 10 was answered, so the probes at 12, 14 and 16 fail, the last at 17.
    transition = simulate_death(policy, death=10.1 + 1e-9, phase=0.0, latency_share=0.1)
    assert transition.at == 17.0
    assert transition.at <= 10.1 + HealthCheck(interval=2.0, fall=3).worst_detection_time


@given(
    interval=st.floats(min_value=0.1, max_value=60.0),
    timeout_share=st.floats(min_value=0.05, max_value=1.0),
    fall=st.integers(1, 6),
    death=st.floats(min_value=0.0, max_value=500.0),
    phase=st.floats(min_value=0.0, max_value=1.0),
    latency_share=st.floats(min_value=0.0, max_value=0.9),  # answers well inside timeout
    start=st.floats(min_value=0.0, max_value=1000.0),
)
def test_detection_time_bound_holds_for_any_timeline(
    interval, timeout_share, fall, death, phase, latency_share, start
):
    timeout = interval * timeout_share
    policy = HealthPolicy(interval=interval, timeout=timeout, fall=fall)
    death_at = start + death
    transition = simulate_death(
        policy, death_at, phase=phase, latency_share=latency_share, start=start
    )
    bound = (
        death_at + HealthCheck(interval=interval, timeout=timeout, fall=fall).worst_detection_time
    )
    assert bound == pytest.approx(death_at + interval * fall + timeout)
    assert transition.at <= bound + 1e-9 * max(1.0, bound)
    assert math.isfinite(transition.at)
