"""What a core call wants done, as one value: the shell applies it, nothing is left behind.

Every ``GatewayCore`` entry point returns an ``Effects``: OpenFlow messages for the switch (as
bytes, ``openflow``'s), Maglev tables to build (``TableRequest``: slow, the shell builds them
off its loop and hands each back with ``GatewayCore.table_built``), and lines for the log.
The os-ken app applies it with one method (``LockstepApp.apply``: one write to the switch);
tests read it.  Faucet's valve methods return their list of messages the same way, and Katran's
``addReal``/``delReal`` return their ring's changes: nothing for the caller to drain later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ryu_app.core.balancer import TableRequest


@dataclass(slots=True)
class Effects:
    messages: list[bytes] = field(default_factory=list)  # to the switch, in this order
    tables: list[TableRequest] = field(default_factory=list)  # Maglev tables to build
    notices: list[str] = field(default_factory=list)  # log lines of note (info)
    errors: list[str] = field(default_factory=list)  # log lines of trouble (error)
    warnings: list[str] = field(default_factory=list)  # log lines of concern (warning)

    def __iadd__(self, other: Effects) -> Effects:
        """Add ``other``'s effects after these, in place (a call that gathers several)."""
        self.messages += other.messages
        self.tables += other.tables
        self.notices += other.notices
        self.errors += other.errors
        self.warnings += other.warnings
        return self

    def __add__(self, other: Effects) -> Effects:
        return Effects(
            self.messages + other.messages,
            self.tables + other.tables,
            self.notices + other.notices,
            self.errors + other.errors,
            self.warnings + other.warnings,
        )

    def __bool__(self) -> bool:
        return bool(self.messages or self.tables or self.notices or self.errors or self.warnings)
