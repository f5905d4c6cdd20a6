"""docs/deployment.md, run: every code block marked ``tested`` is executed, loaded or compared.

The guide's convention: a fenced block whose info string is ``LANG tested NAME`` belongs to this
test; plain blocks cannot run here.  ``sh`` blocks run with ``bash -euo pipefail`` (in the root
namespace with a private Open vSwitch's environment, or in the namespace standing for a VM or
the router), ``yaml`` is the deployment file, ``ini`` the systemd unit whose ``ExecStart`` starts
the controllers, ``text`` blocks are outputs compared with what the commands print.

What must differ here is substituted, block by block, from the two tables below and nowhere
else; every row must match its block (a stale row fails).  The outcome is then checked against
the guide's own deployment file: the bridges carry its datapath ids, ports and controller
addresses, the VMs its tunnel addresses and MACs, and real HTTP connections from a client
namespace reach the VIP through the router, both gateways and the VXLAN tunnels, served by the
VM ``lockstep lookup`` predicts.  Everything is removed again in ``finally`` (namespaces, links,
bridges by name, processes by PID, the private OVS by ``PrivateOVS.stop``).
"""

from __future__ import annotations

import configparser
import contextlib
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from lab.ovs import PrivateOVS, free_port, listening, sh, wait_for
from lab.vmrule import VM_DROP_COMMAND
from tests.integration.netlab import Lab
from tests.integration.topo import MANY_CLIENT, VM_SERVER

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "deployment.md"
BIN = Path(sys.executable).parent  # the project's virtualenv: lockstep, lockstep-gateway

# ---- what differs here ---------------------------------------------------------------------
# Shell and unit blocks: (block, instance or None for every instance, the guide's text, the
# test's text, why).  Placeholders: {p} the run's interface prefix, {opt} {etc} {state} {src}
# temporary folders, {bin} the project's virtualenv, {of1} {of2} {rest1} {rest2} free ports.
SUBSTITUTIONS = [
    ("install", None, "/opt/lockstep/src", "{src}", "a copy of this checkout"),
    ("install", None, "/opt/lockstep", "{opt}", "not the machine's /opt"),
    ("token", None, "/etc/lockstep", "{etc}", "not the machine's /etc"),
    ("check", None, "/etc/lockstep", "{etc}", "not the machine's /etc"),
    ("unit", None, "/opt/lockstep/.venv/bin", "{bin}", "the project's own virtualenv"),
    ("unit", None, "/etc/lockstep", "{etc}", "not the machine's /etc"),
    ("unit", None, "/var/lib/lockstep", "{state}", "what StateDirectory= provides"),
    ("unit", "gw1", "%i", "gw1", "systemd's instance name"),
    ("unit", "gw2", "%i", "gw2", "systemd's instance name"),
    ("unit", "gw1", "%d", "{etc}", "systemd's credentials folder: the token's"),
    ("unit", "gw2", "%d", "{etc}", "systemd's credentials folder: the token's"),
    ("gateway-host", None, "eth2", "{p}ul", "userspace datapath: tunnel_ip on an OVS bridge"),
    ("gateway-host", "gw1", "eth1", "{p}g1u", "both gateways on one machine"),
    ("gateway-host", "gw2", "eth1", "{p}g2u", "both gateways on one machine"),
    ("gateway-host", "gw2", "10.20.0.1", "10.20.0.2", "gw2's values, as the guide says"),
    ("gateway-bridge", None, "datapath_type=system", "datapath_type=netdev", "no kernel module"),
    ("gateway-bridge", "gw1", "br-lockstep", "{p}b1", "both gateways in one OVS"),
    ("gateway-bridge", "gw2", "br-lockstep", "{p}b2", "both gateways in one OVS"),
    ("gateway-bridge", "gw1", "eth1", "{p}g1u", "both gateways in one OVS"),
    ("gateway-bridge", "gw2", "eth1", "{p}g2u", "both gateways in one OVS"),
    ("gateway-bridge", "gw1", "vxlan0", "{p}g1t", "both gateways in one OVS"),
    ("gateway-bridge", "gw2", "vxlan0", "{p}g2t", "both gateways in one OVS"),
    ("gateway-bridge", "gw1", "127.0.0.1:6653", "127.0.0.1:{of1}", "a free port"),
    ("gateway-bridge", "gw2", "127.0.0.1:6653", "127.0.0.1:{of2}", "gw2's, on a free port"),
    ("gateway-bridge", "gw2", "0000000000000001", "0000000000000002", "gw2's values"),
    ("gateway-bridge", "gw2", "10.20.0.1", "10.20.0.2", "gw2's values"),
    ("gateway-verify", "gw1", "br-lockstep", "{p}b1", "both gateways in one OVS"),
    ("gateway-verify", "gw2", "br-lockstep", "{p}b2", "both gateways in one OVS"),
    ("vm", "vm2", "10.20.0.11", "10.20.0.12", "vm2's values, as the guide says"),
    ("vm", "vm2", "02:00:00:00:01:01", "02:00:00:00:01:02", "vm2's values"),
    ("status", None, "/etc/lockstep", "{etc}", "not the machine's /etc"),
    ("drain", None, "/etc/lockstep", "{etc}", "not the machine's /etc"),
    ("undrain", None, "/etc/lockstep", "{etc}", "not the machine's /etc"),
]
# The deployment file: (gateway, key, the guide's value, the test's value).
FILE_SUBSTITUTIONS = [
    ("gw1", "uplink_port", "eth1", "{p}g1u"),
    ("gw2", "uplink_port", "eth1", "{p}g2u"),
    ("gw1", "tunnel_port", "vxlan0", "{p}g1t"),
    ("gw2", "tunnel_port", "vxlan0", "{p}g2t"),
    ("gw1", "openflow", "127.0.0.1:6653", "127.0.0.1:{of1}"),
    ("gw2", "openflow", "127.0.0.1:6653", "127.0.0.1:{of2}"),
    ("gw1", "rest", "10.10.0.1:8081", "127.0.0.1:{rest1}"),
    ("gw2", "rest", "10.10.0.2:8081", "127.0.0.1:{rest2}"),
]
# Blocks without a row run as written (the router's, the VM's for vm1).  Stand-ins for what a
# real host already has, built by the test itself: the VMs' eth0 addresses, the router's
# interfaces and addresses, a client namespace, the VMs' HTTP service, the underlay bridge.

