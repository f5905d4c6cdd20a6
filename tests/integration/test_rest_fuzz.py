"""schemathesis against a real ``lockstep-gateway``: the served OpenAPI document, positive and
negative cases for every operation, stateful chains through the document's links, with and
without a bearer token.  It must find nothing (issue 11, finding 6: the document used to state
no constraint, and schemathesis never managed to create a VIP).

No switch is needed: the controller serves REST and builds tables without one.  Ports are
ephemeral; the run is under the OVS lock like every test that starts a gateway process.

How the checks are configured, and why (``CONFIG``):

- ``positive_data_acceptance``: a body the schema accepts may still be refused with a 400 for
  rules JSON Schema cannot state, all listed in the document's description
  (``ryu_app/api/openapi.py``): a prime ``table_size`` at least the number of backends, names and
  tunnel IPs unique across VIPs, one VIP per address/port/protocol, a gateway address of the
  VIP's IP version, ``timeout`` < ``interval``, http checks on tcp VIPs only, a udp VIP's
  ``health.port``, a body name that must match the URL.  A write may also meet a 404 (the VIP
  or backend in its path does not exist) or a 409 (the name exists).  Reads get no such
  leeway: 2xx, or 404 for an unknown name or a flow no VIP serves; and a lookup's src_ip and
  dst_ip must be of one IP version (a 400, stated in its summary).
- ``negative_data_rejection``: data the schema refuses must get one of the 4xx the API uses
  (the default list also allows 5xx, 409, 422 and more).
- Everything else runs as schemathesis ships it, ``ignored_auth`` included for the token run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from lab.ovs import free_port, listening, wait_for

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]
# Examples per operation and phase.  Measured here (2 cores, shared): 200 open + 100 with the
# token take ~35 s + ~15 s; the token run repeats the open one's validation, its point is auth.
EXAMPLES = {"open": 200, "with-token": 100}
SEED = 11

CONFIG = """
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "413", "415"]

[checks.positive_data_acceptance]
expected-statuses = ["2xx", "400", "404", "409"]

[[operations]]
include-operation-id = "lookup"
[operations.checks.positive_data_acceptance]
expected-statuses = ["2xx", "400", "404"]

[[operations]]
include-method = "GET"
exclude-operation-id = "lookup"
[operations.checks.positive_data_acceptance]
expected-statuses = ["2xx", "404"]
"""
TOKEN_AUTH = """
[auth.openapi.bearer]
bearer = "${LOCKSTEP_FUZZ_TOKEN}"
"""


def deployment(openflow: int, rest: int) -> dict:
    """One gateway with an address of each IP version (so a VIP of either is servable), no
    underlay (so any tunnel IP is reachable) and one VIP for the operations on a name."""
    return {
        "version": 1,
        "vips": [
            {
                "name": "web",
                "address": "203.0.113.10",
                "port": 80,
                "table_size": 251,
                "backends": [
                    {"name": f"vm{i}", "tunnel_ip": f"10.20.0.1{i}", "mac": f"02:00:00:00:01:0{i}"}
                    for i in (1, 2)
                ],
            }
        ],
        "gateways": [
            {
                "name": "gw1",
                "dpid": 1,
                "addresses": ["198.51.100.1", "2001:db8::1"],
                "tunnel_ip": "10.20.0.1",
                "uplink_port": "eth1",
                "openflow": f"127.0.0.1:{openflow}",
                "rest": f"127.0.0.1:{rest}",
            }
        ],
    }


@pytest.fixture
def gateway(tmp_path):
    """Start one gateway; yields ``start(token) -> base URL``, stops what it started."""
    processes = []

    def start(token: str | None) -> str:
        folder = tmp_path / ("with-token" if token else "open")
        folder.mkdir()
        openflow, rest = free_port(), free_port()
        config = folder / "deployment.yaml"
        config.write_text(yaml.safe_dump(deployment(openflow, rest)), encoding="utf-8")
        state = folder / "gw1.json"
        stale = folder / ".gw1.json.999999.tmp"  # a save killed half-way, long ago
        stale.write_text('{"version": 1, "vi', encoding="utf-8")
        argv = [str(BIN / "lockstep-gateway"), "--config", str(config), "--gateway", "gw1"]
        argv += ["--state-file", str(state)]
        if token:
            (folder / "token").write_text(token, encoding="utf-8")
            argv += ["--token-file", str(folder / "token")]
        with (folder / "gateway.log").open("w") as log:  # the child keeps its own copy
            processes.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT))
        wait_for(lambda: listening(rest), 30, "the gateway's REST API")
        assert not stale.exists()  # removed at start (finding 8)
        assert "a save cut short" in (folder / "gateway.log").read_text()
        return f"http://127.0.0.1:{rest}"

    yield start
    for process in processes:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def schemathesis(base: str, folder: Path, token: str | None) -> subprocess.CompletedProcess:
    examples = (
        os.environ.get("LOCKSTEP_FUZZ_EXAMPLES") or EXAMPLES["with-token" if token else "open"]
    )
    config = folder / "schemathesis.toml"
    config.write_text(CONFIG + (TOKEN_AUTH if token else ""), encoding="utf-8")
    argv = [str(BIN / "schemathesis"), "--config-file", str(config), "run"]
    argv += [f"{base}/v1/openapi.json", "--checks", "all", "--mode", "all"]
    argv += ["--max-examples", str(examples), "--seed", str(SEED), "--workers", "1"]
    argv += ["--generation-database", "none", "--request-timeout", "20", "--no-color"]
    env = {**os.environ, "LOCKSTEP_FUZZ_TOKEN": token or ""}
    return subprocess.run(
        argv, capture_output=True, text=True, cwd=folder, env=env, timeout=900, check=False
    )


@pytest.mark.parametrize("token", [None, "fuzz-token-0123"], ids=["open", "with-token"])
def test_schemathesis_finds_nothing(gateway, tmp_path, token):
    base = gateway(token)
    started = time.monotonic()
    result = schemathesis(base, tmp_path, token)
    took = time.monotonic() - started
    report = result.stdout[-20_000:] + result.stderr[-5_000:]
    assert result.returncode == 0, report
    summary = result.stdout.rsplit("SUMMARY", 1)[-1]
    assert "Tested: 16" in summary, report  # every operation was exercised
    print(f"schemathesis ({'token' if token else 'open'}): {took:.0f} s\n{summary}")
