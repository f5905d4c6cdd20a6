"""The controllers on a real Open vSwitch: agreement, health probes, restarts, the REST API."""

from __future__ import annotations

import hashlib
import re
import signal
import subprocess
import sys
import time

import pytest

from ryu_app.core.gateway import default_mac
from tests.integration import topo as topology
from tests.integration.topo import BIN, CLIENT, CLIENT6, VIP, VIP6, VIP_PORT

# As in topo.write_config: interval 0.5, timeout 0.25, fall 2.
DETECTION_BOUND = 0.5 * 2 + 0.25
RULE = re.compile(r"tp_src=(\d+).*set_field:([\d.]+)->tun_dst")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with topology.running(tmp_path_factory.mktemp("lab"), gateways=2, vms=3) as built:
        yield built


def installed_targets(lab, gateway, family: str = "tcp,") -> dict[int, str]:
    """Client source port -> tunnel endpoint, from the gateway's per-flow rules of one
    family (``tcp,`` for IPv4, ``tcp6`` for IPv6)."""
    targets = {}
    for line in lab.ovs.ofctl("dump-flows", gateway.bridge).splitlines():
        match = RULE.search(line)
        if match and "priority=200" in line and f"priority=200,{family}" in line:
            targets[int(match.group(1))] = match.group(2)
    return targets


def lookup(lab, gateway, port: int, src: str = CLIENT, vip: str = VIP) -> dict:
    query = f"src_ip={src}&src_port={port}&dst_ip={vip}&dst_port={VIP_PORT}&proto=tcp"
    status, body = lab.api(gateway, "GET", f"/v1/lookup?{query}")
    assert status == 200, body
    return body


def test_a_thousand_flows_get_the_same_vm_on_both_gateways(lab):
    first, count = 20000, 1000
    tunnel_of = {vm.name: vm.tunnel_ip for vm in lab.vms}
    # What each gateway's hash says, asked through its own REST API.
    answers = [
        {p: lookup(lab, g, p)["backend"] for p in range(first, first + count)} for g in lab.gateways
    ]
    assert answers[0] == answers[1]
    assert set(answers[0].values()) == set(tunnel_of)
    # What each gateway installed in its switch for the same flows, sent through it alone.
    for gateway in lab.gateways:
        lab.route_vip(gateway)
        try:
            results = lab.connect_many(first, count, mode="connect")
        finally:
            lab.route_vip(*lab.gateways)
        assert set(results.values()) == {"ok"}
    installed = [installed_targets(lab, g) for g in lab.gateways]
    expected = {p: tunnel_of[vm] for p, vm in answers[0].items()}
    assert installed[0] == expected
    assert installed[1] == expected
    # Both now answer from their flow tables, with the same VM.
    for gateway in lab.gateways:
        assert lookup(lab, gateway, first) == {
            "backend": answers[0][first],
            "gateway": gateway.name,
            "source": "table",
            "vip": "web",
        }


def test_an_ipv6_vip_works_end_to_end(lab):
    everyone = {vm.name for vm in lab.vms}
    # Its HTTP probes went out through the tunnel and came back over IPv6 to each gateway.
    for gateway in lab.gateways:
        assert lab.healthy(gateway, "web6") == everyone
    served = lab.connect_many(33000, 30, ipv6=True)
    expected = {p: lookup(lab, lab.gateways[0], p, CLIENT6, VIP6)["backend"] for p in served}
    assert served == expected
    assert len(set(served.values())) > 1
    # The router resolved each gateway's IPv6 address through the controller's ND answer.
    for gateway in lab.gateways:
        neighbour = topology.sh("ip", "-6", "neigh", "show", gateway.address6, ns=lab.router_ns)
        assert f"lladdr {default_mac(gateway.dpid)}" in neighbour, neighbour
        assert installed_targets(lab, gateway, "tcp6")