# Every tested block of the guide and the test that runs it (checked both ways).
EXERCISED = {
    "install": "test_install_block_gives_working_commands",
    "token": "test_the_guide_end_to_end",
    "deployment": "test_the_deployment_file_passes_check",
    "check": "test_the_deployment_file_passes_check",
    "check-output": "test_the_deployment_file_passes_check",
    "unit": "test_the_guide_end_to_end (ExecStart), test_the_unit_passes_systemd_analyze",
    "gateway-host": "test_the_guide_end_to_end",
    "gateway-bridge": "test_the_guide_end_to_end",
    "gateway-verify": "test_the_guide_end_to_end",
    "vm": "test_the_guide_end_to_end",
    "vm-second-chance": "test_the_guide_end_to_end",
    "router": "test_the_guide_end_to_end",
    "router-without-gw1": "test_the_guide_end_to_end",
    "router-both": "test_the_guide_end_to_end",
    "status": "test_the_guide_end_to_end",
    "status-output": "test_the_guide_end_to_end",
    "drain": "test_the_guide_end_to_end",
    "drain-output": "test_the_guide_end_to_end",
    "undrain": "test_the_guide_end_to_end",
}

VIP, VIP_PORT = "203.0.113.10", 80
CLIENT, ROUTER_CLIENT_SIDE = "10.30.0.10", "10.30.0.1"  # the test's client: not in the guide
ROUTER_UPLINK, ROUTER_UNDERLAY = "198.51.100.254", "10.20.0.254"
UNDERLAY = "10.20.0.0/24"
UNDERLAY_MTU = "1600"


# ---- the guide -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    lang: str
    name: str
    text: str


