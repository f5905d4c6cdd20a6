"""What the switch reports about itself, in words: its error messages (counted by (type, code),
each kind logged at a bounded rate) and where the flood guard runs once its meters are known.

A full flow table refuses every flow-mod of a flood, so one line per error would drown the log:
each kind is logged at most once per ``ERROR_LOG_EVERY`` seconds, with how many were left out.
Pure: every call takes ``now``.
"""

from __future__ import annotations

from collections import Counter

from ryu_app.core.floodguard import CONTROLLER, SWITCH, Guard
from ryu_app.core.ofmeter import SwitchError

ERROR_LOG_EVERY = 10.0
MAX_ERROR_KINDS = 64  # distinct (type, code) pairs counted; the rest as (-1, -1)
OTHER_KIND = (-1, -1)


class SwitchErrorLog:
    """Counts errors into ``counts`` (the gateway's ``counters.switch_errors``) and decides
    which to log."""

    def __init__(self, counts: Counter):
        self.counts = counts
        self._logged: dict[tuple[int, int], tuple[float, int]] = {}  # kind -> at, left out

    def count(self, error: SwitchError) -> tuple[int, int]:
        """Count ``error``: under its kind, or ``OTHER_KIND`` once there are too many kinds."""
        kind = (error.type, error.code)
        if kind not in self.counts and len(self.counts) >= MAX_ERROR_KINDS:
            kind = OTHER_KIND
        self.counts[kind] += 1
        return kind

    def line(self, kind: tuple[int, int], error: SwitchError, now: float) -> str | None:
        """The line to log for ``error`` (counted as ``kind``), or None if its kind was logged
        less than ``ERROR_LOG_EVERY`` ago (then it is counted as left out)."""
        logged_at, left_out = self._logged.get(kind, (None, 0))
        if logged_at is not None and now - logged_at < ERROR_LOG_EVERY:
            self._logged[kind] = (logged_at, left_out + 1)
            return None
        self._logged[kind] = (now, 0)
        more = f"; {left_out} more like it in the last {ERROR_LOG_EVERY:g} s" if left_out else ""
        return (
            f"the switch refused a message (type {error.refused_type}): error type"
            f" {error.type} code {error.code}{more}"
        )


def guard_ready_lines(guard: Guard) -> tuple[list[str], list[str]]:
    """The guard knows where it runs (the switch's meters, or the controller's bucket): the
    notices and errors that say so."""
    config = guard.config
    if guard.mode == SWITCH:
        notice = (
            f"flood guard in the switch: {config.rate} new connections/s to the controller"
            f" (burst {config.burst}), probe answers in a budget of their own"
        )
        return [notice], []
    if guard.mode == CONTROLLER:
        error = (
            "the switch has no meters that drop by packet rate: the flood guard runs in the"
            f" controller only ({config.rate} new connections/s); a flood still reaches"
            " the controller: set the switch's controller rate limit (Open vSwitch:"
            " ovs-vsctl set controller BRIDGE controller_rate_limit=RATE)"
        )
        return [], [error]
    return [], []