def test_a_dead_service_is_marked_down_by_each_controller_within_the_bound(lab):
    victim = lab.vms[1]
    lab.lab.kill(victim.server)
    killed = time.monotonic()
    try:
        detected = {}
        for gateway in lab.gateways:
            topology.wait_for(
                lambda g=gateway: victim.name not in lab.healthy(g),
                DETECTION_BOUND + 2,
                f"{gateway.name} to mark {victim.name} down",
                interval=0.02,
            )
            detected[gateway.name] = time.monotonic() - killed
        # Each controller decided on its own probes; the REST poll adds at most a few ms.
        for name, seconds in detected.items():
            assert seconds <= DETECTION_BOUND + 0.1, (name, seconds)
        for gateway in lab.gateways:
            _, health = lab.api(gateway, "GET", "/v1/health")
            row = next(r for r in health["vips"]["web"] if r["backend"] == victim.name)
            assert (row["state"], row["last_result"]) == ("down", "fail")
            assert row["last_detail"] == "connection refused"
        # Every connection started now succeeds, and none goes to the dead VM.
        served = lab.connect_many(30000, 60)
        assert all(not vm.startswith("error") for vm in served.values()), served
        assert victim.name not in set(served.values())
        assert len(set(served.values())) == 2
    finally:
        victim.server = lab.lab.spawn(
            [sys.executable, "-c", topology.VM_SERVER, victim.name], ns=victim.ns
        )
    lab.wait_all_healthy()  # and back up, through rise successes


