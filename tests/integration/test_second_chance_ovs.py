"""Second chance on a real Open vSwitch (issue 16, item 3): the double change -- a backend change,
then an ECMP move -- on real TCP through two gateways, each with its own controller.

A slow download runs through gateway A on a VM; the operator changes the backend set on both
gateways over REST (a drain: weight 0; or a VM added); about a second later the router moves
the flow to gateway B, which never saw it and whose table now places the flow's slot on another
VM.  With ``second_chance: duplicate`` B sends the flow's segments to the new owner and to the
slot's earlier owner: the VM that holds the connection carries the download to its last byte,
the other drops the segments silently (the VM rule below), and B's ``/metrics`` counts the
duplication.  With ``second_chance: previous`` (no VM rule) B sends them to the earlier owner
alone, which completes the download too.  With ``second_chance: off`` (and VMs without the
rule) the same move ends the download with a reset: the other VM answers RST.
"""

from __future__ import annotations

import ipaddress
import json
import re
import signal
import subprocess
import sys
import time

import pytest

from lab.vmrule import VM_DROP_RULE
from ryu_app.core.model import (
    SECOND_CHANCE_DUPLICATE,
    SECOND_CHANCE_MODES,
    SECOND_CHANCE_OFF,
    SECOND_CHANCE_PREVIOUS,
)
from tests.integration import topo as topology
from tests.integration.pairhelpers import (
    finish,
    lookup,
    pin,
    serving_vms,
    set_vip,
    set_weight,
    vm_named,
)
from tests.integration.topo import BIN, CLIENT, VIP, VIP_PORT

CHUNK = 16384
PAUSE = 0.004  # at most 16 KiB per 4 ms read by the client: ~4 MB/s
SIZE = 12_000_000  # >= 3 s in flight: the change, a second, the move, and the rest
SETTLE = 1.0  # between the backend change and the ECMP move, as in the trial

# The one-line VM configuration ``duplicate`` needs (docs/deployment.md): a TCP segment without
# SYN of a connection this VM's conntrack does not know (state new: picked up mid-stream; or
# invalid) is dropped silently instead of answered with RST.  It must be in place before the
# VM's connections start: conntrack tracks a connection from its SYN.  The counter lets the
# test see the VM drop the duplicated segments.
DROP_RULE = VM_DROP_RULE  # (lab/vmrule.py: the guide's rule, one copy)


def has_drop_rule(vm) -> bool:
    return "lockstep" in topology.sh("nft", "list", "tables", ns=vm.ns)


def dropped(vm) -> int:
    """Segments the VM's rule dropped so far."""
    listed = topology.sh("nft", "list", "table", "inet", "lockstep", ns=vm.ns)
    return int(re.search(r"counter packets (\d+)", listed).group(1))


def set_drop_rule(lab, wanted: bool) -> None:
    """Every VM with the rule (``wanted``) or without it.  A VM given the rule restarts its
    server after, so that no connection of it predates its conntrack."""
    changed = False
    for vm in lab.vms:
        if has_drop_rule(vm) == wanted:
            continue
        changed = True
        if not wanted:
            topology.sh("nft", "delete", "table", "inet", "lockstep", ns=vm.ns)
            continue
        lab.lab.kill(vm.server)
        topology.sh("nft", DROP_RULE, ns=vm.ns)
        vm.server = lab.lab.spawn([sys.executable, "-c", topology.VM_SERVER, vm.name], ns=vm.ns)
    if changed:
        lab.wait_all_healthy()


def flow_tunnels(lab, gateway, sport: int) -> list[str] | None:
    """The VM tunnel addresses the gateway's per-flow rule for the client's ``sport`` sends
    to, in its actions' order (the current owner first); None if there is no such rule."""
    rule = pin(lab, gateway, sport)
    if rule is None:
        return None
    return [
        address or str(ipaddress.IPv4Address(int(loaded, 16)))
        for address, loaded in re.findall(
            r"set_field:([\d.]+)->tun_dst|load:(0x[0-9a-f]+)->NXM_NX_TUN_IPV4_DST\[\]", rule.line
        )
    ]


def flow_packets(lab, gateway, sport: int) -> int:
    rule = pin(lab, gateway, sport)
    return rule.packets if rule else 0


def predicted_by_the_file(lab, sports: range) -> dict[int, str]:
    """What ``lockstep lookup`` says for each source port from the deployment file (all three
    VMs, weight 1): the placement once the third VM is added."""
    rows = "".join(f"{CLIENT},{sport},{VIP},{VIP_PORT},tcp\n" for sport in sports)
    argv = [str(BIN / "lockstep"), "lookup", "--config", str(lab.config), "--vip", "web"]
    out = subprocess.run(argv, input=rows, capture_output=True, text=True, check=True).stdout
    return {int(line.split(",")[1]): line.rsplit(",", 1)[1] for line in out.splitlines()}