def guide_blocks() -> dict[str, Block]:
    blocks: dict[str, Block] = {}
    fence = re.compile(r"^```(\S+) tested (\S+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
    for match in fence.finditer(GUIDE.read_text(encoding="utf-8")):
        lang, name, text = match.groups()
        assert name not in blocks, f"two tested blocks named {name!r}"
        blocks[name] = Block(lang, name, text)
    return blocks


def substituted(block: Block, instance: str | None, values: dict[str, str]) -> str:
    """The block's text with its rows of SUBSTITUTIONS applied (each must match)."""
    text = block.text
    for name, only, old, new, _why in SUBSTITUTIONS:
        if name != block.name or only not in (None, instance):
            continue
        pattern = re.compile(rf"(?<![\w]){re.escape(old)}(?![\w])")
        text, count = pattern.subn(lambda _m, new=new: new.format(**values), text)
        assert count, f"block {block.name!r} no longer contains {old!r}: update the table"
    return text


def deployment_data(blocks: dict[str, Block], values: dict[str, str] | None) -> dict:
    """The guide's deployment file, with FILE_SUBSTITUTIONS applied when ``values`` is given."""
    data = yaml.safe_load(blocks["deployment"].text)
    if values is not None:
        gateways = {g["name"]: g for g in data["gateways"]}
        for gateway, key, old, new in FILE_SUBSTITUTIONS:
            assert gateways[gateway][key] == old, f"{gateway}.{key} is no longer {old!r}"
            gateways[gateway][key] = new.format(**values)
    return data


def run_block(text: str, ns: str | None = None, env=None, timeout: float = 120) -> str:
    """``bash -euo pipefail`` on the block; its stdout, or an assertion naming the failure."""
    argv = (["ip", "netns", "exec", ns] if ns else []) + ["bash", "-euo", "pipefail", "-c", text]
    result = subprocess.run(
        argv, capture_output=True, text=True, env=env, timeout=timeout, check=False
    )
    assert result.returncode == 0, (
        f"guide block failed ({result.returncode}) in {ns or 'the root namespace'}:\n{text}\n"
        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    return result.stdout


def normalised(text: str) -> list[str]:
    return [" ".join(line.split()) for line in text.strip().splitlines()]


def block_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(extra or os.environ)
    env.pop("LOCKSTEP_TOKEN", None)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


# ---- tests without a network ---------------------------------------------------------------


def test_every_tested_block_is_exercised():
    names = set(guide_blocks())
    assert names == set(EXERCISED), (
        f"tested blocks nobody runs: {sorted(names - set(EXERCISED))}; "
        f"gone from the guide: {sorted(set(EXERCISED) - names)}"
    )
    first = GUIDE.read_text(encoding="utf-8").split("\n\n", 2)[1]
    assert "`tested`" in first and "tests/docs/test_deployment_guide.py" in first, first


def test_the_deployment_file_passes_check(tmp_path):
    blocks = guide_blocks()
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "deployment.yaml").write_text(blocks["deployment"].text, encoding="utf-8")
    command = substituted(blocks["check"], None, {"etc": str(etc)})
    out = run_block(command, env=block_env())
    assert normalised(out.replace(str(etc), "/etc/lockstep")) == normalised(
        blocks["check-output"].text
    )


def test_the_unit_passes_systemd_analyze(tmp_path):
    block = guide_blocks()["unit"]
    unit = block.text.replace("/opt/lockstep/.venv/bin", str(BIN))  # must be executable
    path = tmp_path / "lockstep-gateway@gw1.service"
    path.write_text(unit, encoding="utf-8")
    result = subprocess.run(
        ["systemd-analyze", "verify", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_install_block_gives_working_commands(tmp_path):
    """The install block for real: a fresh virtualenv, Lockstep from a copy of this checkout
    (dependencies from the package index, as a user gets them)."""
    blocks = guide_blocks()
    src, opt = tmp_path / "src", tmp_path / "opt"
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(
            ".git",
            ".venv*",
            "__pycache__",
            "*.egg-info",
            ".pytest_cache",
            ".ruff_cache",
            ".hypothesis",
            "build",
            "out",
            "demo-out",
        ),
    )
    run_block(substituted(blocks["install"], None, {"src": str(src), "opt": str(opt)}), timeout=600)
    deployment = tmp_path / "deployment.yaml"
    deployment.write_text(blocks["deployment"].text, encoding="utf-8")
    installed = opt / ".venv" / "bin"
    check = subprocess.run(
        [str(installed / "lockstep"), "check", str(deployment)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0 and check.stdout.startswith("OK:"), check.stderr
    helped = subprocess.run(
        [str(installed / "lockstep-gateway"), "--help"], capture_output=True, text=True, check=False
    )
    assert helped.returncode == 0 and "--state-file" in helped.stdout, helped.stderr
    where = subprocess.run(
        [str(installed / "python"), "-c", "import ryu_app; print(ryu_app.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    assert str(opt) in where.stdout, where.stdout  # installed, not this checkout


# ---- the whole deployment on a private OVS -------------------------------------------------


def bridge_opened(ovs: PrivateOVS, bridge: str) -> bool:
    """All userspace bridges of a machine share the datapath tap 'ovs-netdev': while another
    OVS holds it, ours cannot open; poke ovs-vswitchd to try again rather than fight."""
    if sh("ovs-ofctl", "-O", "OpenFlow13", "show", bridge, check=False, env=ovs.env):
        return True
    ovs.vsctl("set", "bridge", bridge, f"external-ids:retry={time.monotonic()}")
    return False


def api(port: str, method: str, path: str, body=None) -> tuple[int, object]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    request.add_header("Content-Type", "application/json")  # writes take JSON only
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def connect(client_ns: str, first_port: int, count: int) -> dict[int, str]:
    """``count`` HTTP connections to the VIP from consecutive source ports: port -> VM name."""
    out = sh(
        "ip",
        "netns",
        "exec",
        client_ns,
        sys.executable,
        "-c",
        MANY_CLIENT,
        "http",
        str(first_port),
        str(count),
        CLIENT,
        VIP,
    )
    return {int(port): who for port, who in (line.split(" ", 1) for line in out.splitlines())}


def flow_rule_ports(ovs: PrivateOVS, bridge: str) -> set[int]:
    """Source ports of the per-flow rules (priority 200) on a gateway bridge."""
    flows = ovs.ofctl("dump-flows", bridge)
    return {
        int(m.group(1))
        for line in flows.splitlines()
        if "priority=200" in line
        for m in [re.search(r"tp_src=(\d+)", line)]
        if m
    }


def test_the_guide_end_to_end(tmp_path):
    started = time.monotonic()
    blocks = guide_blocks()
    prefix = f"d{os.getpid() % 10000:04d}"
    values = {
        "p": prefix,
        "etc": str(tmp_path / "etc"),
        "state": str(tmp_path / "state"),
        "bin": str(BIN),
        "of1": str(free_port()),
        "of2": str(free_port()),
        "rest1": str(free_port()),
        "rest2": str(free_port()),
    }
    guide_file = deployment_data(blocks, None)
    data = deployment_data(blocks, values)
    gateways = {g["name"]: g for g in data["gateways"]}
    (vip,) = data["vips"]
    assert (vip["address"], vip["port"]) == (VIP, VIP_PORT)
    backends = {b["name"]: b for b in vip["backends"]}
    busy = sh("ip", "-o", "-4", "addr", "show", "to", UNDERLAY).strip()
    assert not busy, f"{UNDERLAY} is in use in the root namespace (another run?): {busy}"

    lab = Lab(prefix)
    ovs = PrivateOVS(tmp_path / "ovs")
    bridges = [f"{prefix}ul", f"{prefix}b1", f"{prefix}b2"]
    env = block_env(ovs.env)
    try:
        ovs.start()
        # -- stand-ins: the underlay (an OVS bridge: the userspace datapath sends tunnel packets
        # only through its own bridges), the client, the router's interfaces, the VMs' eth0.
        ul = bridges[0]
        ovs.vsctl("add-br", ul, "--", "set", "bridge", ul, "datapath_type=netdev")
        lab.root_links.append(ul)
        wait_for(lambda: bridge_opened(ovs, ul), 180, f"bridge {ul} (ovs-netdev held elsewhere?)")
        client, router = lab.netns("c"), lab.netns("r")
        vm_ns = {name: lab.netns(f"v{i}") for i, name in enumerate(backends, start=1)}
        for ns in (router, *vm_ns.values()):  # strict, as some distributions ship it
            for scope in ("all", "default"):
                sh("sysctl", "-qw", f"net.ipv4.conf.{scope}.rp_filter=1", ns=ns)
        lab.veth(lab.name("ce"), lab.name("rc"), client, router)
        sh("ip", "addr", "add", f"{CLIENT}/24", "dev", lab.name("ce"), ns=client)
        sh("ip", "route", "add", "default", "via", ROUTER_CLIENT_SIDE, ns=client)
        sh("ip", "addr", "add", f"{ROUTER_CLIENT_SIDE}/24", "dev", lab.name("rc"), ns=router)
        lab.veth(lab.name("ru"), lab.name("uru"), router, None)
        ovs.vsctl("add-port", ul, lab.name("uru"))
        sh("ip", "addr", "add", f"{ROUTER_UNDERLAY}/24", "dev", lab.name("ru"), ns=router)
        segment = lab.name("rb")  # the gateways' segment: a Linux bridge in the router
        sh("ip", "link", "add", segment, "type", "bridge", ns=router)
        sh("ip", "link", "set", segment, "up", ns=router)
        sh("ip", "addr", "add", f"{ROUTER_UPLINK}/24", "dev", segment, ns=router)
        for i in (1, 2):
            lab.veth(lab.name(f"g{i}u"), lab.name(f"r{i}"), None, router)
            sh("ip", "link", "set", lab.name(f"r{i}"), "master", segment, ns=router)
        for i, (name, ns) in enumerate(vm_ns.items(), start=1):
            eth = lab.name(f"v{i}e")
            lab.veth(eth, lab.name(f"uv{i}"), ns, None)
            ovs.vsctl("add-port", ul, lab.name(f"uv{i}"))
            sh("ip", "addr", "add", f"{backends[name]['tunnel_ip']}/24", "dev", eth, ns=ns)
            sh("ip", "link", "set", eth, "mtu", UNDERLAY_MTU, ns=ns)
            sh("ip", "link", "set", lab.name(f"uv{i}"), "mtu", UNDERLAY_MTU)
            mac = sh("cat", f"/sys/class/net/{eth}/address", ns=ns).strip()
            ovs.appctl("tnl/neigh/set", ul, backends[name]["tunnel_ip"], mac)
            lab.spawn([sys.executable, "-c", VM_SERVER, name], ns=ns)
        sh("ip", "link", "set", lab.name("ru"), "mtu", UNDERLAY_MTU, ns=router)
        sh("ip", "link", "set", lab.name("uru"), "mtu", UNDERLAY_MTU)

        # -- the guide: token, deployment file, VMs, router
        run_block(substituted(blocks["token"], None, values), env=env)
        token = Path(values["etc"]) / "token"
        assert stat.S_IMODE(token.stat().st_mode) == 0o600, oct(token.stat().st_mode)
        assert len(token.read_text().strip()) == 44  # 32 random bytes, base64
        config = Path(values["etc"]) / "deployment.yaml"
        config.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        Path(values["state"]).mkdir()
        for name, ns in vm_ns.items():
            run_block(substituted(blocks["vm"], name, values), ns=ns, env=env)
            # The second-chance drop rule, before any client connects: the guide's traffic
            # and health probes below pass through it.  The demo and the integration test
            # use the same rule (lab/vmrule.py).
            assert blocks["vm-second-chance"].text.strip() == VM_DROP_COMMAND
            run_block(blocks["vm-second-chance"].text, ns=ns, env=env)
        run_block(substituted(blocks["router"], None, values), ns=router, env=env)

        # -- the controllers, from the unit's ExecStart, before their bridges exist
        processes = {}
        for name, gateway in gateways.items():
            unit = configparser.ConfigParser(interpolation=None, strict=False)
            unit.optionxform = str
            unit.read_string(substituted(blocks["unit"], name, values))
            argv = shlex.split(unit["Service"]["ExecStart"])
            processes[name] = lab.spawn(argv, log=tmp_path / f"{name}.log")
            port = int(gateway["openflow"].rsplit(":", 1)[1])
            wait_for(
                lambda port=port, name=name: listening(port) or processes[name].poll() is not None,
                30,
                f"{name} controller to listen",
            )
            assert processes[name].poll() is None, (tmp_path / f"{name}.log").read_text()

        # -- the gateway hosts and bridges
        for i, name in enumerate(gateways, start=1):
            run_block(substituted(blocks["gateway-host"], name, values), env=env)
            run_block(substituted(blocks["gateway-bridge"], name, values), env=env)
            wait_for(lambda i=i: bridge_opened(ovs, bridges[i]), 60, f"bridge {bridges[i]}")

        def pipeline(bridge: str) -> bool:
            flows = ovs.ofctl("dump-flows", bridge)
            return "priority=100" in flows and "CONTROLLER" in flows

        for i, name in enumerate(gateways, start=1):
            wait_for(lambda i=i: pipeline(bridges[i]), 30, f"{name}'s pipeline")

        # -- what the guide's commands made, against the guide's deployment file
        for i, (name, gateway) in enumerate(gateways.items(), start=1):
            bridge, file_gateway = bridges[i], guide_file["gateways"][i - 1]
            get = ovs.vsctl
            assert get("get", "bridge", bridge, "protocols").strip() == "[OpenFlow13]"
            assert get("get", "bridge", bridge, "fail_mode").strip() == "secure"
            assert get("get", "bridge", bridge, "datapath_type").strip() == "netdev"
            dpid = get("get", "bridge", bridge, "other-config:datapath-id").strip().strip('"')
            assert int(dpid, 16) == file_gateway["dpid"], (name, dpid)
            assert get("get-controller", bridge).strip() == f"tcp:{gateway['openflow']}"
            assert get("get", "controller", bridge, "max_backoff").strip() == "1000"
            assert get("get", "controller", bridge, "connection_mode").strip() == "out-of-band"
            tunnel = gateway["tunnel_port"]
            assert get("get", "interface", tunnel, "type").strip() == "vxlan"
            options = get("get", "interface", tunnel, "options").strip()
            for option in ("key=flow", "remote_ip=flow", f'local_ip="{file_gateway["tunnel_ip"]}"'):
                assert option in options, (name, options)
            shown = ovs.ofctl("show", bridge)
            assert f"({gateway['uplink_port']})" in shown and f"({tunnel})" in shown, shown
            verified = run_block(substituted(blocks["gateway-verify"], name, values), env=env)
            assert f"tcp:{gateway['openflow']}" in verified, verified
            assert "[OpenFlow13]" in verified and "secure" in verified, verified
            assert f"{file_gateway['dpid']:016x}" in verified, verified
            assert "cookie=0x4c53" in verified and "priority=300" in verified, verified
            addresses = sh("ip", "-o", "-4", "addr", "show", "dev", bridges[0])
            assert f"{file_gateway['tunnel_ip']}/24" in addresses, addresses
        for name, ns in vm_ns.items():
            link = sh("ip", "-d", "link", "show", "vx0", ns=ns)
            assert backends[name]["mac"] in link, link
            assert f"vxlan id {vip['vni']} " in link and "dstport 4789" in link, link
            assert f"local {backends[name]['tunnel_ip']} " in link and "nolearning" in link, link
            assert f"{VIP}/32" in sh("ip", "-o", "addr", "show", "dev", "lo", ns=ns)
            assert f"default via {ROUTER_UNDERLAY}" in sh("ip", "route", ns=ns)
            for key, value in (("all.arp_ignore", "1"), ("all.arp_announce", "2")):
                assert sh("sysctl", "-n", f"net.ipv4.conf.{key}", ns=ns).strip() == value, key
        route = sh("ip", "route", "show", f"{VIP}/32", ns=router)
        for file_gateway in guide_file["gateways"]:
            assert f"nexthop via {file_gateway['addresses'][0]} " in route, route

        # -- health probes go through the tunnels and come back by DSR via the router
        def all_probes_ok() -> bool:
            for gateway in gateways.values():
                port = gateway["rest"].rsplit(":", 1)[1]
                _, health = api(port, "GET", "/v1/health")
                rows = health["vips"][vip["name"]]
                if {r["backend"] for r in rows if r.get("last_result") == "ok"} != set(backends):
                    return False
            return True

        try:
            wait_for(all_probes_ok, 30, "every gateway's probes of every VM to succeed")
        except TimeoutError:
            views = [
                api(g["rest"].rsplit(":", 1)[1], "GET", "/v1/health") for g in gateways.values()
            ]
            raise AssertionError(f"probes do not succeed: {views}") from None

        # -- clients' connections: through the router, both gateways, both VMs, as predicted
        served = connect(client, 41000, 24)
        rows = "".join(f"{CLIENT},{port},{VIP},{VIP_PORT},tcp\n" for port in served)
        lookup = subprocess.run(
            [str(BIN / "lockstep"), "lookup", "--config", str(config), "--vip", vip["name"]],
            input=rows,
            capture_output=True,
            text=True,
            check=True,
        )
        predicted = {
            int(line.split(",")[1]): line.rsplit(",", 1)[1] for line in lookup.stdout.splitlines()
        }
        assert served == predicted, (served, predicted)
        assert set(served.values()) == set(backends), served
        carried = [flow_rule_ports(ovs, bridges[i]) & set(served) for i in (1, 2)]
        assert all(carried), f"ECMP sent every connection through one gateway: {carried}"

        # -- do the gateways agree?
        endpoints = {
            f"http://{ours['rest']}": f"http://{theirs['rest']}"
            for ours, theirs in zip(gateways.values(), guide_file["gateways"], strict=True)
        }

        def as_in_guide(text: str) -> list[str]:
            for ours, theirs in endpoints.items():
                text = text.replace(ours, theirs)
            return normalised(text)

        status = run_block(substituted(blocks["status"], None, values), env=env)
        assert as_in_guide(status) == normalised(blocks["status-output"].text), status

        # -- drain vm2 everywhere; writes need the token
        port1 = gateways["gw1"]["rest"].rsplit(":", 1)[1]
        refused = api(port1, "PATCH", "/v1/vips/web/backends/vm2", {"weight": 0})
        assert refused[0] == 401, refused
        drained = run_block(substituted(blocks["drain"], None, values), env=env)
        assert as_in_guide(drained) == normalised(blocks["drain-output"].text), drained
        after = connect(client, 42000, 16)
        assert set(after.values()) == {"vm1"}, after
        run_block(substituted(blocks["status"], None, values), env=env)  # still agree
        run_block(substituted(blocks["undrain"], None, values), env=env)
        for gateway in gateways.values():
            _, vips = api(gateway["rest"].rsplit(":", 1)[1], "GET", "/v1/vips")
            assert {b["name"]: b["weight"] for b in vips["vips"][0]["backends"]} == {
                "vm1": 1,
                "vm2": 1,
            }

        # -- gw1 out of the router's route and back
        run_block(substituted(blocks["router-without-gw1"], None, values), ns=router, env=env)
        route = sh("ip", "route", "show", f"{VIP}/32", ns=router)
        assert "nexthop" not in route and "via 198.51.100.2 " in route, route
        moved = connect(client, 43000, 12)
        assert set(moved.values()) <= set(backends) and moved, moved
        assert not flow_rule_ports(ovs, bridges[1]) & set(moved)
        assert set(moved) <= flow_rule_ports(ovs, bridges[2])
        run_block(substituted(blocks["router-both"], None, values), ns=router, env=env)
        route = sh("ip", "route", "show", f"{VIP}/32", ns=router)
        assert route.count("nexthop via") == 2, route

        for name, process in processes.items():
            log = (tmp_path / f"{name}.log").read_text()
            assert process.poll() is None, log
            assert "Traceback" not in log, log
        print(f"end to end in {time.monotonic() - started:.1f} s")
    finally:
        try:
            # Bridges' taps are persistent: let ovs-vswitchd remove them first.
            if len(ovs.pids) == 2:
                for bridge in reversed(bridges):
                    with contextlib.suppress(RuntimeError):
                        ovs.vsctl("--if-exists", "del-br", bridge)
            lab.root_links.extend(b for b in bridges if b not in lab.root_links)
            lab.close()
        finally:
            ovs.stop()
