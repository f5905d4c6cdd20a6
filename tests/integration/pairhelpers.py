"""What the real-OVS tests of a gateway pair share (``test_switch_mode_pair_ovs``,
``test_second_chance_ovs``): a gateway bridge's rules as ``ovs-ofctl dump-flows`` shows them,
the client's flow's rule (a switch's learned pin or a controller's per-flow rule), the REST
calls that change the VIP ``web`` or read where a flow goes, the VMs that hold a connection, and
a download's check.  A helper module, not a test file: each test file imports what it uses
from here, never from the other."""

from __future__ import annotations

import hashlib
import ipaddress
import re
from typing import NamedTuple

from tests.integration import topo as topology
from tests.integration.topo import CLIENT, VIP, VIP_PORT

PIN_PRIORITY = 200  # a switch's learned pins and a controller's per-flow rules alike


class Rule(NamedTuple):
    """One rule of a gateway's table, as ``ovs-ofctl dump-flows`` shows it."""

    priority: int
    tp_src: int | None  # an exact source port (a pin); None for masked or absent
    tunnel: str | None  # where it sends to: the last ``tun_dst`` it sets (a pin: loads)
    packets: int
    age: float
    line: str


def parse_rule(line: str) -> Rule | None:
    priority = re.search(r"priority=(\d+)", line)
    if not priority:
        return None
    sport = re.search(r"tp_src=(\d+)(?=[,\s])", line)
    tunnels = [
        address or str(ipaddress.IPv4Address(int(loaded, 16)))
        for address, loaded in re.findall(
            r"set_field:([\d.]+)->tun_dst|load:(0x[0-9a-f]+)->NXM_NX_TUN_IPV4_DST\[\]", line
        )
    ]
    return Rule(
        int(priority.group(1)),
        int(sport.group(1)) if sport else None,
        tunnels[-1] if tunnels else None,
        int(re.search(r"n_packets=(\d+)", line).group(1)),
        float(re.search(r"duration=([\d.]+)s", line).group(1)),
        line,
    )


def rules(lab, gateway) -> list[Rule]:
    """The gateway bridge's rules (a rule's own priority is the first on its line: a slot
    rule's ``learn`` names the pins' priority after it)."""
    dump = lab.ovs.ofctl("dump-flows", gateway.bridge).splitlines()
    return [rule for rule in map(parse_rule, dump) if rule is not None]


def pin(lab, gateway, sport: int) -> Rule | None:
    """The client's flow from ``sport``: a switch's learned pin or a controller's rule."""
    found = [
        r
        for r in rules(lab, gateway)
        if r.priority == PIN_PRIORITY and r.tp_src == sport and f"nw_src={CLIENT}," in r.line
    ]
    assert len(found) <= 1, found
    return found[0] if found else None


def lookup(lab, gateway, sport: int) -> dict:
    query = f"src_ip={CLIENT}&src_port={sport}&dst_ip={VIP}&dst_port={VIP_PORT}&proto=tcp"
    status, body = lab.api(gateway, "GET", f"/v1/lookup?{query}")
    assert status == 200, body
    return body


def vm_named(lab, name: str):
    return next(vm for vm in lab.vms if vm.name == name)


def serving_vms(lab, sport: int) -> list[str]:
    """The VMs holding an established connection from the client's ``sport`` (the server
    socket is IPv6 with mapped addresses: ``[::ffff:10.1.0.11]:PORT``)."""
    own = re.compile(rf"{re.escape(CLIENT)}\]?:{sport}\b")
    listed = {
        vm.name: topology.sh("ss", "-Htn", "state", "established", ns=vm.ns) for vm in lab.vms
    }
    return [name for name, text in listed.items() if own.search(text)]


def set_vip(lab, gateway, **fields) -> None:
    status, body = lab.api(gateway, "GET", "/v1/vips/web")
    assert status == 200, body
    status, answer = lab.api(gateway, "PUT", "/v1/vips/web", {**body, **fields})
    assert status in (200, 202), answer


def set_weight(lab, gateway, backend: str, weight: int) -> None:
    path = f"/v1/vips/web/backends/{backend}"
    status, body = lab.api(gateway, "PATCH", path, {"weight": weight})
    assert status in (200, 202), body  # 202: done, its table not in yet (a busy machine)


def digest_of(size: int) -> str:
    block = bytes(range(256)) * 256  # what topo.VM_SERVER sends
    return hashlib.sha256((block * (size // len(block) + 1))[:size]).hexdigest()


def finish(download, size: int) -> None:
    out, err = download.communicate(timeout=60)
    assert download.returncode == 0, err
    assert out.split() == [str(size), digest_of(size)], err
