"""Listeners (OpenFlow and REST) compared per machine: a deployment rule of its own because
gateways on different machines may well use the same address and port (127.0.0.1:6653 each).
"""

from __future__ import annotations

import ipaddress

from ryu_app.core.model import Gateway
from topology.schema import Problem, endpoint_text


def listener_problems(gateways: list[tuple[str, Gateway]]) -> list[Problem]:
    """One socket per address and port on each machine: the OpenFlow and REST listeners of
    the gateways that share a ``host`` (those without one share a machine too) must not clash.
    A wildcard listener (0.0.0.0, ::) takes its port on every address of its family (``::``
    on IPv4 ones too, as Linux binds it by default), so it clashes with any other listener on
    that port.  Gateways on different machines may use the same listener, 127.0.0.1:6653 say."""
    problems = []
    taken: list[tuple[str | None, tuple[str, int], str]] = []
    for where, gateway in gateways:
        for label, listener in (("openflow", gateway.openflow), ("rest", gateway.rest)):
            here = f"{where}.{label}"
            for machine, other, other_where in taken:
                if machine == gateway.host and _listeners_clash(listener, other):
                    text = endpoint_text(*listener)
                    if listener == other:
                        reason = f"duplicate listen address {text!r} (also {other_where})"
                    else:
                        reason = (
                            f"listen address {text!r} overlaps {other_where} "
                            f"({endpoint_text(*other)!r}): a wildcard takes its port on every "
                            "address"
                        )
                    on_host = f" on host {machine!r}" if machine else ""
                    problems.append(Problem(here, reason + on_host))
                    break
            taken.append((gateway.host, listener, here))
    return problems


def _listeners_clash(first: tuple[str, int], second: tuple[str, int]) -> bool:
    if first[1] != second[1]:
        return False
    a, b = ipaddress.ip_address(first[0]), ipaddress.ip_address(second[0])
    if a == b or "::" in (str(a), str(b)):
        return True
    return a.version == b.version and (a.is_unspecified or b.is_unspecified)