def backend_body(vm) -> dict:
    return {"name": vm.name, "tunnel_ip": vm.tunnel_ip, "mac": vm.mac}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with topology.running(tmp_path_factory.mktemp("lab"), gateways=2, vms=3) as built:
        yield built


def start_on_a(lab, sport: int, vm):
    """The download from ``sport`` through gateway A alone, placed on ``vm`` by A's rule."""
    a = lab.gateways[0]
    lab.route_vip(a)
    download = lab.start_download(SIZE, pause=PAUSE, chunk=CHUNK, source_port=sport)
    topology.wait_for(lambda: flow_tunnels(lab, a, sport), 5, "the flow's rule on A")
    assert flow_tunnels(lab, a, sport) == [vm.tunnel_ip]
    return download


def move_to_b(lab, sport: int, download) -> list[str]:
    """ECMP moves the flow to gateway B: the tunnels B's rule for it sends to."""
    b = lab.gateways[1]
    assert download.poll() is None, "finished before the move: the test proves nothing"
    lab.route_vip(b)
    topology.wait_for(lambda: flow_packets(lab, b, sport) > 0, 5, "B to carry the flow")
    return flow_tunnels(lab, b, sport)


def sent_totals(lab, gateway) -> dict[str, float]:
    """B's ``lockstep_second_chance_total`` by kind (previous, duplicate)."""
    status, text = lab.api(gateway, "GET", "/metrics")
    assert status == 200, text
    found = re.findall(r'^lockstep_second_chance_total\{kind="(\w+)"\} (\S+)$', text, re.M)
    assert {kind for kind, _ in found} == {"previous", "duplicate"}, text[:2000]
    return {kind: float(value) for kind, value in found}


def expected_tunnels(mode: str, tunnels: list[str], current, held) -> bool:
    """What B's rule for the moved flow sends to: the slot's current owner (off), the VM that
    holds the connection (previous), or the current owner first and then the earlier owners,
    the holder among them (duplicate; at most two earlier owners)."""
    if mode == SECOND_CHANCE_OFF:
        return tunnels == [current.tunnel_ip]
    if mode == SECOND_CHANCE_PREVIOUS:
        return tunnels == [held.tunnel_ip]
    return tunnels[0] == current.tunnel_ip and held.tunnel_ip in tunnels[1:] and len(tunnels) <= 3


def double_change(lab, mode: str, sport: int, held, change, moved_to: set[str]) -> None:
    """The download from ``sport`` runs through A on ``held``; ``change(gateway)`` on both
    gateways moves its slot (on B) to one of ``moved_to``; ``SETTLE`` later ECMP moves it to
    B.  ``off``: the download is reset; otherwise it completes byte-exact on ``held`` alone
    (with ``duplicate`` the current owner drops its copies silently)."""
    a, b = lab.gateways
    sent = sent_totals(lab, b)
    try:
        download = start_on_a(lab, sport, held)
        changed = time.monotonic()
        for gateway in (a, b):
            change(gateway)
        moved = moved_to - {held.name}  # the slot changed owner (once B's table is in: a
        # write may answer 202 before it is, on a busy machine)
        topology.wait_for(lambda: lookup(lab, b, sport)["backend"] in moved, 5, "B's table")
        current = vm_named(lab, lookup(lab, b, sport)["backend"])
        dropped_before = dropped(current) if mode == SECOND_CHANCE_DUPLICATE else 0
        time.sleep(max(0.0, SETTLE - (time.monotonic() - changed)))
        tunnels = move_to_b(lab, sport, download)
        assert expected_tunnels(mode, tunnels, current, held), (mode, tunnels)
        if mode == SECOND_CHANCE_OFF:
            out, err = download.communicate(timeout=30)
            assert download.returncode != 0, f"completed with second chance off: {out}"
            assert "ConnectionResetError" in err, err
        else:
            assert download.poll() is None, "finished at the move: the test proves nothing"
            assert serving_vms(lab, sport) == [held.name]
            finish(download, SIZE)
            elapsed = time.monotonic() - changed
            copies = dropped(current) - dropped_before if mode == SECOND_CHANCE_DUPLICATE else 0
            print(f"{mode}: B sends to {tunnels}, done {elapsed:.1f} s on; {copies} dropped")
            if mode == SECOND_CHANCE_DUPLICATE:
                assert copies > 10, "the current owner saw no duplicated segment"
    finally:
        lab.route_vip(a, b)
    now = sent_totals(lab, b)
    grew = {kind for kind in sent if now[kind] > sent[kind]}
    assert grew == ({mode} - {SECOND_CHANCE_OFF}), (sent, now)


FIRST_PORT = {SECOND_CHANCE_DUPLICATE: 0, SECOND_CHANCE_PREVIOUS: 1000, SECOND_CHANCE_OFF: 2000}