def test_a_killed_and_restarted_controller_keeps_an_established_download(lab):
    gateway = lab.gateways[0]
    size = 16_000_000  # ~10 s in flight: longer than the switch's reconnect back-off
    lab.route_vip(gateway)
    try:
        sport = 47011  # a port no other test uses: rules of earlier tests may still be there
        download = lab.start_download(size, pause=0.01, chunk=16384, source_port=sport)
        topology.wait_for(
            lambda: sport in installed_targets(lab, gateway), 5, "the download's rule"
        )
        tunnel = installed_targets(lab, gateway)[sport]
        time.sleep(0.3)
        lab.lab.kill(gateway.process, signal.SIGKILL)
        killed = time.monotonic()
        time.sleep(0.5)  # the switch (fail_mode=secure) keeps forwarding on its rules
        lab.start_controller(gateway)
        topology.wait_for(
            lambda: lab.api(gateway, "GET", "/v1/status")[1]["switch_connected"],
            15,
            "the switch to reconnect",
        )
        lab.wait_pipeline(gateway)
        # The new controller took its backend ids back from the state file, so it kept the
        # download's rule (its cookie names the same VM): the same rule, older than the kill.
        assert download.poll() is None, "finished before the reconnect: the test proves nothing"
        assert installed_targets(lab, gateway).get(sport) == tunnel
        age = rule_age(lab, gateway, sport)
        assert age >= time.monotonic() - killed, "deleted at the reconnect and placed again"
        out, err = download.communicate(timeout=60)
        assert download.returncode == 0, err
        block = bytes(range(256)) * 256
        expected = hashlib.sha256((block * (size // len(block) + 1))[:size]).hexdigest()
        assert out.split() == [str(size), expected]
    finally:
        lab.route_vip(*lab.gateways)


def rule_age(lab, gateway, sport: int) -> float:
    """Seconds since the per-flow rule of the client's ``sport`` was installed."""
    for line in lab.ovs.ofctl("dump-flows", gateway.bridge).splitlines():
        if "priority=200" in line and f"tp_src={sport}," in line:
            return float(re.search(r"duration=([\d.]+)s", line).group(1))
    raise AssertionError(f"no rule for source port {sport}")


def test_bad_rest_requests_are_refused_and_change_nothing(lab):
    gateway = lab.gateways[0]
    state_file = lab.workdir / f"{gateway.name}.state.json"
    _, before = lab.api(gateway, "GET", "/v1/vips")
    saved_before = state_file.read_bytes() if state_file.exists() else None
    rules_before = lab.ovs.ofctl("dump-flows", gateway.bridge, "cookie=0x4c53010000000000/-1")
    status, body = lab.api(gateway, "POST", "/v1/vips", b"{not json")
    assert status == 400 and "not JSON" in body["error"]
    status, body = lab.api(gateway, "PUT", "/v1/vips/web", {"address": "10.0.0.100", "port": 70000})
    assert status == 400
    assert [p["path"] for p in body["problems"]] == ["port"]
    status, body = lab.api(gateway, "PATCH", "/v1/vips/web/backends/vm1", {"weight": -1})
    assert status == 400 and body["problems"][0]["path"] == "weight"
    status, body = lab.api(gateway, "DELETE", "/v1/vips/nope")
    assert status == 404
    status, _ = lab.api(gateway, "DELETE", "/v1/health")
    assert status == 405
    assert lab.api(gateway, "GET", "/v1/vips")[1] == before
    assert (state_file.read_bytes() if state_file.exists() else None) == saved_before
    after = lab.ovs.ofctl("dump-flows", gateway.bridge, "cookie=0x4c53010000000000/-1")
    strip = re.compile(r"duration=[^,]*, |n_packets=\d+, n_bytes=\d+, ")
    assert strip.sub("", after) == strip.sub("", rules_before)


def test_a_weight_change_survives_a_restart_through_the_state_file(lab):
    gateway = lab.gateways[1]
    status, body = lab.api(gateway, "PATCH", "/v1/vips/web/backends/vm3", {"weight": 0})
    assert status == 200, body
    try:
        lab.lab.kill(gateway.process, signal.SIGKILL)
        lab.start_controller(gateway)
        lab.wait_pipeline(gateway)
        _, vip = lab.api(gateway, "GET", "/v1/vips/web")
        assert {b["name"]: b["weight"] for b in vip["backends"]}["vm3"] == 0
        # Drained: no new flow through this gateway goes to vm3.
        lab.route_vip(gateway)
        try:
            served = lab.connect_many(31000, 40)
        finally:
            lab.route_vip(*lab.gateways)
        assert "vm3" not in set(served.values()), served
        assert all(not vm.startswith("error") for vm in served.values()), served
    finally:
        status, body = lab.api(gateway, "PATCH", "/v1/vips/web/backends/vm3", {"weight": 1})
        assert status == 200, body


def test_a_bad_config_file_names_the_key_and_starts_nothing(lab, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(lab.config.read_text().replace("port: 80", "port: 80000", 1))
    result = subprocess.run(
        [str(BIN / "lockstep-gateway"), "--config", str(bad), "--gateway", "gw1"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "vips[0].port: must be 1..65535, got 80000" in result.stderr, result.stderr


def lockstep(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "lockstep"), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_lockstep_status_flags_a_disagreement_and_vip_fixes_it(lab, tmp_path):
    urls = [f"http://127.0.0.1:{g.rest_port}" for g in lab.gateways]
    both = [arg for url in urls for arg in ("--gateway", url)]
    agreed = lockstep("status", *both)
    assert agreed.returncode == 0, agreed.stderr
    assert "OK: 2 gateway(s) agree" in agreed.stdout
    changed = lockstep("vip", "weight", "web", "vm2", "0", "--gateway", urls[0])
    assert changed.returncode == 0, changed.stderr
    try:
        split = lockstep("status", *both)
        assert split.returncode == 1
        assert "DISAGREE VIP web: configuration differs" in split.stderr
        # A bad file reaches no gateway.
        bad = tmp_path / "vip.yaml"
        bad.write_text("name: web\naddress: 10.0.0.100\nport: 0\n")
        refused = lockstep("vip", "put", str(bad), *both)
        assert refused.returncode == 2
        assert "port: must be 1..65535, got 0" in refused.stderr
    finally:
        restored = lockstep("vip", "weight", "web", "vm2", "1", *both)
        assert restored.returncode == 0, restored.stderr
    assert lockstep("status", "--config", str(lab.config)).returncode == 0
