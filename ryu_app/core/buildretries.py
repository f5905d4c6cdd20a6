"""Maglev tables whose build failed, asked for again after a back-off.

The shell builds the tables a core call asks for (``Effects.tables``) and reports each outcome
(``GatewayCore.table_built`` / ``table_build_failed``).  A failed build is asked for again after
a delay that doubles with each failure of the same table, up to a maximum; one pending retry per
VIP (the latest request: an older one is not worth building).  Pure: every call takes ``now``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ryu_app.core.effects import Effects

if TYPE_CHECKING:
    from ryu_app.core.balancer import TableRequest

# A table whose build failed is asked for again after this long, doubled per failure of the
# same table, up to the maximum (then every maximum, for as long as the VIP wants it).
BUILD_RETRY_FIRST = 0.5
BUILD_RETRY_MAX = 60.0


def build_retry_delay(attempt: int) -> float:
    """Seconds before the ``attempt``-th failed build of a table is tried again (from 1)."""
    return min(BUILD_RETRY_FIRST * 2 ** min(attempt - 1, 32), BUILD_RETRY_MAX)


class BuildRetries:
    """Failures so far per table, and the retry due per VIP."""

    def __init__(self):
        self._failures: dict[TableRequest, int] = {}  # failed builds so far, per table
        self._due: dict[str, tuple[float, TableRequest]] = {}  # VIP -> (when, what)

    def __bool__(self) -> bool:
        return bool(self._due)

    def built(self, request: TableRequest) -> None:
        """``request``'s table was built: its failures are forgotten."""
        self._failures.pop(request, None)

    def failed(self, request: TableRequest, error: Exception, now: float) -> Effects:
        """``request``'s build raised ``error``: plan its retry, and say so."""
        failures = self._failures[request] = self._failures.get(request, 0) + 1
        delay = build_retry_delay(failures)
        self._due[request.vip] = (now + delay, request)  # one per VIP: the latest
        return Effects(
            errors=[
                f"building the Maglev table of VIP {request.vip} failed ({failures} time(s)): "
                f"{error!r}; asking again in {delay:g} s if the VIP still wants it"
            ]
        )

    def due(self, now: float, wants: Callable[[TableRequest], bool]) -> Effects:
        """The retries due by ``now`` that are still ``wants``-ed, as tables to build (each
        handed out once); the others are dropped, and that is said."""
        effects = Effects()
        due = [request for at, request in self._due.values() if at <= now]
        for request in due:
            del self._due[request.vip]
            if wants(request):
                effects.tables.append(request)
            else:  # the VIP changed (its new table was asked for then), is gone, or has it
                self._failures.pop(request, None)
                effects.notices.append(f"VIP {request.vip}: retry of a failed build dropped")
        return effects
