"""A gateway fails (its router next-hop removed, or its switch and controller killed), its
controller restarts, or a new gateway joins: connections in flight survive, because the gateways
that take them over pick the same VM.

That a gateway took moved connections over is read where its mode places them: a controller-mode
gateway counts the non-SYN packets it placed (``tcp_non_syn_misses``); a switch-mode gateway's
switch learns a pin for each from its next packet, read from the bridge while the downloads run
(pins of ended connections go 2 s after their FIN).
"""

from __future__ import annotations

import signal
import time

from scenario_result import Counts, Result, finish_downloads
from world import World

from ryu_app.core.model import MODE_SWITCH


def gateway_nexthop(world: World, counts: Counts) -> dict:
    return _gateway_failure(world, counts, kill=False)


def gateway_kill(world: World, counts: Counts) -> dict:
    return _gateway_failure(world, counts, kill=True)


def _gateway_failure(world: World, counts: Counts, kill: bool) -> dict:
    how = "switch and controller killed, router link down" if kill else "router next-hop removed"
    result = Result(
        "gateway-kill" if kill else "gateway-nexthop",
        f"{counts.downloads} downloads while a gateway fails ({how})",
    )
    active = list(world.routed or world.gateways)
    world.route(active)
    victim, others = active[0], active[1:]
    first = 30000 + (1000 if kill else 0)
    misses_before = _misses(world, others)
    transfers = world.start_downloads(counts, result, first)
    try:
        time.sleep(2.5)
        on_victim = world.pinned(victim, first)
        result.figures["on_failed_gateway"] = len(on_victim)
        result.check(
            f"downloads were running through {victim.name}", on_victim, str(len(on_victim))
        )
        if kill:
            result.event("failure", f"{victim.name}: switch and controller killed", victim.name)
            victim.stop(deleteIntfs=False)
            world.link(victim, up=False)
        else:
            result.event(
                "failure", f"{victim.name} removed from the router's next-hops", victim.name
            )
        world.route(others)
        pinned = _pinned_by_switches(world, others, first, on_victim)
        finish_downloads(result, transfers, counts.downloads)
        result.event("recovery", "all downloads ended")
        placed = sum(_misses(world, others).values()) - sum(misses_before.values())
        result.figures["moved"] = placed + len(pinned)
        result.check(
            "the other gateways placed the moved connections",
            placed + len(pinned) > 0,
            _placed_detail(world, others, placed, len(pinned)),
        )
    finally:
        if kill:
            world.link(victim, up=True)
            victim.start([])
        world.route(active)
    world.wait_ready([victim])
    return result.as_dict()


def controller_restart(world: World, counts: Counts) -> dict:
    gateway = world.routed[0]
    result = Result(
        "controller-restart", f"{gateway.name}'s controller killed (SIGKILL) mid-transfer"
    )
    first = 45000
    transfers = world.start_downloads(counts, result, first)
    time.sleep(2.0)
    on_gateway = world.pinned(gateway, first)
    result.figures["through_it"] = len(on_gateway)
    result.check(f"downloads were running through {gateway.name}", on_gateway, str(len(on_gateway)))
    gateway.kill_controller(signal.SIGKILL)
    result.event("failure", f"{gateway.name}: controller killed", gateway.name)
    time.sleep(0.5)
    gateway.start_controller()
    result.event("action", f"{gateway.name}: controller started again", gateway.name)
    seconds = world.wait(lambda: world.connected(gateway), 30, "the switch to reconnect")
    result.event("recovery", f"{gateway.name}: switch reconnected", gateway.name)
    result.figures["reconnect_s"] = round(seconds, 2)
    # The switch kept forwarding on its per-flow rules (switch mode: its learned pins) while
    # the controller was away; the new controller, with its backend ids from the state file,
    # keeps them (a rule it could not attribute it would delete, and the flow would be placed
    # again, by a packet-in or the switch's slot rule): either way the running connections
    # must be carried by rules in the switch after the restart, and complete.
    held = world.wait_pinned(gateway, first, among=on_gateway, in_switch=True)
    finish_downloads(result, transfers, counts.downloads)
    result.figures["held_after"] = len(held)
    if world.mode_of(gateway) != MODE_SWITCH:
        result.figures["placed_again"] = world.non_syn_misses(gateway)
    result.check(
        f"the running connections are carried by {gateway.name}'s switch after the restart",
        held,
        f"{len(held)} of the {len(on_gateway)} that ran through it",
    )
    world.wait_ready([gateway])
    return result.as_dict()


def scale_out(world: World, counts: Counts) -> dict:
    """The world's spare gateway (built, then stopped, by demo.py) joins the ECMP group during
    downloads; it is one of the world's gateways afterwards."""
    newcomer = world.spare
    if newcomer is None:
        raise RuntimeError("no spare gateway: demo.py builds one only for scale-out")
    result = Result("scale-out", f"{newcomer.name} added as a next-hop during downloads")
    active = list(world.routed)
    newcomer.start([])
    world.wait_ready([newcomer])
    result.event(
        "action", f"{newcomer.name} up (switch, controller, all VMs healthy)", newcomer.name
    )
    first = 47000
    transfers = world.start_downloads(counts, result, first)
    time.sleep(2.0)
    world.route([*active, newcomer])
    result.event("action", f"{newcomer.name} added to the router's next-hops", newcomer.name)
    # Every download started before it joined: each it holds was moved onto it.
    pinned = _pinned_by_switches(world, [newcomer], first)
    finish_downloads(result, transfers, counts.downloads)
    moved = sum(_misses(world, [newcomer]).values()) + len(pinned)
    result.figures["moved_to_newcomer"] = moved
    how = "pinned by its switch" if world.mode_of(newcomer) == MODE_SWITCH else "non-SYN packets"
    result.check(f"connections moved onto {newcomer.name} ({how})", moved > 0, str(moved))
    world.gateways.append(newcomer)
    world.spare = None
    return result.as_dict()


def _misses(world: World, gateways) -> dict[str, int]:
    """Non-SYN packets each controller-mode gateway of these placed (connections moved to it)."""
    return {g.name: world.non_syn_misses(g) for g in gateways if world.mode_of(g) != MODE_SWITCH}


def _pinned_by_switches(world: World, gateways, first: int, among=None) -> set:
    """The flows from ``first`` + 1000 (of ``among``, if given) that the switch-mode gateways of
    these hold, read while the downloads still run (a controller-mode gateway: none here)."""
    held: set = set()
    for gateway in gateways:
        if world.mode_of(gateway) == MODE_SWITCH:
            held |= world.wait_pinned(gateway, first, among=among)
    return held


def _placed_detail(world: World, gateways, placed: int, pinned: int) -> str:
    parts = []
    if any(world.mode_of(g) != MODE_SWITCH for g in gateways):
        parts.append(f"{placed} non-SYN packets placed by controllers")
    if any(world.mode_of(g) == MODE_SWITCH for g in gateways):
        parts.append(f"{pinned} moved connections pinned by switches")
    return ", ".join(parts)