@pytest.mark.parametrize("mode", SECOND_CHANCE_MODES)
def test_a_drained_vms_download_survives_an_ecmp_move_with_second_chance(lab, mode):
    """Drain + move: weight 0 for the download's VM on both gateways, a second later the move.
    B places the flow's slot on another VM; second chance also (duplicate) or instead
    (previous) sends it to the drained VM, which still holds the connection."""
    a, b = lab.gateways
    set_drop_rule(lab, mode == SECOND_CHANCE_DUPLICATE)
    for gateway in (a, b):
        set_vip(lab, gateway, second_chance=mode)
    sport = 51000 + FIRST_PORT[mode]
    drained = vm_named(lab, lookup(lab, a, sport)["backend"])
    assert lookup(lab, b, sport)["backend"] == drained.name
    try:
        double_change(
            lab,
            mode,
            sport,
            drained,
            lambda gateway: set_weight(lab, gateway, drained.name, 0),
            {vm.name for vm in lab.vms},
        )
    finally:
        for gateway in (a, b):
            set_weight(lab, gateway, drained.name, 1)


def set_backend_present(lab, gateway, vm, present: bool) -> None:
    """Add ``vm`` to the VIP on ``gateway`` or remove it, over REST (as a user would)."""
    status, body = lab.api(gateway, "GET", "/v1/vips/web")
    assert status == 200, body
    if (vm.name in {backend["name"] for backend in body["backends"]}) == present:
        return
    if present:
        status, body = lab.api(gateway, "POST", "/v1/vips/web/backends", backend_body(vm))
        assert status in (201, 202), body
    else:
        status, body = lab.api(gateway, "DELETE", f"/v1/vips/web/backends/{vm.name}")
        assert status == 204, body


@pytest.mark.parametrize("mode", SECOND_CHANCE_MODES)
def test_a_download_survives_a_vm_added_then_an_ecmp_move_with_second_chance(lab, mode):
    """Add + move: the VIP serves two VMs, a download runs on one; a third VM is added on both
    gateways and takes the download's slot (``lockstep lookup`` on the deployment file, which
    names all three, chooses the port); a second later the move: B's table names the new VM."""
    a, b = lab.gateways
    added = lab.vms[2]
    set_drop_rule(lab, mode == SECOND_CHANCE_DUPLICATE)
    for gateway in (a, b):
        set_vip(lab, gateway, second_chance=mode)
        set_backend_present(lab, gateway, added, False)
    first = 55000 + FIRST_PORT[mode]
    later = predicted_by_the_file(lab, range(first, first + 200))
    sport = next(port for port, vm in sorted(later.items()) if vm == added.name)
    owner = vm_named(lab, lookup(lab, a, sport)["backend"])
    assert lookup(lab, b, sport)["backend"] == owner.name
    try:
        double_change(
            lab,
            mode,
            sport,
            owner,
            lambda gateway: set_backend_present(lab, gateway, added, True),
            {added.name},
        )
    finally:
        for gateway in (a, b):
            set_backend_present(lab, gateway, added, True)


def saved_history_names(path) -> list[list[str]]:
    """The backends (weight > 0) of each table the gateway's state file keeps for ``web``."""
    data = json.loads(path.read_text(encoding="utf-8"))
    entries = data.get("second_chance_history", {}).get("web", [])
    return [[name for name, _ in entry["backends"]] for entry in entries]


def test_a_drained_vms_download_survives_a_restart_of_b_then_the_move(lab):
    """Drain, then B's controller is killed and started again (its state file keeps second
    chance's history), then the move: the restarted B still sends the moved connection to the
    drained VM too, and the download completes byte-exact."""
    a, b = lab.gateways
    set_drop_rule(lab, True)
    for gateway in (a, b):
        set_vip(lab, gateway, second_chance=SECOND_CHANCE_DUPLICATE)
    sport = 51500
    drained = vm_named(lab, lookup(lab, a, sport)["backend"])
    state = lab.workdir / f"{b.name}.state.json"
    size = 40_000_000  # ~10 s: the drain, the save, the restart (~3 s), the move, the rest
    lab.route_vip(a)
    try:
        download = lab.start_download(size, pause=PAUSE, chunk=CHUNK, source_port=sport)
        topology.wait_for(lambda: flow_tunnels(lab, a, sport), 5, "the flow's rule on A")
        for gateway in (a, b):
            set_weight(lab, gateway, drained.name, 0)
        moved = {vm.name for vm in lab.vms} - {drained.name}
        topology.wait_for(lambda: lookup(lab, b, sport)["backend"] in moved, 5, "B's table")
        topology.wait_for(
            lambda: any(drained.name in names for names in saved_history_names(state)),
            5,
            "B's state file to keep the table from before the drain",
        )
        lab.lab.kill(b.process, signal.SIGKILL)
        lab.start_controller(b)
        topology.wait_for(
            lambda: lab.api(b, "GET", "/v1/status")[1]["switch_connected"], 15, "B to reconnect"
        )
        tunnels = move_to_b(lab, sport, download)
        assert tunnels[0] != drained.tunnel_ip and drained.tunnel_ip in tunnels[1:], tunnels
        finish(download, size)
    finally:
        lab.route_vip(a, b)
        for gateway in (a, b):
            set_weight(lab, gateway, drained.name, 1)
