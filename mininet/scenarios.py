"""The demo's scenarios, in the order the demo runs them.  Each makes real TCP traffic through the
running emulation (``world.World``), breaks something, and checks one of Lockstep's promises; it
returns a result in the report's format (``scenario_result.Result``: checks, figures, and
optionally per-gateway counts and a timeline).

Every scenario is one function ``(world, counts) -> dict`` in the module of its family:

- ``scenarios_spread.py``: how new connections spread (spread);
- ``scenarios_gateways.py``: a gateway fails, restarts or joins (gateway-nexthop, gateway-kill,
  controller-restart, scale-out);
- ``scenarios_vms.py``: a VM fails, is drained, or is cut off from one gateway (vm-failure,
  drain, disagreement);
- ``scenarios_double.py``: a backend change and an ECMP move at once, second chance off and on
  (double-change);
- ``scenarios_overload.py``: a SYN flood through one gateway (flood).

A new scenario is a function in the family it belongs to (or in a new ``scenarios_<family>.py``)
and one line in ``SCENARIOS`` below: ``demo.py`` (``--only``) and the report take it from here.
``tests/mininet/test_demo.py`` lists the scenarios it expects on its own, as an oracle.  The
clients' source ports tell one scenario's flows from another's in the gateways' flow tables, so
each scenario has its own range: spread 20000+, gateway-nexthop 30000+, gateway-kill 31000+,
vm-failure 36000-38999, drain 40000-43999, controller-restart 45000+, scale-out 47000+,
disagreement 50000-51999, flood 52000-53999 (downloads: client i from the first port + 100 i),
double-change 54000-59999; 60000+ is free.
"""

from __future__ import annotations

from collections.abc import Callable

import scenarios_double
import scenarios_gateways
import scenarios_overload
import scenarios_spread
import scenarios_vms
from scenario_result import Counts
from world import World

Scenario = Callable[[World, Counts], dict]

SCENARIOS: dict[str, Scenario] = {
    "spread": scenarios_spread.spread,
    "gateway-nexthop": scenarios_gateways.gateway_nexthop,
    "gateway-kill": scenarios_gateways.gateway_kill,
    "vm-failure": scenarios_vms.vm_failure,
    "drain": scenarios_vms.drain,
    "controller-restart": scenarios_gateways.controller_restart,
    "scale-out": scenarios_gateways.scale_out,
    "disagreement": scenarios_vms.disagreement,
    "double-change": scenarios_double.double_change,
    "flood": scenarios_overload.flood,  # last: it leaves tens of thousands of idle flows
}

# Scenarios that need one gateway more than the ECMP group starts with: demo.py builds it, stops
# it at once and hands it over as ``world.spare``.
NEED_A_SPARE_GATEWAY = frozenset({"scale-out"})
