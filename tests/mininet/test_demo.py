"""The demo's scenarios end to end, in the test suite: Mininet on a private Open vSwitch, real TCP
traffic, the same checks as ``./run.sh demo`` with smaller counts (``--quick``)."""

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
    "flood",
}

OURS = (
    "lockstep-gateway",
    "vmserver.py",
    "traffic.py",
    "iperf3",
    "hping3",
    "ovs-vswitchd",
    "ovsdb-server",
)


def own_processes() -> set[str]:
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    return {line for line in out.splitlines() if any(name in line for name in OURS)}


def run_demo(out: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    """The demo as a user runs it; on a timeout it gets SIGINT (its clean-up runs) first."""
    argv = [sys.executable, str(ROOT / "mininet" / "demo.py"), "--quick", "--out", str(out)]
    process = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
    return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)


def test_every_scenario_keeps_its_promise(tmp_path):
    before = own_processes()
    result = run_demo(tmp_path)
    report_path = tmp_path / "report.json"
    assert report_path.exists(), result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(report_path.read_text())
    broken = [
        f"{s['name']}: {c['what']}: {c['detail']}"
        for s in report["scenarios"]
        for c in s["checks"]
        if c["ok"] is False
    ]
    assert not broken, "\n".join(broken) + "\n" + result.stdout[-2000:]
    assert {s["name"] for s in report["scenarios"]} == SCENARIOS
    assert report["passed"] is True and result.returncode == 0
    assert "PASS: 9 of 9 scenarios passed" in result.stdout
    # The report's files, and nothing left running or lying around.
    assert (tmp_path / "summary.txt").read_text().startswith("Lockstep demo")
    assert (tmp_path / "spread-connections.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "flood-flood.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert own_processes() == before
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True, check=True)
    prefixes = ("gw", "vm", "ul", "clan", "r1-", "c1-", "c2-", "flooder")
    assert not [line for line in links.stdout.splitlines() if line.startswith(prefixes)]
