"""Smoke test: the same app under classic Ryu 4.34, in its own virtualenv, on a real OVS.

``./run.sh test`` builds that virtualenv (``ryu_venv_install``) and names its interpreter in
``LOCKSTEP_RYU_PYTHON``; without it (plain ``pytest``) this module is skipped, and fails under CI
(``tests/kinds.py``).

    client ns  r....ce -- r....gu  gateway bridge r....g (fail_mode=secure)  r....gt vxlan (flow)
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from tests.integration.netlab import Lab, PrivateOVS, free_port, listening, sh, wait_for

RYU_PYTHON = os.environ.get("LOCKSTEP_RYU_PYTHON")
ROOT = Path(__file__).resolve().parents[2]

VIP = "10.0.0.100"
GATEWAY_ADDRESS = "10.0.1.1"
CLIENT = "10.0.1.11"
TUNNEL_IP = "10.99.0.1"
BACKENDS = {"vm1": ("10.99.0.11", "02:00:00:00:01:01"), "vm2": ("10.99.0.12", "02:00:00:00:01:02")}
DPID = 0x5


def ryu_python(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [RYU_PYTHON, *args],
        cwd=ROOT,
        env=dict(os.environ, **env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def write_config(path: Path, bridge_ports: dict[str, str], openflow_port: int, rest_port: int):
    backends = "\n".join(
        f"      - {{name: {name}, tunnel_ip: {ip}, mac: '{mac}'}}"
        for name, (ip, mac) in BACKENDS.items()
    )
    path.write_text(
        textwrap.dedent(
            """\
            vips:
              - name: web
                address: {vip}
                port: 80
                vni: 100
                # No VM answers here: probes must not take the backends down during the test.
                health: {{type: tcp, interval: 60, timeout: 1, rise: 1, fall: 3}}
                backends:
            {backends}
            gateways:
              - name: gw1
                dpid: {dpid}
                addresses: [{address}]
                uplink_port: {uplink}
                tunnel_port: {tunnel}
                tunnel_ip: {tunnel_ip}
                openflow: 127.0.0.1:{openflow}
                rest: 127.0.0.1:{rest}
            """
        ).format(
            vip=VIP,
            backends=backends,
            dpid=DPID,
            address=GATEWAY_ADDRESS,
            tunnel_ip=TUNNEL_IP,
            openflow=openflow_port,
            rest=rest_port,
            **bridge_ports,
        )
    )


def waited(ovs: PrivateOVS, log: Path, predicate, timeout: float, what: str):
    """``wait_for``, failing with the end of both logs."""
    try:
        return wait_for(predicate, timeout, what)
    except TimeoutError as error:
        ovs_log = (ovs.rundir / "ovs-vswitchd.log").read_text().splitlines()[-15:]
        controller_log = log.read_text().splitlines()[-15:]
        raise AssertionError(
            "\n".join([str(error), "ovs-vswitchd.log:", *ovs_log, "controller:", *controller_log])
        ) from None


@pytest.fixture
def gateway(tmp_path):
    """A private OVS with one gateway bridge whose controller runs under the Ryu venv."""
    lab = Lab(f"r{os.getpid() % 10000:04d}")
    ovs = PrivateOVS(tmp_path / "ovs")
    try:
        ovs.start()
        bridge, uplink, tunnel = lab.name("g"), lab.name("gu"), lab.name("gt")
        client = lab.netns("c")
        openflow_port, rest_port = free_port(), free_port()
        config = tmp_path / "deployment.yaml"
        write_config(config, {"uplink": uplink, "tunnel": tunnel}, openflow_port, rest_port)
        log = tmp_path / "controller.log"
        process = lab.spawn(
            [RYU_PYTHON, "-m", "ryu_app", "--config", str(config), "--gateway", "gw1"]
            + ["--state-file", str(tmp_path / "state.json")],  # not the machine's default
            log=log,
            env=dict(os.environ, LOCKSTEP_FRAMEWORK="ryu", PYTHONPATH=str(ROOT)),
        )
        wait_for(
            lambda: listening(openflow_port) or process.poll() is not None, 30, "Ryu to listen"
        )
        assert process.poll() is None, log.read_text()
        ovs.vsctl(
            "add-br",
            bridge,
            "--",
            "set",
            "bridge",
            bridge,
            "datapath_type=netdev",
            "fail_mode=secure",
            "protocols=OpenFlow13",
            f"other-config:datapath-id={DPID:016x}",
        )
        lab.root_links.append(bridge)

        def bridge_opened():
            if sh("ovs-ofctl", "-O", "OpenFlow13", "show", bridge, check=False, env=ovs.env):
                return True
            ovs.vsctl("set", "bridge", bridge, f"external-ids:retry={time.monotonic()}")  # again
            return False

        waited(
            ovs,
            log,
            bridge_opened,
            30,
            f"bridge {bridge}: all userspace bridges of a machine share the datapath tap "
            "'ovs-netdev'; while another OVS (another test run?) holds it, ours cannot open it",
        )
        lab.veth(lab.name("ce"), uplink, client, None)
        ovs.vsctl("add-port", bridge, uplink)
        ovs.vsctl(
            "add-port",
            bridge,
            tunnel,
            "--",
            "set",
            "interface",
            tunnel,
            "type=vxlan",
            "options:remote_ip=flow",
            f"options:local_ip={TUNNEL_IP}",
            "options:key=flow",
        )
        sh("ip", "addr", "add", f"{CLIENT}/24", "dev", lab.name("ce"), ns=client)
        sh("ip", "route", "add", f"{VIP}/32", "via", GATEWAY_ADDRESS, ns=client)
        ovs.vsctl("set-controller", bridge, f"tcp:127.0.0.1:{openflow_port}")
        yield {
            "ovs": ovs,
            "bridge": bridge,
            "client": client,
            "config": config,
            "log": log,
            "openflow_port": openflow_port,
            "rest_port": rest_port,
            "uplink": uplink,
            "state_file": tmp_path / "state.json",
        }
        assert process.poll() is None, "the controller died"
    finally:
        try:
            # The bridge's tap is persistent: let ovs-vswitchd remove it (it may re-create a tap
            # that was deleted under it), then delete what is left by name.
            with contextlib.suppress(RuntimeError):
                if len(ovs.pids) == 2:
                    ovs.vsctl("--if-exists", "del-br", lab.name("g"))
            lab.close()
        finally:
            ovs.stop()


def test_the_venv_has_ryu_and_not_os_ken():
    probe = ryu_python(
        "-c", "import ryu_app.shell.compat as c; print(c.FRAMEWORK)", LOCKSTEP_FRAMEWORK="ryu"
    )
    assert probe.stdout.strip() == "ryu", probe.stderr
    version = ryu_python("-c", "import ryu; print(ryu.version)")
    assert version.stdout.strip() == "4.34", version.stderr
    assert ryu_python("-c", "import os_ken").returncode != 0  # Ryu is all it can use


def test_switch_connects_pipeline_installs_and_a_syn_gets_its_rule(gateway):
    ovs, bridge, log = gateway["ovs"], gateway["bridge"], gateway["log"]

    def pipeline():
        flows = ovs.ofctl("dump-flows", bridge)
        return "priority=100" in flows and flows

    flows = waited(ovs, log, pipeline, 20, "the pipeline")
    cookies = re.findall(r"cookie=(0x[0-9a-f]+)", flows)
    assert cookies and all(c.startswith("0x4c53") for c in cookies), flows
    # Connected, as both ends saw it (OVS's is_connected column lags by up to 5 s).
    ovs_log = (ovs.rundir / "ovs-vswitchd.log").read_text()
    assert f"{bridge}<->tcp:127.0.0.1:{gateway['openflow_port']}: connected" in ovs_log
    assert f"switch {DPID:#x} connected" in log.read_text()

    def syn_rules(source_port: int) -> list[str]:
        connect = (
            "import socket; s = socket.socket(); s.settimeout(1); "
            f"s.bind(('{CLIENT}', {source_port})); s.connect_ex(('{VIP}', 80))"
        )
        sh(sys.executable, "-c", connect, ns=gateway["client"])

        def flow_rule():
            return [
                line
                for line in ovs.ofctl("dump-flows", bridge).splitlines()
                if "priority=200" in line and f"tp_src={source_port}" in line
            ]

        return waited(ovs, log, flow_rule, 10, "the per-flow rule")

    source_port = 40123
    rules = syn_rules(source_port)
    lookup = subprocess.run(
        [
            sys.executable,
            "-m",
            "ryu_app.cli",
            "lookup",
            "--config",
            str(gateway["config"]),
            "--vip",
            "web",
        ],
        input=f"{CLIENT},{source_port},{VIP},80,tcp\n",
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    tunnel_ip, mac = BACKENDS[lookup.stdout.strip().rsplit(",", 1)[1]]
    assert len(rules) == 1, rules
    assert f"set_field:{tunnel_ip}->tun_dst" in rules[0], rules
    assert f"set_field:{mac}->eth_dst" in rules[0], rules

    # The REST API answers under Ryu's eventlet hub, and the event loop goes on afterwards.
    base = f"http://127.0.0.1:{gateway['rest_port']}"
    with urllib.request.urlopen(base + "/v1/status", timeout=10) as response:
        assert json.load(response)["switch_connected"] is True
    drain = urllib.request.Request(
        base + "/v1/vips/web/backends/vm2",
        data=b'{"weight": 0}',
        method="PATCH",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(drain, timeout=10) as response:
        assert response.status == 200
    assert f"set_field:{BACKENDS['vm1'][0]}->tun_dst" in syn_rules(40124)[0]  # vm2 drained
    # The state file: the drain, and the backend ids (saved off the hub, through its tpool).
    saved = json.loads(gateway["state_file"].read_text())
    assert saved["version"] == 2 and saved["vips"][0]["backends"][1]["weight"] == 0
    assert sorted(saved["backend_ids"]["web"]) == sorted(BACKENDS), saved

    text = log.read_text()
    # Ryu's own app manager loaded the app and its OpenFlow handler: it really ran under Ryu.
    assert "ryu.base.app_manager: loading app ryu_app.shell.app" in text, text
    assert "instantiating app ryu.controller.ofp_handler" in text, text
    assert "os_ken" not in text, text
    assert "Traceback" not in text, text


def rest(base: str, method: str, path: str, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        base + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.load(response)


def test_switch_mode_under_ryu_places_syns_as_lookup_says_and_reads_the_switch(gateway):
    """Switch mode's own bytes (slot rules with ``learn`` and ``tcp_flags``) and its raw
    flow-stats reads work under Ryu 4.34 as under os-ken: the VIP switched over REST, the slot
    rules go in, a traced SYN leaves with the tunnel destination ``lockstep lookup`` names,
    and the controller's reads of the switch's pins come back."""
    ovs, bridge, log = gateway["ovs"], gateway["bridge"], gateway["log"]
    base = f"http://127.0.0.1:{gateway['rest_port']}"
    waited(ovs, log, lambda: "priority=100" in ovs.ofctl("dump-flows", bridge), 20, "pipeline")
    _status, vip = rest(base, "GET", "/v1/vips/web")
    switched = {**vip, "placement": "port-bits", "table_size": 256, "mode": "switch"}
    status, answer = rest(base, "PUT", "/v1/vips/web", switched)
    assert status in (200, 202), answer

    def slot_rules():
        flows = ovs.ofctl("dump-flows", bridge).splitlines()
        return [line for line in flows if re.search(r"priority=(210|190),", line)]

    waited(ovs, log, lambda: len(slot_rules()) == 512, 20, "512 slot rules")
    uplink = ovs.ofctl("show", bridge)
    port = re.search(rf"(\d+)\({re.escape(gateway['uplink'])}\)", uplink).group(1)
    for source_port in (40200, 40202, 40777):
        flow = (
            f"in_port={port},tcp,nw_src={CLIENT},nw_dst={VIP},tp_src={source_port},"
            "tp_dst=80,tcp_flags=0x002"
        )
        trace = sh("ovs-appctl", "ofproto/trace", bridge, flow, env=ovs.env)
        _status, lookup = rest(
            base,
            "GET",
            f"/v1/lookup?src_ip={CLIENT}&src_port={source_port}&dst_ip={VIP}&dst_port=80",
        )
        assert lookup["source"] == "slot", lookup
        tunnel_ip = BACKENDS[lookup["backend"]][0]
        assert re.findall(r"set_field:([\d.]+)->tun_dst", trace)[-1] == tunnel_ip, trace

    def pins_read():
        with urllib.request.urlopen(base + "/metrics", timeout=10) as response:
            text = response.read().decode()
        found = re.search(r"^lockstep_switch_pins_age_seconds (\S+)$", text, re.M)
        return found is not None and float(found.group(1)) >= 0  # -1: no read answered yet

    waited(ovs, log, pins_read, 10, "a read of the switch's pins answered")
    assert "Traceback" not in log.read_text()
