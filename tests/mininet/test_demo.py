"""The demo's scenarios end to end, in the test suite: Mininet on a private Open vSwitch, real TCP
traffic, the same checks as ``./run.sh demo`` with smaller counts (``--quick``), in each mode
(``--mode``): every scenario with controller-mode gateways and with switch-mode gateways, and
with a mixed fleet the scenarios where connections move between gateways of the two modes (the
others act on one gateway at a time, which the first two runs cover in each mode)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = {
    "spread",
    "gateway-nexthop",
    "gateway-kill",
    "vm-failure",
    "drain",
    "controller-restart",
    "scale-out",
    "disagreement",
    "double-change",
    "flood",
}
# Mixed (gw1 controller, gw2 switch, gw3 controller): connections move controller -> switch
# (gateway-nexthop, gateway-kill, disagreement), switch -> controller (scale-out: gw3 joins),
# and every VM a lookup predicts must be the one both kinds of gateway chose (spread).
MIXED = ["spread", "gateway-nexthop", "gateway-kill", "controller-restart", "scale-out",
         "disagreement"]  # fmt: skip
# Checks known to fail, by (mode, scenario, check): reported as a warning, not as the test's
# failure, until the product closes the gap; any other broken check fails the test.
OURS = (
    "lockstep-gateway",
    "vmserver.py",
    "traffic.py",
    "iperf3",
    "hping3",
    "ovs-vswitchd",
    "ovsdb-server",
)


def own_processes(out: Path) -> set[str]:
    """Processes of the kinds the demo starts; not those of another test's folder (a test
    elsewhere on a shared machine may run its own Open vSwitch meanwhile), nor zombies (an
    exited daemon not yet reaped by its parent, which holds nothing but its pid: seen once,
    gone by the next test)."""
    listing = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
    return {
        line
        for line in listing.stdout.splitlines()
        if any(name in line for name in OURS)
        and ("/pytest-of-" not in line or str(out) in line)
        and not line.endswith("<defunct>")
    }


def run_demo(out: Path, *options: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """The demo as a user runs it; on a timeout it gets SIGINT (its clean-up runs) first."""
    argv = [sys.executable, str(ROOT / "mininet" / "demo.py"), "--quick", "--out", str(out)]
    argv += options
    process = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
    return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)


def demo_report(out: Path, mode: str, only: list[str] | None = None) -> tuple[dict, str]:
    """Run the demo in ``mode`` (every scenario, or ``only`` these) and check its report: every
    scenario asked for ran, every check held, nothing was left running or
    lying around.  The report and the demo's output."""
    before = own_processes(out)
    options = ["--mode", mode] + [f"--only={name}" for name in only or []]
    result = run_demo(out, *options)
    report_path = out / "report.json"
    assert report_path.exists(), result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(report_path.read_text())
    assert not report.get("setup_failed"), result.stderr[-3000:]
    assert report["mode"] == mode
    broken = [
        f"{s['name']}: {c['what']}: {c['detail']}"
        for s in report["scenarios"]
        for c in s["checks"]
        if c["ok"] is False
    ]
    assert not broken, "\n".join(broken) + "\n" + result.stdout[-2000:]
    assert {s["name"] for s in report["scenarios"]} == set(only or SCENARIOS)
    assert result.returncode == 0 and report["passed"] is True
    count = len(only or SCENARIOS)
    assert f"PASS: {count} of {count} scenarios passed" in result.stdout
    assert f"{mode} mode (" in " ".join(result.stdout.split())  # the headline names it
    # Nothing left running or lying around.
    assert own_processes(out) == before
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True, check=True)
    prefixes = ("gw", "vm", "ul", "clan", "r1-", "c1-", "c2-", "flooder")
    assert not [line for line in links.stdout.splitlines() if line.startswith(prefixes)]
    return report, result.stdout


def test_every_scenario_keeps_its_promise(tmp_path):
    report, _ = demo_report(tmp_path, "controller")
    assert report["passed"] is True
    assert report["gateway_modes"] == {"gw1": "controller", "gw2": "controller",
                                       "gw3": "controller"}  # fmt: skip
    # The report's files.
    assert (tmp_path / "summary.txt").read_text().startswith("Lockstep demo")
    assert (tmp_path / "spread-connections.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "flood-flood.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_scenario_keeps_its_promise_in_switch_mode(tmp_path):
    report, _ = demo_report(tmp_path, "switch")
    assert set(report["gateway_modes"].values()) == {"switch"}
    flood = next(s for s in report["scenarios"] if s["name"] == "flood")
    assert flood["figures"]["spoofed_pins"] == 0  # judged too; the figure says it was read


def test_gateways_of_both_modes_take_over_each_others_connections(tmp_path):
    report, _ = demo_report(tmp_path, "mixed", MIXED)
    assert report["gateway_modes"] == {"gw1": "controller", "gw2": "switch", "gw3": "controller"}
    assert report["passed"] is True
