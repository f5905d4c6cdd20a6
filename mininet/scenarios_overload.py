"""Overload (issue 13): a SYN flood from random sources at the VIP through one gateway, while
downloads run and a legitimate client opens new connections.  The gateways must keep their
health view (no backend flaps: the VMs never failed), the downloads must complete, and all
must recover within 3 s after the flood; the legitimate client's success during the flood is
measured and reported.

The flooder is a third client that the scenario adds for the flood and removes after it, on a
link of its own to the router (as a flood from the Internet arrives at the edge router): on the
clients' LAN, whose bridge is in the same ``ovs-vswitchd`` as the gateways, the bridge read
~3.5k of the 520k SYN/s that ``hping3 --flood`` offered (the rest died in its port's kernel
socket), so the gateway never saw a flood.  The router sends everything from that link, and the
legitimate client's source ports (policy routing, ``ip rule ... sport``), to the flooded gateway
only; the downloads keep the ECMP route.  The spoofed sources' SYN-ACKs die at the router, as in
a real SYN flood.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import subprocess
import time
from typing import NamedTuple

import overload_summary
from overload_watch import Watch
from scenario_result import Counts, Result, finish_downloads
from world import HERE, PYTHON, World

from ryu_app.core.model import MODE_SWITCH

FLOODER = "flooder"  # the flooding host's name
FLOOD_LINK = ipaddress.ip_network("198.18.0.0/30")  # RFC 2544's benchmarking range
DOWNLOADS_FIRST_PORT = 52000  # the downloads' (ECMP, as in the other scenarios)
LEGIT_FIRST_PORT = 53000  # the legitimate client's: pinned to the flooded gateway too
LEGIT_EVERY, LEGIT_TIMEOUT = 0.1, 2.0  # a new connection every 100 ms, 2 s to connect
LEAD_S = 2.0  # seconds of downloads and new connections before the flood
AFTER_S = 6.0  # seconds of new connections after it (recovery is judged within 3 s)
PIN_TABLE, PIN_PREFERENCE = 113, 1130  # the router's table and rule priority for the pinning
HPING = ["hping3", "-q", "-n", "-S", "--rand-source", "--flood"]


def flood(world: World, counts: Counts) -> dict:
    victim, legit = world.routed[0], world.clients[-1]
    if ":" in world.vip.address:
        raise RuntimeError("hping3 floods IPv4 only: the flood scenario needs an IPv4 VIP")
    result = Result(
        "flood",
        f"SYN flood from random sources through {victim.name} ({counts.flood_seconds:g} s),"
        f" during downloads and {legit.name}'s new connections",
    )
    with _flooder(world) as flooder, _pinned(world, victim):
        run = _flood_run(world, counts, result, flooder, victim, legit)
    by_switch = world.mode_of(victim) == MODE_SWITCH
    assessment = overload_summary.assess(
        run.samples, run.connections, run.start, run.end, victim.name, result.transfers, by_switch
    )
    result.checks += assessment.checks
    if by_switch:
        _check_no_spoofed_pins(world, victim, result)
    result.figures.update(assessment.figures)
    result.events += assessment.events
    try:
        world.wait_ready()
    except TimeoutError as error:
        result.check("every backend up again on every gateway afterwards", False, str(error))
    summary = result.as_dict()
    summary["notes"] = assessment.notes
    summary["flood"] = {
        "victim": victim.name,
        "flooder": FLOODER,
        "command": " ".join(HPING),
        "start": round(run.start, 3),
        "end": round(run.end, 3),
        "samples": run.samples,
        "connections": run.connections,
    }
    return summary


def _check_no_spoofed_pins(world: World, victim, result: Result) -> None:
    """Switch mode's promise under a SYN flood: a pin is learned from a flow's first non-SYN
    packet, so the spoofed SYNs (from any address but the clients') left none."""
    clients = {world.client_address(c) for c in world.clients}
    strangers = [e for e in world.flows(victim) if e["src_ip"] not in clients]
    result.figures["spoofed_pins"] = len(strangers)
    result.check(
        f"the spoofed SYNs left no pin in {victim.name}'s switch",
        not strangers,
        f"{len(strangers)} pins from other sources than the clients",
    )


class FloodRun(NamedTuple):
    start: float  # the flood, in seconds since the scenario started
    end: float
    samples: list[dict]  # overload_watch's
    connections: list[dict]  # the legitimate client's


def _flood_run(world: World, counts: Counts, result: Result, flooder, victim, legit) -> FloodRun:
    """Downloads (sized to outlast the flood) and the legitimate client start; ``LEAD_S``
    later the flood, for ``counts.flood_seconds``; then the client goes on for ``AFTER_S``
    and the downloads finish.  The watch samples throughout."""
    seconds = counts.flood_seconds
    sized = dataclasses.replace(
        counts, download_bytes=int(counts.download_rate * (LEAD_S + seconds + 1.5))
    )
    wall_zero = time.time() - (time.monotonic() - result.started)
    watch = Watch(world, flooder, victim, result.started)
    watch.start()
    hping = None
    try:
        transfers = world.start_downloads(sized, result, DOWNLOADS_FIRST_PORT)
        lasts = LEAD_S + seconds + AFTER_S
        client = _start_legit_client(world, legit, int(lasts / LEGIT_EVERY))
        result.event("action", f"{legit.name}: a new connection every {LEGIT_EVERY * 1000:g} ms")
        time.sleep(LEAD_S)
        on_victim = world.flows_from(victim, DOWNLOADS_FIRST_PORT)
        result.check(f"downloads were running through {victim.name}", on_victim > 0, str(on_victim))
        argv = [*HPING, "-p", str(world.vip.port), world.vip.address]
        hping = flooder.popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        world.traffic.append(hping)
        start = time.monotonic() - result.started
        result.event("failure", f"flood on: {flooder.name}: {' '.join(HPING)}", victim.name)
        time.sleep(seconds)
        _end(hping)
        end = time.monotonic() - result.started
        result.event("action", "flood off", victim.name)
        connections = _legit_connections(client, wall_zero, lasts)
        finish_downloads(result, transfers, counts.downloads)
    finally:
        if hping is not None:
            _end(hping)
        samples = watch.stop()
    return FloodRun(start, end, samples, connections)


@contextlib.contextmanager
def _flooder(world: World):
    """A host of its own on a link of its own to the router (addresses from ``FLOOD_LINK``,
    the VIP routed over it), for as long as the ``with`` lasts."""
    taken = _deployment_networks(world)
    if any(FLOOD_LINK.overlaps(network) for network in taken):
        raise RuntimeError(f"the flooder's link {FLOOD_LINK} overlaps the deployment's addresses")
    router_side, flooder_side = (f"{a}/{FLOOD_LINK.prefixlen}" for a in FLOOD_LINK.hosts())
    host = world.net.addHost(FLOODER)
    try:
        link = world.net.addLink(
            host, world.router, intfName1=f"{FLOODER}-eth0",
            intfName2=f"{world.router.name}-{FLOODER}",
            params1={"ip": flooder_side}, params2={"ip": router_side},
        )  # fmt: skip
        try:
            host.cmd("ip", "route", "add", f"{world.vip.address}/32", "via",
                     router_side.split("/")[0])  # fmt: skip
            yield host
        finally:
            world.net.delLink(link)
    finally:
        world.net.delHost(host)


def _deployment_networks(world: World) -> list:
    deployment = world.plan.deployment
    networks = [
        ipaddress.ip_network(n)
        for n in (
            deployment.router.client_subnet,
            deployment.router.uplink_subnet,
            deployment.underlay.subnet,
        )  # fmt: skip
    ]
    addresses = [v.address for v in deployment.vips] + [c.address for c in deployment.clients]
    return networks + [ipaddress.ip_network(a) for a in addresses]


@contextlib.contextmanager
def _pinned(world: World, victim):
    """The router sends whatever comes from the flooder, and the legitimate client's source
    ports, to ``victim`` only (a table of their own, looked up first); everything else keeps
    ECMP."""
    address = next(a for a in victim.gateway.addresses if ":" not in a)
    router = world.router
    # onlink: the gateway's address is reached by a route of the main table, not of this one
    device = f"{router.name}-{victim.name}"
    added = router.cmd("ip", "route", "replace", f"{world.vip.address}/32", "via", address,
                       "dev", device, "onlink", "table", str(PIN_TABLE))  # fmt: skip
    legit_ports = f"{LEGIT_FIRST_PORT}-{LEGIT_FIRST_PORT + 999}"
    selectors = (["iif", f"{router.name}-{FLOODER}"], ["ipproto", "tcp", "sport", legit_ports])
    try:
        for preference, selector in enumerate(selectors, start=PIN_PREFERENCE):
            router.cmd("ip", "rule", "add", "pref", str(preference), *selector,
                       "lookup", str(PIN_TABLE))  # fmt: skip
        router.cmd("ip", "route", "flush", "cache")
        rules = router.cmd("ip", "rule", "show")
        table = router.cmd("ip", "route", "show", "table", str(PIN_TABLE))
        if rules.count(f"lookup {PIN_TABLE}") != len(selectors) or address not in table:
            raise RuntimeError(f"the router did not take the pinning: {added} {rules} {table}")
        yield
    finally:
        for preference in range(PIN_PREFERENCE, PIN_PREFERENCE + len(selectors)):
            router.cmd("ip", "rule", "del", "pref", str(preference))
        router.cmd("ip", "route", "flush", "table", str(PIN_TABLE))
        router.cmd("ip", "route", "flush", "cache")


def _start_legit_client(world: World, client, count: int) -> subprocess.Popen:
    """``traffic.py paced`` in ``client``: ``count`` connections, one every ``LEGIT_EVERY``."""
    argv = [
        PYTHON, str(HERE / "traffic.py"), "paced", "--vip", world.vip.address,
        "--port", str(world.vip.port), "--src", world.client_address(client),
        "--first-port", str(LEGIT_FIRST_PORT), "--count", str(count),
        "--every", str(LEGIT_EVERY), "--timeout", str(LEGIT_TIMEOUT),
    ]  # fmt: skip
    process = client.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    world.traffic.append(process)
    return process


def _legit_connections(process: subprocess.Popen, wall_zero: float, lasts: float) -> list[dict]:
    """The legitimate client's connections, each with ``t`` (seconds since the scenario
    started) for its Unix ``at``; waits for the client to end (at most a little longer than
    it should take)."""
    try:
        output = process.communicate(timeout=lasts + 3 * LEGIT_TIMEOUT + 10)[0]
    except subprocess.TimeoutExpired:
        process.kill()
        output = process.communicate()[0]
    rows = []
    for line in output.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "sport" in record:
            record["t"] = round(record.pop("at") - wall_zero, 3)
            rows.append(record)
    return sorted(rows, key=lambda r: r["t"])


def _end(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
