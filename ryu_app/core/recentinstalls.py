"""Per-flow rules installed a moment ago: the repeated packet-ins of a new connection (2-5 are
normal, packets that arrived before its rule) get only a packet-out, not the rule again.

A packet-in for a known flow after the window means the rule is gone (switch reconnected,
rule lost): ``GatewayCore`` installs it again.  Pure: every call takes ``now``.
"""

from __future__ import annotations

# A per-flow rule installed less than this long ago is taken to be in the switch.
RECENT_INSTALL_SECONDS = 2.0


class RecentInstalls:
    """Flow keys whose rule was installed less than ``RECENT_INSTALL_SECONDS`` ago.

    Two generations of plain dicts, the older dropped whole when the newer is that old: O(1)
    per packet, and memory bounded by two windows' worth of new flows.  (A single dict trimmed
    from its oldest end costs a scan over every slot trimmed before, which grew to ~0.3 ms
    per new flow at 20k flows/s.)"""

    def __init__(self, window: float = RECENT_INSTALL_SECONDS):
        self.window = window
        self._new: dict[bytes, float] = {}
        self._old: dict[bytes, float] = {}
        self._started = float("-inf")  # when the newer generation began

    def add(self, key: bytes, now: float) -> None:
        if now - self._started > self.window:
            self._old, self._new, self._started = self._new, {}, now
        self._new[key] = now

    def contains(self, key: bytes, now: float) -> bool:
        installed = self._new.get(key)
        if installed is None:
            installed = self._old.get(key)
        return installed is not None and now - installed <= self.window

    def discard(self, key: bytes) -> None:
        self._new.pop(key, None)
        self._old.pop(key, None)

    def clear(self) -> None:
        self._new.clear()
        self._old.clear()

    def __len__(self) -> int:
        return len(self._new) + len(self._old)
