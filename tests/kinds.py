"""What kind of test each test is, and what it needs from the machine: the one place that says.

Kinds (pytest markers, registered in pyproject.toml; ``-m unit`` is the quick run):

- ``unit``: Python only, in this process or a few of its own on loopback; no root, no system
  tools.  Everything not listed in ``PLACES`` is a unit test.
- ``integration``: real processes of the controller, a private Open vSwitch, network
  namespaces, Mininet's ``mnexec``, the deployment guide's commands.
- ``e2e``: the whole demo as a user runs it.

``tests/conftest.py`` marks each collected test from ``PLACES`` and, before it runs, checks its
``NEEDS``.  Something missing skips the test with a reason that names it, except under CI
(``CI`` set to ``true``, as CI services do and ``.ci/run`` does): there the test fails
instead, so that a missing install step can never turn into a green run.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Callable
from typing import NamedTuple

KINDS = ("unit", "integration", "e2e")


# ---- what a test may need ---------------------------------------------------------------------


def _root() -> str | None:
    uid = os.geteuid()
    return None if uid == 0 else f"root (this runs as uid {uid})"


def _commands(*names: str, package: str) -> Callable[[], str | None]:
    def check() -> str | None:
        missing = [name for name in names if shutil.which(name) is None]
        if not missing:
            return None
        return f"{', '.join(missing)} on PATH (Debian package {package})"

    return check


def _netns() -> str | None:
    if shutil.which("ip") is None:
        return "ip on PATH (Debian package iproute2)"
    result = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return f"a working 'ip netns' ('ip netns list' said: {result.stderr.strip()[:200]})"
    return None


def _ryu434() -> str | None:
    python = os.environ.get("LOCKSTEP_RYU_PYTHON")
    if not python:
        return "LOCKSTEP_RYU_PYTHON: classic Ryu 4.34's interpreter (./run.sh test builds it)"
    if not os.access(python, os.X_OK):
        return f"LOCKSTEP_RYU_PYTHON={python}: not an executable"
    return None


# Need -> a check that answers None when it is met, or what is missing (for the skip reason).
NEEDS: dict[str, Callable[[], str | None]] = {
    "root": _root,
    "ovs": _commands(
        "ovsdb-tool",
        "ovsdb-server",
        "ovs-vswitchd",
        "ovs-vsctl",
        "ovs-ofctl",
        "ovs-appctl",
        package="openvswitch-switch",
    ),
    "netns": _netns,
    "ethtool": _commands("ethtool", package="ethtool"),
    "hping3": _commands("hping3", package="hping3"),
    "mnexec": _commands("mnexec", package="mininet"),
    "iperf3": _commands("iperf3", package="iperf3"),
    "nft": _commands("nft", package="nftables"),
    "systemd-analyze": _commands("systemd-analyze", package="systemd"),
    "ryu434": _ryu434,
}

# A lab of our own: namespaces and veths (TX offload off) on a private Open vSwitch.
OVS_LAB = ("root", "ovs", "netns", "ethtool")


# ---- where each kind is -----------------------------------------------------------------------


class Place(NamedTuple):
    """Tests whose node id is ``where`` (a folder ending in ``/``, a file, or a file's test:
    ``file.py::test_name``, every parametrisation of it), their kind and needs."""

    where: str
    kind: str
    needs: tuple[str, ...] = ()

    def holds(self, nodeid: str) -> bool:
        if self.where.endswith("/"):
            return nodeid.startswith(self.where)
        return nodeid == self.where or nodeid.startswith((self.where + "::", self.where + "["))


# The first place that holds a test says what it is; unlisted tests are unit tests.
PLACES = (
    # The demo, as ./run.sh demo runs it (--quick): Mininet on a private Open vSwitch.
    Place(
        "tests/mininet/test_demo.py",
        "e2e",
        # hping3: the flood scenario; nft: the double-change scenario's VM drop rule
        ("root", "ovs", "mnexec", "ethtool", "iperf3", "hping3", "nft"),
    ),
    # Mininet nodes built for real: each starts a shell through mnexec.
    Place(
        "tests/mininet/test_lockstep_topo.py::test_gateway_switch_bridge_options_add_its_vxlan_port",
        "integration",
        ("mnexec",),
    ),
    Place(
        "tests/mininet/test_lockstep_topo.py::test_underlay_bridge_keeps_its_addresses_and_neighbours",
        "integration",
        ("mnexec",),
    ),
    # bench/bench_ovs.py --quick: a gateway on a private OVS driven by hping3.
    Place(
        "tests/bench/test_bench_ovs.py::test_quick_run_through_a_real_ovs_reaches_the_vms_and_leaves_nothing_behind",
        "integration",
        (*OVS_LAB, "hping3"),
    ),
    # bench/bench_newflow.py: controllers as processes of their own, a fake switch (loopback).
    Place(
        "tests/bench/test_bench_newflow.py::test_a_short_run_of_the_memory_and_rebuild_phases",
        "integration",
    ),
    Place("tests/integration/test_ryu434.py", "integration", (*OVS_LAB, "ryu434")),
    Place("tests/integration/test_flood_guard_ovs.py", "integration", (*OVS_LAB, "hping3")),
    Place("tests/integration/test_switch_mode_ovs.py", "integration", OVS_LAB),
    Place("tests/integration/test_switch_mode_pair_ovs.py", "integration", OVS_LAB),
    # Second chance's VMs drop segments of unknown connections with an nftables rule.
    Place("tests/integration/test_second_chance_ovs.py", "integration", (*OVS_LAB, "nft")),
    # ovs-ofctl ofp-print decodes the switch-mode rules' bytes (no switch started).
    Place(
        "tests/ryu_app/core/test_switchrules.py::test_open_vswitch_reads_the_slot_rules_as_the_prototype_writes_them",
        "integration",
        ("ovs",),
    ),
    # ovs-ofctl parse-oxm / ofp-print: Open vSwitch's order and reading of a pin's flow
    # statistics (switch mode's pins read back; no switch started).
    Place(
        "tests/ryu_app/core/test_ofstats.py::test_open_vswitch_writes_a_pins_fields_in_the_golden_order",
        "integration",
        ("ovs",),
    ),
    Place(
        "tests/ryu_app/core/test_ofstats.py::test_open_vswitch_reads_the_golden_reply_as_the_pin_it_is",
        "integration",
        ("ovs",),
    ),
    # lockstep-gateway processes on loopback, no switch.
    Place("tests/integration/test_process_supervision.py", "integration"),
    Place("tests/integration/test_rest_fuzz.py", "integration"),
    Place("tests/integration/", "integration", OVS_LAB),
    # docs/deployment.md, run: its systemd unit, the guide end to end on a private OVS, and its
    # install block (a fresh virtualenv from the package index).
    Place(
        "tests/docs/test_deployment_guide.py::test_the_unit_passes_systemd_analyze",
        "integration",
        ("systemd-analyze",),
    ),
    Place("tests/docs/test_deployment_guide.py::test_the_guide_end_to_end", "integration", OVS_LAB),
    Place("tests/docs/", "integration"),
    # The fleet simulator on small fleets (python -m fleetsim runs the big ones).
    Place("tests/fleetsim/", "unit"),
)

UNIT = Place("", "unit")


def place_of(nodeid: str) -> Place:
    return next((place for place in PLACES if place.holds(nodeid)), UNIT)


# ---- the guard --------------------------------------------------------------------------------


@functools.cache
def missing(need: str) -> str | None:
    """What is missing for ``need`` on this machine (asked once per run), None if nothing."""
    return NEEDS[need]()


def unmet(needs: tuple[str, ...], check: Callable[[str], str | None] = missing) -> list[str]:
    return [reason for reason in map(check, needs) if reason is not None]


def under_ci(environ=os.environ) -> bool:
    return environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def guard(needs: tuple[str, ...], ci: bool, check=missing) -> tuple[str, str] | None:
    """None if the test may run; else ("skip" or, under CI, "fail", the reason)."""
    reasons = unmet(needs, check)
    if not reasons:
        return None
    reason = "needs " + "; ".join(reasons)
    if ci:
        return "fail", f"{reason} -- under CI every test must run (install it)"
    return "skip", reason
